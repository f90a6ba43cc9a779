package gateway

import (
	"context"
	"slices"
	"time"

	"github.com/opendms/dms/dms/api"
)

// resume takes up the tasks a previous run left unfinished. One whose job
// was submitted is followed to its end in a goroutine of the gateway's;
// one never submitted fails, since its call's body was not kept. Start
// calls it holding g.life.
func (g *Gateway) resume(ctx context.Context) error {
	var open []Task
	err := each(g.db, taskPrefix, func(_ string, t Task) error {
		if !t.State.Terminal() {
			open = append(open, t)
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	for _, t := range open {
		if t.Job == "" {
			g.end(t, verdict{State: TaskFailed, Err: api.ErrUnavailable, Reason: "the gateway stopped before the call was placed"})
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.track(g.ctx, t)
		}()
	}
	if len(open) > 0 {
		g.log.Info("resumed unfinished tasks", "tasks", len(open))
	}
	return nil
}

// retain deletes, now and then, the finished tasks past their retention,
// until the gateway closes.
func (g *Gateway) retain() {
	tick := time.NewTicker(min(max(g.retention/10, time.Second), time.Hour))
	defer tick.Stop()
	for {
		if n, err := g.expire(g.now()); err != nil {
			g.log.Error("deleting old tasks", "err", err)
		} else if n > 0 {
			g.log.Info("deleted old tasks", "tasks", n)
		}
		select {
		case <-g.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// expireBatch bounds the tasks deleted in one write.
const expireBatch = 1000

// expire deletes the tasks that ended before now less the retention, and
// says how many.
func (g *Gateway) expire(now time.Time) (int, error) {
	cutoff := now.Add(-g.retention)
	var old []string
	err := each(g.db, taskPrefix, func(key string, t Task) error {
		if t.EndedAt != nil && t.EndedAt.Before(cutoff) {
			old = append(old, key)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for batch := range slices.Chunk(old, expireBatch) {
		if err := g.db.Write(nil, batch); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

// Blobs lists the blobs the gateway needs kept, for the node's collector:
// the module (or image archive) of every revision, and the output of every
// async task kept, which its caller reads with TaskResult. A sync call's
// output went to its caller: it stays under the store's budget like any
// job's output, so TaskResult may later find it collected.
func (g *Gateway) Blobs() ([]string, error) {
	var out []string
	err := each(g.db, revisionPrefix, func(_ string, r Revision) error {
		if r.Module != "" {
			out = append(out, r.Module)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = each(g.db, taskPrefix, func(_ string, t Task) error {
		if t.Async && t.Response != "" {
			out = append(out, t.Response)
		}
		return nil
	})
	slices.Sort(out)
	return slices.Compact(out), err
}

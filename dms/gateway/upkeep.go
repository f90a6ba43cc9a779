package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/opendms/dms/dms/api"
)

// resume takes up the tasks a previous run left unfinished. An async
// task, whose input was kept, runs again (calls are at-least-once: it may
// have run before the restart); a synchronous one, whose caller is gone,
// fails.
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
		var in callInput
		found, err := g.db.Lookup(inputKey(t.Account, t.ID), &in)
		if err != nil || !found || !t.Async {
			g.end(t, verdict{State: TaskFailed, Err: api.ErrUnavailable, Reason: "the gateway restarted during the call"})
			continue
		}
		p, err := g.pool(t.Account, t.Function, t.Revision)
		if err != nil {
			g.end(t, verdict{State: TaskFailed, Err: err, Reason: "resuming after a restart: " + err.Error()})
			continue
		}
		if !g.goBackground() {
			break // closed meanwhile: the task runs at the next Start
		}
		go func() {
			defer g.wg.Done()
			g.execute(g.ctx, p, t, in)
		}()
	}
	if len(open) > 0 {
		g.log.Info("resumed unfinished tasks", "tasks", len(open))
	}
	return nil
}

// prewarm makes the pools of the functions that keep instances warm
// (min_instances), so a restarted gateway starts them at once, not at
// their first call.
func (g *Gateway) prewarm(ctx context.Context) error {
	fns, err := all[Function](g.db, functionPrefix)
	if err != nil {
		return err
	}
	for _, fn := range fns {
		if fn.Scaling.MinInstances > 0 {
			g.pools.rescale(fn.Account, fn)
		}
	}
	return ctx.Err()
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
			if t.Idempotency != "" {
				old = append(old, idemKey(t))
			}
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

// BlobIndex is one kind of the gateway's records and how to read the blobs
// a record names, for the node's collector, which keeps them: it reads
// only the records written since its last pass.
type BlobIndex struct {
	Prefix string
	Blobs  func(record []byte) ([]string, error)
}

// BlobIndexes lists the records whose blobs must be kept: the module (or
// image archive) of every revision, and the output of every async task
// kept, which its caller reads with TaskResult. A sync call's output went
// to its caller: it stays under the store's budget like any job's output,
// so TaskResult may later find it collected.
func BlobIndexes() []BlobIndex {
	return []BlobIndex{
		{Prefix: revisionPrefix, Blobs: decoded(func(r Revision) string { return r.Module })},
		{Prefix: taskPrefix, Blobs: decoded(func(t Task) string {
			if !t.Async {
				return ""
			}
			return t.Response
		})},
	}
}

// decoded reads a record as a T and names the blob blob(T) ("": none).
func decoded[T any](blob func(T) string) func([]byte) ([]string, error) {
	return func(raw []byte) ([]string, error) {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		if c := blob(v); c != "" {
			return []string{c}, nil
		}
		return nil, nil
	}
}

// Blobs lists, sorted, the blobs the gateway needs kept now (BlobIndexes).
func (g *Gateway) Blobs() ([]string, error) {
	var out []string
	for _, x := range BlobIndexes() {
		err := g.db.Scan(x.Prefix, func(key string, raw []byte) error {
			cs, err := x.Blobs(raw)
			if err != nil {
				return fmt.Errorf("gateway: decoding %s: %w", key, err)
			}
			out = append(out, cs...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

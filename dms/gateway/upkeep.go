package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/opendms/dms/dms/api"
)

// resume takes up the tasks a previous run left unfinished. A task the
// group keeps (async or keyed, whose input was kept) runs again on the
// member that leads its queue (calls are at-least-once: it may have run
// before the restart); a plain synchronous one, whose caller is gone,
// fails.
func (g *Gateway) resume(ctx context.Context) error {
	var open []Task
	err := each(g.db, taskPrefix, func(_ string, t Task) error {
		if !t.State.Terminal() && !t.shared() {
			open = append(open, t)
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	for _, t := range open {
		g.end(t, verdict{State: TaskFailed, Err: api.ErrUnavailable, Reason: "the gateway restarted during the call"})
	}
	if g.grp == nil {
		g.resumeKept()
	} else {
		g.background(g.catchUp)
	}
	return nil
}

// catchUp waits until this member has applied what the group committed
// before it started (a write of nothing through the group returns once it
// is applied here), then runs the kept tasks of the queues it leads.
func (g *Gateway) catchUp() {
	for g.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(g.ctx, proposeTimeout)
		_, err := g.propose(ctx, command{Change: &change{}})
		cancel()
		if err == nil {
			g.resumeKept()
			g.prewarmLed()
			return
		}
		select {
		case <-g.ctx.Done():
		case <-time.After(noQuorumRetry):
		}
	}
}

// prewarm makes the pools of the functions that keep instances warm
// (min_instances), so a restarted gateway starts them at once, not at
// their first call.
func (g *Gateway) prewarm(ctx context.Context) error {
	if g.grp != nil {
		return nil // catchUp does, on the members that lead their queues
	}
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

// prewarmLed gives the functions that keep instances warm a queue leader
// if they have none, and starts the pools of those this member leads.
func (g *Gateway) prewarmLed() {
	fns, err := all[Function](g.db, functionPrefix)
	if err != nil {
		g.log.Warn("reading the functions to pre-warm", "err", err)
		return
	}
	for _, fn := range fns {
		if fn.Scaling.MinInstances == 0 {
			continue
		}
		if _, err := g.queueLeader(g.ctx, fn.Account, fn.Name); err != nil {
			g.log.Warn("giving a queue a leader", "function", fn.Name, "err", err)
		}
		if g.leads(fn.Account, fn.Name) {
			g.pools.rescale(fn.Account, fn)
		}
	}
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
// says how many: this gateway's own, and, on the group's leader (or a
// gateway alone), the group's.
func (g *Gateway) expire(now time.Time) (int, error) {
	cutoff := now.Add(-g.retention)
	var mine, kept []string
	err := each(g.db, taskPrefix, func(key string, t Task) error {
		switch {
		case t.EndedAt == nil || !t.EndedAt.Before(cutoff):
		case !t.shared():
			mine = append(mine, key)
		case g.grp == nil || g.grp.IsLeader():
			kept = append(kept, key)
			if t.Idempotency != "" {
				kept = append(kept, idemKey(t))
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for batch := range slices.Chunk(mine, expireBatch) {
		if err := g.db.Write(nil, batch); err != nil {
			return 0, err
		}
	}
	for batch := range slices.Chunk(kept, expireBatch) {
		if err := g.update(g.ctx, func(t *tx) error { t.delete(batch...); return nil }); err != nil {
			return 0, err
		}
	}
	return len(mine) + len(kept), nil
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

package bench

import (
	"context"
	"sync"
	"time"

	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
)

func init() {
	register(Scenario{
		Name: "burst",
		What: "50 tiny Wasm jobs submitted at once on 5 nodes (5 times: the median makespan), then 500: makespan and per-job latency",
		Run:  burst,
	})
}

// burstRepeats is how many times the small burst runs: one burst's
// makespan moves by a factor of two with what else the machine does, so
// the figure is the median of several, a second apart.
const (
	burstRepeats = 5
	burstGap     = time.Second
)

// burst submits many jobs at the same moment from node 0: the makespan
// shows how the auctions of concurrent jobs spread them over the nodes.
// The small burst runs burstRepeats times: makespan_ms is the median, and
// the latencies are those of every run.
func burst(ctx context.Context, o Options) (_ map[string]any, err error) {
	nodes, small, large, warm, repeats := 5, 50, 500, 10, burstRepeats
	if o.Quick {
		nodes, small, large, warm, repeats = 3, 10, 20, 2, 1
	}
	c, err := startCluster(ctx, o, nodes, tinywasm.Module(0, tinyOutput))
	if err != nil {
		return nil, err
	}
	defer closeInto(c, &err)
	spec := c.jobSpec()
	want := []byte(tinyOutput)
	if err := c.warmUp(ctx, o, spec, want, warm, runBurst); err != nil {
		return nil, err
	}
	res := map[string]any{"nodes": nodes, "repeats": repeats}
	for _, b := range []struct {
		prefix  string
		n       int
		repeats int
	}{{"", small, repeats}, {"burst500_", large, 1}} {
		var runs []run
		spans := make([]time.Duration, b.repeats)
		for i := range spans {
			if i > 0 && sleepCtx(ctx, burstGap) != nil {
				break
			}
			rs := runBurst(ctx, c.req, spec, want, b.n)
			spans[i], runs = makespan(rs), append(runs, rs...)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := latencies(runs)
		res[b.prefix+"makespan_ms"] = newDist(spans).pct(50)
		if b.repeats > 1 {
			res[b.prefix+"makespans_ms"] = msList(spans)
		}
		res[b.prefix+"p50_ms"], res[b.prefix+"p95_ms"] = d.pct(50), d.pct(95)
		res[b.prefix+"phases_p50_ms"] = phases(runs)
		withCounts(res, b.prefix, runs)
		o.Log.Info("burst done", "jobs", b.n, "makespan", res[b.prefix+"makespan_ms"])
	}
	res["burst500_size"] = large
	return res, nil
}

// runBurst submits n jobs at once, each from its own goroutine, and waits
// for all of them.
func runBurst(ctx context.Context, svc service, spec *jobs.Spec, want []byte, n int) []run {
	runs := make([]run, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			runs[i] = runJob(ctx, svc, spec, want)
		})
	}
	close(start)
	wg.Wait()
	return runs
}

// makespan is the time from the first submission to the last verified
// output of the runs that completed.
func makespan(runs []run) time.Duration {
	var first, last time.Time
	for _, r := range runs {
		if first.IsZero() || r.submitted.Before(first) {
			first = r.submitted
		}
		if r.err == nil && r.done.After(last) {
			last = r.done
		}
	}
	if last.IsZero() {
		return 0
	}
	return last.Sub(first)
}

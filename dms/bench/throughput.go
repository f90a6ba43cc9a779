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
		Name: "throughput",
		What: "open-loop load on 5 nodes, rising from 50 jobs/s until p99 > 100 ms or a job fails",
		Run:  throughput,
	})
}

// throughputLimit is the p99 latency a rate must keep to count as sustained.
const throughputLimit = 100 * time.Millisecond

// throughput submits jobs at a fixed rate, whether or not earlier ones are
// done (an open loop: a slow network cannot slow the load down), for a few
// seconds per step, raising the rate by a quarter to a half at each step
// until the p99 latency passes throughputLimit or a job fails.
func throughput(ctx context.Context, o Options) (_ map[string]any, err error) {
	nodes, step, warm := 5, 3*time.Second, 20
	rates := []int{50, 75, 100, 125, 150, 200, 250, 300, 400, 600, 800, 1000, 1500, 2000, 3000, 4000}
	if o.Quick {
		nodes, step, warm, rates = 3, 500*time.Millisecond, 2, []int{10, 20}
	}
	c, err := startCluster(ctx, o, nodes, tinywasm.Module(0, tinyOutput))
	if err != nil {
		return nil, err
	}
	defer closeInto(c, &err)
	spec := c.jobSpec()
	// An overloaded step must end: its jobs fail after the deadline rather
	// than queue for minutes.
	spec.Deadline, spec.QueueTimeout = jobs.Duration(20*time.Second), jobs.Duration(20*time.Second)
	want := []byte(tinyOutput)
	if err := c.warmUp(ctx, o, spec, want, warm, runBurst); err != nil {
		return nil, err
	}
	res := map[string]any{"nodes": nodes, "step_s": step.Seconds(), "jobs_per_s": 0.0, "offered_per_s": 0, "p99_ms": 0.0}
	var steps []map[string]any
	for _, rate := range rates {
		runs := openLoop(ctx, c.req, spec, want, rate, step)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := latencies(runs)
		s := withCounts(map[string]any{
			"rate_per_s": rate, "submitted": len(runs), "achieved_per_s": achieved(runs),
			"p50_ms": d.pct(50), "p99_ms": d.pct(99), "phases_p50_ms": phases(runs),
		}, "", runs)
		steps = append(steps, s)
		o.Log.Info("throughput step", "rate", rate, "p99_ms", s["p99_ms"], "failed", s["failed"])
		if s["failed"].(int) > 0 || d.pct(99) > ms(throughputLimit) {
			break
		}
		res["jobs_per_s"], res["offered_per_s"], res["p99_ms"], res["p50_ms"] = s["achieved_per_s"], rate, s["p99_ms"], s["p50_ms"]
	}
	res["steps"] = steps
	return res, nil
}

// openLoop submits jobs at rate per second for d, each in its own
// goroutine, then waits for all of them.
func openLoop(ctx context.Context, svc service, spec *jobs.Spec, want []byte, rate int, d time.Duration) []run {
	runs := make([]run, int(d.Seconds()*float64(rate)))
	var wg sync.WaitGroup
	n := paced(ctx, rate, len(runs), func(j int) {
		wg.Go(func() { runs[j] = runJob(ctx, svc, spec, want) })
	})
	wg.Wait()
	return runs[:n]
}

// paced calls start(i) for i from 0 to n-1 at rate per second, until ctx
// ends, and returns how many it started. Starts fall due at fixed times;
// a late timer starts every one that is due at once, so the rate holds.
func paced(ctx context.Context, rate, n int, start func(i int)) int {
	interval := time.Second / time.Duration(rate)
	began := time.Now()
	i := 0
	for i < n && ctx.Err() == nil {
		for ; i < n && time.Since(began) >= time.Duration(i)*interval; i++ {
			start(i)
		}
		if i < n {
			time.Sleep(time.Until(began.Add(time.Duration(i) * interval)))
		}
	}
	return i
}

// achieved is the completed jobs per second: completions over the time
// from the first submission to the last verified output.
func achieved(runs []run) float64 {
	span := makespan(runs)
	if span <= 0 {
		return 0
	}
	done := 0
	for _, r := range runs {
		if r.err == nil {
			done++
		}
	}
	return round3(float64(done) / span.Seconds())
}

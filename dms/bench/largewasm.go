package bench

import (
	"context"
	"fmt"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"os"
	"time"
)

func init() {
	register(Scenario{
		Name: "large-wasm",
		What: "a 2.5 MB Go wasip1 module (examples/sleep, 0 s) on 3 nodes: per-job overhead beyond its own run time",
		Run:  largeWasm,
	})
}

// largeWasm runs a Go program compiled to Wasm, over and over: once each
// node has compiled it, a job should cost little more than its own run.
func largeWasm(ctx context.Context, o Options) (_ map[string]any, err error) {
	nodes, n, warm := 3, 30, 4
	if o.Quick {
		nodes, n, warm = 2, 3, 1
	}
	module, args, want, err := largeModule(o.Quick)
	if err != nil {
		return nil, err
	}
	c, err := startCluster(ctx, o, nodes, module)
	if err != nil {
		return nil, err
	}
	defer closeInto(c, &err)
	spec := c.jobSpec()
	spec.Name, spec.Args, spec.Resources.Memory = "bench-large", args, 64<<20
	if err := c.warmUp(ctx, o, spec, want, warm, runMany); err != nil {
		return nil, err
	}
	runs := runMany(ctx, c.req, spec, want, n)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var over, own []time.Duration
	for _, r := range runs {
		if r.err == nil {
			d := time.Duration(r.job.Result.DurationMillis) * time.Millisecond
			over, own = append(over, r.latency()-d), append(own, d)
		}
	}
	o1, d := newDist(over), latencies(runs)
	res := map[string]any{
		"nodes": nodes, "module_mb": round3(float64(len(module)) / (1 << 20)), "module_bytes": len(module),
		"overhead_p50_ms": o1.pct(50), "overhead_p95_ms": o1.pct(95),
		"run_p50_ms": newDist(own).pct(50), "p50_ms": d.pct(50), "phases_p50_ms": phases(runs),
	}
	return withCounts(res, "", runs), nil
}

// largeModule is examples/sleep/sleep.wasm, run to sleep 0 s, or with
// quick the tiny module: under the race detector wazero takes many seconds
// to compile a Go program, on each node.
func largeModule(quick bool) (module []byte, args []string, want []byte, err error) {
	if quick {
		return tinywasm.Module(0, tinyOutput), nil, []byte(tinyOutput), nil
	}
	path, err := repoFile("examples/sleep/sleep.wasm")
	if err != nil {
		return nil, nil, nil, err
	}
	if module, err = os.ReadFile(path); err != nil {
		return nil, nil, nil, fmt.Errorf("bench: %w", err)
	}
	return module, []string{"0"}, []byte("slept 0 seconds\n"), nil
}

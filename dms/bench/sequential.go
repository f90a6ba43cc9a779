package bench

import (
	"context"
	"github.com/opendms/dms/dms/internal/tinywasm"
)

func init() {
	register(Scenario{
		Name: "sequential",
		What: "200 tiny Wasm jobs one after another on 5 nodes (node 0 submits), submit to verified result",
		Run:  sequential,
	})
}

// sequential times tiny jobs one at a time: the latency of one job on an
// idle network, auction, run and result fetch included.
func sequential(ctx context.Context, o Options) (_ map[string]any, err error) {
	nodes, n, warm := 5, 200, 10
	if o.Quick {
		nodes, n, warm = 3, 10, 2
	}
	c, err := startCluster(ctx, o, nodes, tinywasm.Module(0, tinyOutput))
	if err != nil {
		return nil, err
	}
	defer closeInto(c, &err)
	spec := c.jobSpec()
	want := []byte(tinyOutput)
	if err := c.warmUp(ctx, o, spec, want, warm, runMany); err != nil {
		return nil, err
	}
	runs := runMany(ctx, c.req, spec, want, n)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d := latencies(runs)
	res := map[string]any{
		"nodes": nodes, "p50_ms": d.pct(50), "p95_ms": d.pct(95), "p99_ms": d.pct(99),
		"mean_ms": d.mean(), "max_ms": d.pct(100), "phases_p50_ms": phases(runs),
	}
	return withCounts(res, "", runs), nil
}

package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func init() {
	register(Scenario{
		Name: "disk",
		What: "5,000 jobs writing 1 MiB each (all different) on 3 nodes: the homes before, at their peak and after, against a 256 MiB store budget",
		Run:  disk,
	})
}

const (
	diskOutput = 1 << 20 // each job's stdout
	diskConc   = 8       // jobs in flight
	// diskSettle bounds the wait, beyond the minimum age, for the
	// collectors to bring every node under budget after the last job.
	diskSettle = 30 * time.Second
	diskSample = 500 * time.Millisecond // how often the homes are measured during the run
)

// disk runs many jobs whose outputs content addressing cannot share (each
// writes 1 MiB derived from its argument) on a requester and two
// providers with a small store budget, fetching and checking every output,
// and reports each home's size before, at its peak and after: what keeps
// a node's disk bounded while the outputs it produced or fetched come and
// go.
func disk(ctx context.Context, o Options) (_ map[string]any, err error) {
	nodes, n, budget, minAge := 3, 5000, int64(256<<20), 5*time.Second
	if o.Quick {
		n, budget, minAge = 40, 4<<20, 2*time.Second
	}
	store := dms.WithStore(dms.StoreConfig{MaxBytes: types.Bytes(budget), MinBlobAge: minAge})
	c, err := startCluster(ctx, o, nodes, tinywasm.Filler(diskOutput), store)
	if err != nil {
		return nil, err
	}
	defer closeInto(c, &err)
	before, err := storeInfos(ctx, c.Nodes)
	if err != nil {
		return nil, err
	}
	spec := c.jobSpec()
	spec.Name = "bench-disk"
	peaks, stopSampling := samplePeaks(c.Nodes)
	began := time.Now()
	runs := runDistinct(ctx, c.req, spec, n, diskConc)
	took := time.Since(began)
	stopSampling()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o.Log.Info("jobs done", "jobs", n, "took", took.Round(time.Millisecond))
	after, settled, err := waitUnderBudget(ctx, c.Nodes, budget, minAge+diskSettle)
	if err != nil {
		return nil, err
	}
	res := map[string]any{
		"nodes": nodes, "budget_mb": mib(budget), "min_blob_age_ms": minAge.Milliseconds(), "output_mb": mib(diskOutput),
		"written_mb": mib(int64(n) * diskOutput), "took_s": round3(took.Seconds()), "jobs_per_s": round3(float64(n) / took.Seconds()),
		"settle_ms": settled.Milliseconds(),
	}
	within := true
	var providers []map[string]any
	for i := range c.Nodes {
		fig := homeFigures(before[i], after[i], peaks[i].Load())
		within = within && after[i].HomeBytes <= budget
		if i == 0 {
			for k, v := range fig {
				res["requester_"+k] = v
			}
			continue
		}
		fig["jobs"] = ranOn(runs, c.Nodes[i].ID().PeerID)
		providers = append(providers, fig)
	}
	res["providers"], res["within_budget"] = providers, within
	withCounts(res, "", runs)
	if !within {
		return res, fmt.Errorf("%w: a home is over its budget of %s after the jobs: %v", ErrOverBudget, types.Bytes(budget), res)
	}
	return res, nil
}

// runDistinct runs n jobs of spec, conc at a time, job i with the argument
// i, and checks each output against tinywasm.FillerOutput.
func runDistinct(ctx context.Context, svc service, spec *jobs.Spec, n, conc int) []run {
	runs := make([]run, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				s, arg := *spec, strconv.Itoa(i)
				s.Args = []string{arg}
				runs[i] = runJob(ctx, svc, &s, tinywasm.FillerOutput(diskOutput, arg))
			}
		})
	}
	wg.Wait()
	return runs
}

func mib(b int64) float64 { return round3(float64(b) / (1 << 20)) }

// homeFigures describes one home: its size before, at its peak during the
// run and after, and its blobs after, in MiB.
func homeFigures(before, after api.StoreInfo, peak int64) map[string]any {
	return map[string]any{
		"home_before_mb": mib(before.HomeBytes), "home_peak_mb": mib(max(peak, before.HomeBytes, after.HomeBytes)),
		"home_after_mb": mib(after.HomeBytes), "blob_after_mb": mib(after.BlobBytes), "blobs_after": after.Blobs,
	}
}

// ranOn counts the runs that completed on the node with PeerID peer.
func ranOn(runs []run, peer string) int {
	n := 0
	for _, r := range runs {
		if r.err == nil && r.job.Node == peer {
			n++
		}
	}
	return n
}

func storeInfos(ctx context.Context, nodes []*dms.DMS) ([]api.StoreInfo, error) {
	out := make([]api.StoreInfo, len(nodes))
	for i, d := range nodes {
		info, err := d.StoreInfo(ctx)
		if err != nil {
			return nil, fmt.Errorf("bench: node %d: %w", i, err)
		}
		out[i] = info
	}
	return out, nil
}

// samplePeaks measures every node's home each diskSample, keeping the
// largest, until stop is called.
func samplePeaks(nodes []*dms.DMS) (peaks []atomic.Int64, stop func()) {
	peaks = make([]atomic.Int64, len(nodes))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(diskSample)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for i, d := range nodes {
				if info, err := d.StoreInfo(context.Background()); err == nil && info.HomeBytes > peaks[i].Load() {
					peaks[i].Store(info.HomeBytes)
				}
			}
		}
	})
	return peaks, func() { close(done); wg.Wait() }
}

// waitUnderBudget waits until every node's home fits budget, as their
// collectors bring them there on their own, and returns the nodes' store
// infos then and how long it took; an error if they do not within limit.
func waitUnderBudget(ctx context.Context, nodes []*dms.DMS, budget int64, limit time.Duration) ([]api.StoreInfo, time.Duration, error) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		infos, err := storeInfos(ctx, nodes)
		if err != nil {
			return nil, 0, err
		}
		over := 0
		for _, info := range infos {
			if info.HomeBytes > budget {
				over++
			}
		}
		if over == 0 {
			return infos, time.Since(began), nil
		}
		select {
		case <-ctx.Done():
			return infos, time.Since(began), fmt.Errorf("%w: %d nodes' homes still take more than %s %s after the last job",
				ErrOverBudget, over, types.Bytes(budget), limit)
		case <-tick.C:
		}
	}
}

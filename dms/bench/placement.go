package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// The placement scenario asks what decentralization costs in response time:
// the same stream of jobs is placed once by the real auction (the
// orchestrator's Job and Auction state machines, bidding against real
// node.Ledger accounts) and once by an omniscient central scheduler, and
// each job's response times are compared. Both run in virtual time, drawn
// from seeded math/rand/v2 sources (one for the workload, one for message
// delays), with no goroutine and no clock: the figures are the same on
// every machine and every run.
//
// The model:
//
//   - Cluster: 50 nodes with 2, 4, 8 or 16 cores and 2 or 4 GiB per core
//     (4 to 64 GiB). Every node has the same speed and price (benchmark
//     score 1, price 1): a job's service time does not depend on its node,
//     so the figures measure placement and queueing, not picking fast nodes.
//   - Jobs: Poisson arrivals; 0.5, 1, 2 or 4 cores (30/35/25/10%), 1 to
//     3 GiB per core; service time exponential with a mean of 1s. Offered
//     load = arrival rate * mean(cores) * mean(service) / total cores. At
//     every load the jobs have the same sizes and service times, only
//     compressed in time.
//   - Auction: every job is a real orchestrator.Job with the shipped
//     defaults (2s bid window, 3 bids are enough, 5 min queue timeout,
//     DefaultRanking: binpack). Its bid request reaches each node after a gossip
//     delay of 0.5-2.5ms; every other message (bid, decline, accept,
//     confirm, reject, cancel, invocation, final status) takes 50-150us.
//     Every node is the real provider machine (node.Machine) with the
//     shipped defaults (3s bid hold, 10s lock TTL), price 1 and score 1:
//     it bids, declines (as busy when only what is in use stands in the
//     way), bids late on those once capacity frees, locks, starts and ends
//     allocations exactly as a daemon's Node does; the simulation plays its shell (no disk: its records are
//     dropped) and its executor, whose run takes the job's service time.
//     A job that finds
//     only busy nodes waits (taking a late bid at once) and auctions again as the real Job does
//     (100ms doubling, at most 1s between auctions); one whose offers are
//     all rejected retries (3 retries). No node fails and no message is
//     lost, so the lease and the running status are not modelled.
//   - Central: knows every node's free capacity exactly and talks to no
//     one: a job that fits somewhere starts at once on the node it fits
//     best (least CPU, then memory, left over); otherwise it waits in a
//     global queue, scanned in arrival order each time a job ends, and
//     every queued job that fits starts then (backfilling).
//   - Response time of a job = its completion (for the auction: when the
//     requester hears the final status) - its arrival.
//   - ratio of a job = auction response time / central response time.
//     ratio_mean is the mean of these per-job ratios and ratio_p99 their
//     99th percentile (nearest rank). The mean of ratios weighs every job
//     alike, so the fixed cost of an auction on a short job counts fully;
//     ratio_of_means (mean auction response / mean central response) is
//     reported beside it. The first 10% of jobs, which meet a cluster that
//     started empty, are left out.

func init() {
	register(Scenario{
		Name: "placement",
		What: "the auction state machines simulated at 50/80/95% load against an omniscient central scheduler",
		Run:  runPlacement,
	})
}

const (
	placementSeed       = 4 // arbitrary, fixed: every run gives the same figures
	placementNodes      = 50
	placementJobs       = 20000
	placementQuickJobs  = 400
	placementWarmup     = 10 // percent of the jobs, the first ones, not counted
	placementService    = time.Second
	placementHeadline   = 0.8
	placementGossipMin  = 500 * time.Microsecond
	placementGossipSpan = 2 * time.Millisecond
	placementStreamMin  = 50 * time.Microsecond
	placementStreamSpan = 100 * time.Microsecond
)

var placementLoads = []float64{0.5, 0.8, 0.95}

// plConfig is one simulated run.
type plConfig struct {
	seed    uint64
	nodes   int
	jobs    int
	load    float64
	ranking orchestrator.Ranking // no scorers: DefaultRanking
	enough  int                  // bids that close the window; 0: jobs.DefaultEnoughBids
}

// plRow is the comparison at one load.
type plRow struct {
	load, ratioMean, ratioP99, ratioOfMeans float64
	jobs                                    int
	meanAuction, meanCentral                time.Duration
	auctionsPerJob                          float64
	heldBusy                                float64 // share of busy declines that only other jobs' bid holds caused
}

func runPlacement(ctx context.Context, o Options) (map[string]any, error) {
	n := placementJobs
	if o.Quick {
		n = placementQuickJobs
	}
	res := map[string]any{"nodes": placementNodes}
	var rows []map[string]any
	for _, load := range placementLoads {
		r, err := placementRow(ctx, plConfig{seed: placementSeed, nodes: placementNodes, jobs: n, load: load})
		if err != nil {
			return nil, err
		}
		o.Log.Info("placement", "load", load, "ratio_mean", r.ratioMean, "ratio_p99", r.ratioP99)
		rows = append(rows, r.fields())
		if load == placementHeadline {
			res["load"], res["ratio_mean"], res["ratio_p99"] = load, plRound(r.ratioMean), plRound(r.ratioP99)
			res["ratio_of_means"], res["jobs"] = plRound(r.ratioOfMeans), r.jobs
		}
	}
	res["rows"] = rows
	return res, nil
}

func (r plRow) fields() map[string]any {
	return map[string]any{
		"load": r.load, "ratio_mean": plRound(r.ratioMean), "ratio_p99": plRound(r.ratioP99),
		"ratio_of_means": plRound(r.ratioOfMeans), "jobs": r.jobs,
		"mean_response_ms_auction": plRound(plMillis(r.meanAuction)), "mean_response_ms_central": plRound(plMillis(r.meanCentral)),
		"auctions_per_job": plRound(r.auctionsPerJob),
	}
}

func plMillis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// plRound rounds to 4 decimals, for display.
func plRound(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// placementRow simulates both schedulers on one workload and compares them.
func placementRow(ctx context.Context, c plConfig) (plRow, error) {
	w := newPlWorkload(c.seed, c.nodes, c.jobs, c.load)
	central := plCentral(w)
	sim := newSim(simConfig{name: "placement", nodes: w.nodes, works: w.jobs, requesters: []string{"requester"}, ranking: c.ranking, enough: c.enough})
	sim.net = &plNet{s: sim, delays: rand.New(rand.NewPCG(c.seed, 2))}
	if err := sim.run(ctx); err != nil {
		return plRow{}, err
	}
	auction := make([]time.Duration, len(sim.jobs))
	for i, j := range sim.jobs {
		if !j.completed {
			return plRow{}, fmt.Errorf("bench: placement: job %d did not complete: %s", i, j.job.Info().Reason)
		}
		auction[i] = j.done.Sub(j.arrived)
	}
	row := plCompare(auction, central, len(w.jobs)*placementWarmup/100)
	row.load, row.auctionsPerJob = c.load, float64(sim.auctions)/float64(len(w.jobs))
	row.heldBusy = float64(sim.heldBusy) / float64(max(sim.busy, 1))
	return row, nil
}

// plCompare computes the figures over the jobs from the warm-th on.
func plCompare(auction, central []time.Duration, warm int) plRow {
	a, c := auction[warm:], central[warm:]
	ratios := make([]float64, len(a))
	var sumA, sumC time.Duration
	for i := range a {
		ratios[i] = float64(a[i]) / float64(c[i])
		sumA, sumC = sumA+a[i], sumC+c[i]
	}
	mean := 0.0
	for _, r := range ratios {
		mean += r
	}
	slices.Sort(ratios)
	n := len(ratios)
	return plRow{
		ratioMean: mean / float64(n), ratioP99: ratios[max(0, int(math.Ceil(0.99*float64(n)))-1)],
		ratioOfMeans: float64(sumA) / float64(sumC), jobs: n,
		meanAuction: sumA / time.Duration(n), meanCentral: sumC / time.Duration(n),
	}
}

// newPlWorkload draws the cluster, then the jobs at the arrival rate that
// offers load. The same seed gives the same cluster and the same job sizes
// and service times at every load.
func newPlWorkload(seed uint64, nodes, jobs int, load float64) workload {
	return drawWorkload(rand.New(rand.NewPCG(seed, 1)), nodes, jobs, load, placementService)
}

// plEnd is a job running on the central scheduler's node, until at.
type plEnd struct {
	at        time.Duration
	job, node int
}

// plCentral runs the omniscient central scheduler and returns each job's
// response time.
func plCentral(w workload) []time.Duration {
	free := slices.Clone(w.nodes)
	resp := make([]time.Duration, len(w.jobs))
	ends := minHeap[plEnd]{less: func(a, b plEnd) bool { return a.at < b.at || (a.at == b.at && a.job < b.job) }}
	var queue []int
	start := func(j, n int, now time.Duration) {
		free[n] = free[n].Sub(w.jobs[j].need)
		ends.push(plEnd{at: now + w.jobs[j].service, job: j, node: n})
		resp[j] = now + w.jobs[j].service - w.jobs[j].arrive
	}
	next := 0
	for next < len(w.jobs) || ends.len() > 0 {
		if next < len(w.jobs) && (ends.len() == 0 || w.jobs[next].arrive < ends.peek().at) {
			if n := plBestFit(free, w.jobs[next].need); n >= 0 {
				start(next, n, w.jobs[next].arrive)
			} else {
				queue = append(queue, next)
			}
			next++
			continue
		}
		e := ends.pop()
		free[e.node] = free[e.node].Add(w.jobs[e.job].need)
		waiting := queue[:0]
		for _, j := range queue { // in arrival order; those that fit start now
			if n := plBestFit(free, w.jobs[j].need); n >= 0 {
				start(j, n, e.at)
			} else {
				waiting = append(waiting, j)
			}
		}
		queue = waiting
	}
	return resp
}

// plBestFit returns the node where need fits leaving the least CPU, then
// the least memory, free; -1 if it fits nowhere.
func plBestFit(free []types.Resources, need types.Resources) int {
	best := -1
	for i, f := range free {
		if !need.Fits(f) {
			continue
		}
		if best < 0 || f.CPU < free[best].CPU || (f.CPU == free[best].CPU && f.Memory < free[best].Memory) {
			best = i
		}
	}
	return best
}

// plNet is the placement scenario's network: a bid request reaches every
// node after a gossip delay, and the shell reports them all as reached, so
// the window also closes once every node answered; every other message
// takes a stream's delay. Nothing is lost and nothing is counted.
type plNet struct {
	s      *sim
	delays *rand.Rand
}

var _ simNet = (*plNet)(nil)

func (n *plNet) gossip() time.Duration {
	return placementGossipMin + time.Duration(n.delays.Int64N(int64(placementGossipSpan)))
}

func (n *plNet) stream() time.Duration {
	return placementStreamMin + time.Duration(n.delays.Int64N(int64(placementStreamSpan)))
}

func (n *plNet) publish(j *simJob, p orchestrator.Publish) {
	reached := make([]string, len(n.s.order))
	for i, node := range n.s.order {
		reached[i] = node.peer
		n.s.after(n.gossip(), func() { n.s.bidRequest(node, p.Request) })
	}
	j.job.Published(p.Attempt, reached, n.s.now())
}

func (n *plNet) send(_, _ string, _ *simJob, _ int, deliver func()) { n.s.after(n.stream(), deliver) }

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
)

// The simulate scenario asks how placement behaves on networks far larger
// than one machine can run for real: a real node costs 7.4 MB of RSS
// (the scale scenario, 500 nodes), so 10,000 would need some 74 GB. It
// runs the real machines (every requester's orchestrator.Job and Auction,
// every provider's node.Machine, driven by the shells of vsim.go, as the
// placement scenario does) over a modelled network, in virtual time, at
// 1,000, 5,000 and 10,000 nodes, and compares the two ways a bid request
// travels: gossip (the topic, every node) and sampled (d = 2 nodes drawn
// from the requester's candidates, dms.publishSampled).
//
// The model:
//
//   - Nodes: sized as in placement (2 to 16 cores, 2 or 4 GiB a core),
//     every one a node.Machine with the shipped defaults. The cluster
//     starts at 50% of its cores in use (its steady state at the offered
//     load below): background jobs are put on random nodes that fit, each
//     through the machine's own bid, accept and invocation, with
//     exponential remaining runs (memoryless, so the steady state).
//   - Jobs: four requesters submit Poisson arrivals offering 50% of the
//     cores: jobs sized as in placement, runs exponential with a mean of
//     10 minutes. The run's length only sets the arrival rate at that load
//     (37 jobs/s at 10,000 nodes, 3.7 at 1,000): placement latency, not
//     queueing, is what is measured, and gossip makes every node handle
//     every job, so the rate must stay one a network could gossip.
//   - Network: a pair's RTT is drawn log-uniform over 20-200 ms (median
//     63 ms), fixed for the pair; a message takes RTT/2 plus a jitter
//     uniform over 0-5 ms. Every message travels on a stream (TCP or QUIC,
//     gossip included), so a loss (1% of messages) does not drop it: it is
//     retransmitted after a timeout, RTT + 200 ms (Linux TCP's RTO floor),
//     doubling at each further loss. A requester's first message to a node
//     it is not connected to waits for the dial: a QUIC handshake and
//     identify (libp2p's NewStream waits for it), 2 RTT, a lost handshake
//     packet costing QUIC's first timeout, 1 s. A requester keeps its
//     connections in an LRU of 512 (the connection manager's high
//     watermark), plus 6 peers it always keeps (bootstrap, DHT).
//   - Gossip: the compute nodes form a random mesh (each grafts random
//     peers until it has D = 6; a peer with Dhi = 12 refuses; the grafts
//     a node accepts make the mean degree 7.7). A requester
//     does not compute, so it is in no mesh: it flood-publishes (as
//     p2p.startPubsub configures) to every compute node it is connected
//     to, and each node forwards its first copy to its mesh peers but the
//     one it came from. A node gets the request after the shortest path in
//     delay. The shell reports the requester's connected peers as reached,
//     as Publish does. Counted: every copy, and the IHAVE message IDs each
//     node sends (6 peers outside its mesh at each of 3 heartbeats);
//     IWANT and IDONTWANT are not.
//   - Sampled: as publishSampled: d = dms.DefaultBidSampling nodes drawn
//     uniformly among the candidates whose CPU class (p2p.CPUClass) may
//     fit the job, those that failed within CandidateTTL (30 s) left out;
//     the request goes to each on a stream, acknowledged; those that did
//     not take it are replaced once (2 rounds), and Published reports the
//     nodes that took it once every send of the last round ended. The
//     candidate cache is taken as known: every compute node, and one
//     listing in 100 for a node that left (its provider record outlives
//     it). A send to a node that left gets no answer: it fails at the
//     round's end (the first round's sends end halfway to the bid
//     window's end, the second's at it), as the real send's context
//     does. With no node reached, or when the job asks wide (an auction
//     drew no bid and no busy decline), the request is gossiped.
//   - Sampled, warm: the same, with no dial: every connection is open.
//   - Messages per job: every frame sent for the job (bid requests and
//     their acknowledgements, bids and declines and theirs, accepts,
//     confirms or rejects, cancels and their replies, the invocation and
//     the statuses running and final), gossip copies and IHAVE message
//     IDs, as the scale scenario counts them (dms.NetworkStats.Messages).
//     Not counted: dials, identify, the invocation stream's heartbeats
//     (their number is the run's length over Lease/4, not the network's)
//     and the module's fetch.
//   - Placement latency: submission to the requester's invocation, i.e.
//     the winner's Confirm arrived (the job placed, as scale measures it);
//     started: submission to the invocation reaching the node.
//   - Not modelled: CPU time (every machine answers at once), the bid
//     request rate limit and batching (at these rates a requester batches
//     nothing), connection limits (MaxConns) and the connection manager's
//     grace period, stream ordering, node failures.

func init() {
	register(Scenario{
		Name: "simulate",
		What: "the real Job/Auction and node machines on a simulated network of 1,000/5,000/10,000 nodes (20-200 ms RTT, 1% loss): placement latency and messages per job, gossip vs sampled",
		Run:  runSimulate,
	})
}

const (
	simulateSeed       = 19 // arbitrary, fixed: every run gives the same figures
	simulateLoad       = 0.5
	simulateService    = 10 * time.Minute
	simulateRequesters = 4
	simulateRTTMin     = 20 * time.Millisecond
	simulateRTTMax     = 200 * time.Millisecond
	simulateJitter     = 5 * time.Millisecond
	simulateLoss       = 0.01
	simulateMinRTO     = 200 * time.Millisecond // Linux TCP's floor
	simulateFirstPTO   = time.Second            // QUIC's first probe timeout, before an RTT is known
	simulateConns      = 512                    // p2p.Config.ConnsHigh default
	simulateKept       = 6                      // peers a requester is always connected to
	simulateGone       = 100                    // one candidate listing in this many is a node that left
	candidateTTL       = 30 * time.Second       // p2p.Config.CandidateTTL default
	sampleRounds       = 2                      // dms's sampleRounds
	gossipD            = 6                      // go-libp2p-pubsub's defaults: D, Dhi
	gossipDhi          = 12
	gossipLazy         = 6 // IHAVE to this many peers outside the mesh...
	gossipHistory      = 3 // ...at this many heartbeats
)

// The scenario's modes.
const (
	modeGossip      = "gossip"
	modeSampled     = "sampled"
	modeSampledWarm = "sampled_warm"
)

var simulateModes = []string{modeGossip, modeSampled, modeSampledWarm}

// simulateSize is one network size and how many jobs each mode runs on
// it: a gossiped job costs every node, so gossip runs fewer.
type simulateSize struct {
	nodes, sampledJobs, gossipJobs int
}

// simulateSizes are the sizes the issue names, or, quick, two small ones
// whose ratio the test checks the scaling with.
func simulateSizes(quick bool) []simulateSize {
	if quick {
		return []simulateSize{{200, 200, 40}, {500, 200, 40}}
	}
	return []simulateSize{{1000, 4000, 1000}, {5000, 4000, 400}, {10000, 4000, 200}}
}

// smConfig is one simulated run.
type smConfig struct {
	seed  uint64
	nodes int
	jobs  int
	mode  string
}

// runSimulate runs every size in every mode, and reports each run as a
// row and its main figures under keys named by mode and size; the median
// RTT is that of every delay drawn in all of them.
func runSimulate(ctx context.Context, o Options) (map[string]any, error) {
	res := map[string]any{
		"load": simulateLoad, "loss": simulateLoss, "rtt_min_ms": ms(simulateRTTMin), "rtt_max_ms": ms(simulateRTTMax),
		"sampled_d": dms.DefaultBidSampling, "requesters": simulateRequesters, "mean_run_s": simulateService.Seconds(),
	}
	var rows []map[string]any
	var rtts rttHist
	for _, size := range simulateSizes(o.Quick) {
		for _, mode := range simulateModes {
			c := smConfig{seed: simulateSeed, nodes: size.nodes, jobs: size.sampledJobs, mode: mode}
			if mode == modeGossip {
				c.jobs = size.gossipJobs
			}
			row, err := simulateRow(ctx, c)
			if err != nil {
				return nil, err
			}
			o.Log.Info("simulate", "nodes", c.nodes, "mode", mode, "p50_ms", row.placed.pct(50), "msgs_per_job", row.msgsMean())
			rtts.merge(&row.rtts)
			rows = append(rows, row.fields())
			row.headline(res)
		}
	}
	res["median_rtt_ms"], res["rows"] = ms(rtts.median()), rows
	return res, nil
}

// smRow is what one run measured.
type smRow struct {
	cfg                             smConfig
	jobs, completed                 int
	placed, started                 dist // since submission
	first                           dist // placed, of the jobs placed by the auction opened at their submission
	msgs                            []int
	frames, copies, control, floods int
	auctions                        int
	rtts                            rttHist
}

// simulateRow draws the cluster and jobs of c.nodes (the same in every
// mode: a mode with fewer jobs runs the first ones), fills the cluster to
// its load, runs c.jobs jobs in c.mode until every run has ended, and
// measures them.
func simulateRow(ctx context.Context, c smConfig) (smRow, error) {
	w := drawWorkload(rand.New(rand.NewPCG(c.seed, uint64(c.nodes))), c.nodes, c.jobs, simulateLoad, simulateService)
	reqs := make([]string, simulateRequesters)
	for i := range reqs {
		reqs[i] = "r" + strconv.Itoa(i)
	}
	s := newSim(simConfig{name: "simulate", nodes: w.nodes, works: w.jobs, requesters: reqs})
	if s.err != nil {
		return smRow{}, s.err
	}
	net := newMeshNet(s, c)
	s.net = net
	if err := s.fill(rand.New(rand.NewPCG(c.seed, 3)), simulateLoad); err != nil {
		return smRow{}, err
	}
	if err := s.run(ctx); err != nil {
		return smRow{}, err
	}
	return smMeasure(c, s, net), nil
}

// smMeasure sums up the jobs of a run.
func smMeasure(c smConfig, s *sim, net *meshNet) smRow {
	r := smRow{cfg: c, jobs: len(s.jobs), auctions: s.auctions, rtts: net.rtts}
	var placed, started, first []time.Duration
	for _, j := range s.jobs {
		if j.completed {
			r.completed++
		}
		if !j.placed.IsZero() {
			placed = append(placed, j.placed.Sub(j.arrived))
			// An auction that found no room leaves no attempt: one attempt,
			// started at submission, is the first auction's placement.
			if a := j.job.Info().Attempts; len(a) == 1 && a[0].StartedAt.Equal(j.arrived) {
				first = append(first, j.placed.Sub(j.arrived))
			}
		}
		if !j.started.IsZero() {
			started = append(started, j.started.Sub(j.arrived))
		}
		r.msgs = append(r.msgs, j.frames+j.copies+j.control)
		r.frames, r.copies, r.control = r.frames+j.frames, r.copies+j.copies, r.control+j.control
		r.floods += j.floods
	}
	r.placed, r.started, r.first = newDist(placed), newDist(started), newDist(first)
	return r
}

// msgsMean is the messages sent per job, all counted.
func (r smRow) msgsMean() float64 {
	return round3(float64(r.frames+r.copies+r.control) / float64(max(r.jobs, 1)))
}

// per is n per job.
func (r smRow) per(n int) float64 { return round3(float64(n) / float64(max(r.jobs, 1))) }

// overRTT is the placement p50 over the median RTT the run drew.
// overRTT is the placement p50 over the median RTT the run drew.
func (r smRow) overRTT() float64 { return round3(r.placed.pct(50) / ms(r.rtts.median())) }

// msgsMedian is the messages of the median job: a sampled job's mean
// carries the rare ones gossiped to every node.
func (r smRow) msgsMedian() int {
	msgs := slices.Sorted(slices.Values(r.msgs))
	return msgs[(len(msgs)-1)/2]
}

func (r smRow) fields() map[string]any {
	return map[string]any{
		"nodes": r.cfg.nodes, "mode": r.cfg.mode, "jobs": r.jobs, "placed": len(r.placed), "failed": r.jobs - r.completed,
		"p50_ms": r.placed.pct(50), "p95_ms": r.placed.pct(95), "p99_ms": r.placed.pct(99), "min_ms": r.placed.pct(0),
		"started_p50_ms": r.started.pct(50), "first_auction_p50_ms": r.first.pct(50), "first_auction_share": r.per(len(r.first)),
		"msgs_per_job": r.msgsMean(), "msgs_p50": r.msgsMedian(),
		"frames_per_job": r.per(r.frames), "copies_per_job": r.per(r.copies), "control_per_job": r.per(r.control),
		"floods": r.floods, "auctions_per_job": r.per(r.auctions),
		"median_rtt_ms": ms(r.rtts.median()), "p50_over_rtt": r.overRTT(),
	}
}

// headline adds the row's main figures to res under keys named by its
// mode and size.
func (r smRow) headline(res map[string]any) {
	at := fmt.Sprintf("_%d", r.cfg.nodes)
	res[r.cfg.mode+"_p50_ms"+at], res[r.cfg.mode+"_p99_ms"+at] = r.placed.pct(50), r.placed.pct(99)
	res[r.cfg.mode+"_msgs_per_job"+at], res[r.cfg.mode+"_p50_over_rtt"+at] = r.msgsMean(), r.overRTT()
	res[r.cfg.mode+"_msgs_p50"+at] = r.msgsMedian()
}

// simBackground is the requester of the jobs that fill the cluster.
const simBackground = "background"

// fill puts background jobs on nodes until load of the cluster's cores are
// in use: each goes to a random node with room (a few tries, then the job
// is drawn again), and runs for an exponential time of mean
// simulateService.
func (s *sim) fill(rng *rand.Rand, load float64) error {
	var total, used types.MilliCPU
	for _, n := range s.order {
		total += n.m.Ledger().Registered().CPU
	}
	for i := 0; float64(used) < load*float64(total); i++ {
		need := drawNeed(rng)
		svc := time.Duration(rng.ExpFloat64() * float64(simulateService))
		for range 16 {
			n := s.order[rng.IntN(len(s.order))]
			if !need.Fits(n.m.Ledger().Available(s.now())) {
				continue
			}
			if err := s.occupy(n, types.JobID("b"+strconv.Itoa(i)), need, max(svc, time.Microsecond)); err != nil {
				return err
			}
			used += need.CPU
			break
		}
	}
	return nil
}

// occupy starts a background job on n through the machine's own steps (a
// bid, its accept, the invocation), as a requester would with no network
// in between.
func (s *sim) occupy(n *simNode, id types.JobID, need types.Resources, service time.Duration) error {
	now := s.now()
	n.m.BidRequest(&types.BidRequest{JobID: id, Requester: simBackground, Executor: "wasm", Resources: need, Deadline: now.Add(time.Second)}, now)
	bid, _ := effectMsg(n, func(e node.Effect) types.Message { snd, _ := e.(node.Send); return snd.Msg }).(*types.Bid)
	if bid == nil {
		return fmt.Errorf("bench: simulate: node %s did not bid for background job %s", n.peer, id)
	}
	n.ticket++
	n.m.Accept(simBackground, &types.Accept{JobID: id, AllocationID: bid.Allocation, Resources: need}, n.ticket, now)
	confirm, _ := effectMsg(n, func(e node.Effect) types.Message { r, _ := e.(node.Reply); return r.Msg }).(*types.Confirm)
	if confirm == nil {
		return fmt.Errorf("bench: simulate: node %s did not confirm background job %s", n.peer, id)
	}
	n.ticket++
	inv := types.Invocation{JobID: id, AllocationID: bid.Allocation, Epoch: confirm.Epoch, Task: types.Task{Executor: "wasm", Module: "bafybackground", Resources: need}}
	n.m.Invoke(simBackground, &inv, n.ticket, now)
	n.m.Ready()
	if !slices.ContainsFunc(n.m.Advance(nil), func(e node.Effect) bool { _, ok := e.(node.Run); return ok }) {
		return fmt.Errorf("bench: simulate: node %s did not start background job %s", n.peer, id)
	}
	s.start(n, bid.Allocation, id, service)
	return nil
}

// effectMsg returns the first message that of finds among the effects of
// n's last step.
func effectMsg(n *simNode, of func(node.Effect) types.Message) types.Message {
	n.m.Ready()
	for _, e := range n.m.Advance(nil) {
		if m := of(e); m != nil {
			return m
		}
	}
	return nil
}

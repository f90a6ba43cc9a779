package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/node"
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
	placementBidHold    = 3 * time.Second  // node.Config.BidHold default
	placementLockTTL    = 10 * time.Second // node.Config.LockTTL default
	placementRetries    = 3
	placementHeadline   = 0.8
	placementGossipMin  = 500 * time.Microsecond
	placementGossipSpan = 2 * time.Millisecond
	placementStreamMin  = 50 * time.Microsecond
	placementStreamSpan = 100 * time.Microsecond
)

var placementLoads = []float64{0.5, 0.8, 0.95}

// placementCPU is the distribution of a job's cores: millicores and weight (%).
var placementCPU = [][2]int{{500, 30}, {1000, 35}, {2000, 25}, {4000, 10}}

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
	sim := newPlSim(w, c)
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

// plWork is one job of the workload, the same for both schedulers.
type plWork struct {
	arrive  time.Duration // since the start
	need    types.Resources
	service time.Duration
}

type plWorkload struct {
	nodes []types.Resources
	jobs  []plWork
}

// newPlWorkload draws the cluster, then the jobs at the arrival rate that
// offers load. The same seed gives the same cluster and the same job sizes
// and service times at every load.
func newPlWorkload(seed uint64, nodes, jobs int, load float64) plWorkload {
	rng := rand.New(rand.NewPCG(seed, 1))
	var w plWorkload
	var cores float64
	for range nodes {
		c := []int{2, 4, 8, 16}[plPick(rng, []int{30, 30, 25, 15})]
		gib := types.Bytes(c*(2+2*rng.IntN(2))) << 30
		w.nodes = append(w.nodes, types.Resources{CPU: types.MilliCPU(c * 1000), Memory: gib})
		cores += float64(c)
	}
	meanCPU, weights := 0.0, make([]int, len(placementCPU))
	for i, cw := range placementCPU {
		meanCPU += float64(cw[0]*cw[1]) / 100 / 1000
		weights[i] = cw[1]
	}
	rate := load * cores / (meanCPU * placementService.Seconds()) // jobs per second
	var at time.Duration
	for range jobs {
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		cpu := placementCPU[plPick(rng, weights)][0]
		mem := types.Bytes(cpu) * types.Bytes(1+rng.IntN(3)) << 30 / 1000
		svc := time.Duration(rng.ExpFloat64() * float64(placementService))
		w.jobs = append(w.jobs, plWork{arrive: at, need: types.Resources{CPU: types.MilliCPU(cpu), Memory: mem}, service: max(svc, time.Microsecond)})
	}
	return w
}

// plPick draws an index with the given weights.
func plPick(rng *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := rng.IntN(total)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// plEnd is a job running on the central scheduler's node, until at.
type plEnd struct {
	at        time.Duration
	job, node int
}

// plCentral runs the omniscient central scheduler and returns each job's
// response time.
func plCentral(w plWorkload) []time.Duration {
	free := slices.Clone(w.nodes)
	resp := make([]time.Duration, len(w.jobs))
	ends := plHeap[plEnd]{less: func(a, b plEnd) bool { return a.at < b.at || (a.at == b.at && a.job < b.job) }}
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

// plHeap is a binary min-heap.
type plHeap[T any] struct {
	items []T
	less  func(a, b T) bool
}

func (h *plHeap[T]) len() int { return len(h.items) }
func (h *plHeap[T]) peek() T  { return h.items[0] }

func (h *plHeap[T]) push(x T) {
	h.items = append(h.items, x)
	for i := len(h.items) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(h.items[i], h.items[p]) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *plHeap[T]) pop() T {
	top, last := h.items[0], len(h.items)-1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	for i := 0; ; {
		m, l, r := i, 2*i+1, 2*i+2
		if l < last && h.less(h.items[l], h.items[m]) {
			m = l
		}
		if r < last && h.less(h.items[r], h.items[m]) {
			m = r
		}
		if m == i {
			return top
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}

// The auction side: jobs, nodes and the messages between them, as events.

// plStart is the virtual time at which the auction side starts.
var plStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// plEvent is something that happens at virtual time at; seq orders the
// events of one instant by when they were scheduled.
type plEvent struct {
	at  time.Duration
	seq uint64
	fn  func()
}

// plNode is a provider: the real machine and what its shell keeps.
type plNode struct {
	peer    string
	m       *node.Machine
	ticket  node.Ticket
	replies map[node.Ticket]func(node.Reply)
	streams map[node.Ticket]*plJob
	runs    map[types.AllocationID]*plRun // started by a Run effect, until their end
	ticked  time.Duration                 // when Tick last ran
}

// plRun is an allocation's run in progress.
type plRun struct {
	job     *plJob
	jobID   types.JobID
	stopped bool // its requester cancelled it: it ended early
}

// plJob is one job on the auction side.
type plJob struct {
	work      plWork
	job       *orchestrator.Job
	arrived   time.Time
	done      time.Time // when it reached a terminal state
	completed bool
	timer     time.Time // the latest Tick scheduled
}

// plSim is the auction side of the placement scenario.
type plSim struct {
	cfg      plConfig
	w        plWorkload
	t        time.Duration // virtual time since plStart
	seq      uint64
	events   plHeap[plEvent]
	delays   *rand.Rand
	nodes    map[string]*plNode
	order    []*plNode // the nodes in the order bid requests go out
	jobs     []*plJob
	auctions int // Publish actions: auctions opened, first ones and repeats
	busy     int // busy declines
	heldBusy int // busy declines that only the holds behind other jobs' bids caused
	err      error
}

func newPlSim(w plWorkload, c plConfig) *plSim {
	s := &plSim{
		cfg: c, w: w, delays: rand.New(rand.NewPCG(c.seed, 2)), nodes: map[string]*plNode{},
		events: plHeap[plEvent]{less: func(a, b plEvent) bool { return a.at < b.at || (a.at == b.at && a.seq < b.seq) }},
	}
	for i, r := range w.nodes {
		n := &plNode{peer: fmt.Sprintf("n%02d", i), replies: map[node.Ticket]func(node.Reply){},
			streams: map[node.Ticket]*plJob{}, runs: map[types.AllocationID]*plRun{}}
		m, err := node.NewMachine(node.MachineConfig{
			ID:        types.NodeID{PeerID: n.peer},
			Record:    types.CapabilityRecord{Offered: r, Price: types.Credit, Executors: []string{"wasm"}, Benchmark: types.Benchmark{CPUAll: 1}},
			Executors: []string{"wasm"}, LockTTL: placementLockTTL, BidHold: placementBidHold,
		}, nil, nil, 0, plStart)
		if err != nil {
			s.err = fmt.Errorf("bench: placement: %w", err)
			return s
		}
		n.m = m
		s.nodes[n.peer], s.order = n, append(s.order, n)
	}
	return s
}

func (s *plSim) now() time.Time { return plStart.Add(s.t) }

// after schedules fn d from now.
func (s *plSim) after(d time.Duration, fn func()) {
	s.seq++
	s.events.push(plEvent{at: s.t + d, seq: s.seq, fn: fn})
}

func (s *plSim) gossip() time.Duration {
	return placementGossipMin + time.Duration(s.delays.Int64N(int64(placementGossipSpan)))
}

func (s *plSim) stream() time.Duration {
	return placementStreamMin + time.Duration(s.delays.Int64N(int64(placementStreamSpan)))
}

// run plays every event until nothing is left to happen.
func (s *plSim) run(ctx context.Context) error {
	if len(s.w.jobs) > 0 {
		s.after(s.w.jobs[0].arrive, func() { s.arrive(0) })
	}
	for i := 0; s.events.len() > 0 && s.err == nil; i++ {
		if i%(1<<14) == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		e := s.events.pop()
		s.t = e.at
		e.fn()
	}
	return s.err
}

// arrive submits job i, with the shipped job defaults, and schedules the
// next arrival.
func (s *plSim) arrive(i int) {
	if i+1 < len(s.w.jobs) {
		s.after(s.w.jobs[i+1].arrive-s.t, func() { s.arrive(i + 1) })
	}
	spec := orchestrator.JobSpec{
		ID:      types.JobID(fmt.Sprint("j", i)),
		Task:    types.Task{Executor: "wasm", Module: "bafyplacement", Resources: s.w.jobs[i].need},
		Retries: placementRetries, BidWindow: jobs.DefaultBidWindow, EnoughBids: jobs.DefaultEnoughBids,
		QueueTimeout: jobs.DefaultQueueTimeout,
	}
	if s.cfg.enough > 0 {
		spec.EnoughBids = s.cfg.enough
	}
	job, err := orchestrator.NewJob(spec, orchestrator.JobConfig{Requester: "requester", Ranking: s.cfg.ranking}, s.now())
	if err != nil {
		s.err = fmt.Errorf("bench: placement: %w", err)
		return
	}
	j := &plJob{work: s.w.jobs[i], job: job, arrived: s.now()}
	s.jobs = append(s.jobs, j)
	job.Start(s.now())
	s.settle(j)
}

// toJob delivers an event to j d from now.
func (s *plSim) toJob(j *plJob, d time.Duration, fn func(now time.Time)) {
	s.after(d, func() { fn(s.now()); s.settle(j) })
}

// settle does what j asks, as the orchestrator shell does, notes its end,
// and schedules its next Tick.
func (s *plSim) settle(j *plJob) {
	now := s.now()
	for acts := j.job.Actions(); len(acts) > 0; acts = j.job.Actions() {
		for _, act := range acts {
			s.act(j, act, now)
		}
	}
	if j.job.Done() && j.done.IsZero() {
		j.done, j.completed = now, j.job.Info().State == types.JobCompleted
	}
	if d, ok := j.job.NextDeadline(); ok && !d.Equal(j.timer) {
		j.timer = d
		s.after(max(d.Sub(now), 0), func() { j.job.Tick(s.now()); s.settle(j) })
	}
}

// act sends the messages an action asks for. The bid request reaches
// every node: the shell reports them all as reached, so the window also
// closes once every node answered.
func (s *plSim) act(j *plJob, act orchestrator.Action, now time.Time) {
	switch a := act.(type) {
	case orchestrator.Publish:
		s.auctions++
		reached := make([]string, len(s.order))
		for i, n := range s.order {
			reached[i] = n.peer
			s.after(s.gossip(), func() { s.bidRequest(n, a.Request) })
		}
		j.job.Published(a.Attempt, reached, now)
	case orchestrator.SendAccept:
		n := s.nodes[a.Peer]
		s.after(s.stream(), func() { s.accept(n, j, a.Accept) })
	case orchestrator.Release:
		n := s.nodes[a.Peer]
		s.after(s.stream(), func() { s.cancel(n, a.Cancel) })
	case orchestrator.Invoke:
		n := s.nodes[a.Peer]
		s.after(s.stream(), func() { s.invoke(n, j, a.Invocation) })
	}
}

// bidRequest hands a bid request to a node; its answer travels back. The
// node's holds and locks are expired at most once a virtual second (they
// stop counting at their end anyway).
func (s *plSim) bidRequest(n *plNode, req types.BidRequest) {
	now := s.now()
	if s.t-n.ticked >= time.Second {
		n.m.Tick(now)
		n.ticked = s.t
	}
	n.m.BidRequest(&req, now)
	s.flush(n)
}

// request hands a node a request with a fresh ticket, and what to do with
// its reply.
func (s *plSim) request(n *plNode, step func(t node.Ticket), onReply func(node.Reply)) {
	n.ticket++
	n.replies[n.ticket] = onReply
	step(n.ticket)
	s.flush(n)
}

// flush plays the node's shell: what the machine asks becomes messages to
// the requester and runs.
func (s *plSim) flush(n *plNode) {
	n.m.Ready() // no disk in the model: the records are not kept
	for _, e := range n.m.Advance(nil) {
		switch e := e.(type) {
		case node.Send:
			s.answer(e.Msg)
		case node.Reply:
			if fn := n.replies[e.Ticket]; fn != nil {
				delete(n.replies, e.Ticket)
				fn(e)
			}
		case node.Notify:
			if j := n.streams[e.Ticket]; j != nil {
				st := e.Status
				s.toJob(j, s.stream(), func(now time.Time) { j.job.Status(st, now) })
				if e.Last {
					delete(n.streams, e.Ticket)
				}
			}
		case node.Run:
			s.start(n, e.Allocation)
		case node.Stop:
			if r := n.runs[e.AllocationID]; r != nil {
				r.stopped = true
				s.end(n, e.AllocationID, r, types.AllocCancelled)
			}
		}
	}
}

// answer sends a bid or decline to its job, counting the busy declines
// and those that only other jobs' holds caused.
func (s *plSim) answer(msg types.Message) {
	switch m := msg.(type) {
	case *types.Bid:
		b, j := *m, s.jobs[plJobIndex(m.JobID)]
		s.toJob(j, s.stream(), func(now time.Time) { j.job.Bid(b, now) })
	case *types.Decline:
		d, j, n := *m, s.jobs[plJobIndex(m.JobID)], s.nodes[m.Node.PeerID]
		if d.Busy {
			s.busy++
			if need := j.work.need; need.Fits(n.m.Ledger().Registered().Sub(n.m.Ledger().Locked(s.now()))) {
				s.heldBusy++
			}
		}
		s.toJob(j, s.stream(), func(now time.Time) { j.job.Decline(d, now) })
	}
}

// plJobIndex is the index of the job named "j<i>".
func plJobIndex(id types.JobID) int {
	i, _ := strconv.Atoi(string(id[1:]))
	return i
}

// accept hands an Accept to a node; the Confirm or Reject travels back.
func (s *plSim) accept(n *plNode, j *plJob, a types.Accept) {
	s.request(n, func(t node.Ticket) { n.m.Accept("requester", &a, t, s.now()) }, func(r node.Reply) {
		switch m := r.Msg.(type) {
		case *types.Confirm:
			c := *m
			s.toJob(j, s.stream(), func(now time.Time) { j.job.Confirmed(c, now) })
		case *types.Reject:
			rej := *m
			s.toJob(j, s.stream(), func(now time.Time) { j.job.Rejected(rej, now) })
		}
	})
}

// invoke hands the invocation to a node: its statuses travel back on the
// stream; a refusal comes back as a failed status, as the node's shell
// sends it.
func (s *plSim) invoke(n *plNode, j *plJob, inv types.Invocation) {
	s.request(n, func(t node.Ticket) {
		n.streams[t] = j
		n.m.Invoke("requester", &inv, t, s.now())
	}, func(r node.Reply) {
		if r.Err != nil {
			st := types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: types.AllocFailed, Fault: types.FaultNode, Reason: r.Err.Error()}
			s.toJob(j, s.stream(), func(now time.Time) { j.job.Status(st, now) })
		}
	})
}

// start runs an allocation: it ends after its job's service time.
func (s *plSim) start(n *plNode, a node.Allocation) {
	r := &plRun{job: s.jobs[plJobIndex(a.JobID)], jobID: a.JobID}
	n.runs[a.AllocationID] = r
	s.after(r.job.work.service, func() {
		if !r.stopped {
			s.end(n, a.AllocationID, r, types.AllocCompleted)
		}
	})
}

// end reports the end of a run to its node, which tells the requester.
func (s *plSim) end(n *plNode, id types.AllocationID, r *plRun, state types.AllocationState) {
	delete(n.runs, id)
	st := types.Status{JobID: r.jobID, AllocationID: id, State: state}
	if state == types.AllocCompleted {
		st.Result = &types.Result{}
	}
	n.m.RunEnded(st, s.now())
	s.flush(n)
}

// cancel hands a Cancel to a node: it withdraws a bid's hold, or drops a
// lock or stops a run.
func (s *plSim) cancel(n *plNode, c types.Cancel) {
	s.request(n, func(t node.Ticket) { n.m.Cancel("requester", &c, t, s.now()) }, func(node.Reply) {})
}

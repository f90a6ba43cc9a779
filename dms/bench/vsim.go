package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// The virtual-time simulations (placement, simulate) share what follows: an
// event loop, and the shells of the real machines, the requester's
// orchestrator.Job and the provider's node.Machine, which they drive
// exactly as a daemon does. What differs between them is the network: a
// simNet says how long each message takes, whom a bid request reaches, and
// counts what it carries. No goroutine, no clock: time is virtual and every
// random draw comes from a seeded source, so a simulation gives the same
// figures on every machine and every run.

// simStart is the virtual time at which a simulation starts.
var simStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	simBidHold = 3 * time.Second  // node.Config.BidHold default
	simLockTTL = 10 * time.Second // node.Config.LockTTL default
	simRetries = 3
)

// simWork is one job of a workload: when it arrives, what it needs, and
// how long it runs once started.
type simWork struct {
	arrive  time.Duration // since the start
	need    types.Resources
	service time.Duration
}

// simNet is how a simulation's messages travel. Its methods run on the
// event loop, as everything in a simulation does.
type simNet interface {
	// publish sends the bid request p of j and tells j, now or later
	// (Job.Published, then sim.settle), which nodes it reached.
	publish(j *simJob, p orchestrator.Publish)
	// send carries a message of j from one peer to another; deliver runs
	// when it arrives. frames is what the exchange costs on the wire: 2
	// for a request whose acknowledgement or reply the simulation does not
	// carry back, 1 otherwise.
	send(from, to string, j *simJob, frames int, deliver func())
}

// simEvent is something that happens at virtual time at; seq orders the
// events of one instant by when they were scheduled.
type simEvent struct {
	at  time.Duration
	seq uint64
	fn  func()
}

// simNode is a provider: the real machine and what its shell keeps.
type simNode struct {
	peer    string
	index   int // in sim.order
	m       *node.Machine
	ticket  node.Ticket
	replies map[node.Ticket]func(node.Reply)
	streams map[node.Ticket]*simJob
	runs    map[types.AllocationID]*simRun // started by a Run effect, until their end
	ticked  time.Duration                  // when Tick last ran
}

// simRun is an allocation's run in progress.
type simRun struct {
	jobID   types.JobID
	stopped bool // its requester cancelled it: it ended early
}

// simJob is one job on the requester's side.
type simJob struct {
	work      simWork
	job       *orchestrator.Job
	requester string
	arrived   time.Time
	placed    time.Time // when it was placed: its requester sent the invocation
	started   time.Time // when its run started on a node
	done      time.Time // when it reached a terminal state
	completed bool
	timer     time.Time // the latest Tick scheduled
	// What the job cost the network, as its simNet counts it: stream
	// frames, gossip copies, the message IDs of gossip control messages,
	// and how many times its bid request was gossiped.
	frames, copies, control, floods int
}

// simConfig is what a simulation takes besides its network.
type simConfig struct {
	name       string // for errors: "bench: <name>: ..."
	nodes      []types.Resources
	works      []simWork
	requesters []string             // job i is submitted by requesters[i%len]
	ranking    orchestrator.Ranking // no scorers: DefaultRanking
	enough     int                  // bids that close the window; 0: jobs.DefaultEnoughBids
}

// sim is a simulated market: jobs auctioned by their real orchestrator.Job
// machines to providers that are real node.Machines.
type sim struct {
	cfg      simConfig
	t        time.Duration // virtual time since simStart
	seq      uint64
	events   minHeap[simEvent]
	net      simNet
	nodes    map[string]*simNode
	order    []*simNode // the nodes in the order bid requests go out
	jobs     []*simJob
	auctions int // Publish actions: auctions opened, first ones and repeats
	busy     int // busy declines
	heldBusy int // busy declines that only the holds behind other jobs' bids caused
	err      error
}

// newSim makes the nodes' machines; the caller sets s.net before run.
// Peers are named n0, n1... with as many digits as the last needs (at
// least two), so that names sort as the nodes do.
func newSim(c simConfig) *sim {
	s := &sim{
		cfg: c, nodes: make(map[string]*simNode, len(c.nodes)),
		events: minHeap[simEvent]{less: func(a, b simEvent) bool { return a.at < b.at || (a.at == b.at && a.seq < b.seq) }},
	}
	width := max(2, len(strconv.Itoa(len(c.nodes)-1)))
	for i, r := range c.nodes {
		n := &simNode{peer: fmt.Sprintf("n%0*d", width, i), index: i, replies: map[node.Ticket]func(node.Reply){},
			streams: map[node.Ticket]*simJob{}, runs: map[types.AllocationID]*simRun{}}
		m, err := node.NewMachine(node.MachineConfig{
			ID:        types.NodeID{PeerID: n.peer},
			Record:    types.CapabilityRecord{Offered: r, Price: types.Credit, Executors: []string{"wasm"}, Benchmark: types.Benchmark{CPUAll: 1}},
			Executors: []string{"wasm"}, LockTTL: simLockTTL, BidHold: simBidHold,
		}, nil, nil, 0, simStart)
		if err != nil {
			s.err = fmt.Errorf("bench: %s: %w", c.name, err)
			return s
		}
		n.m = m
		s.nodes[n.peer], s.order = n, append(s.order, n)
	}
	return s
}

func (s *sim) now() time.Time { return simStart.Add(s.t) }

// after schedules fn d from now.
func (s *sim) after(d time.Duration, fn func()) {
	s.seq++
	s.events.push(simEvent{at: s.t + d, seq: s.seq, fn: fn})
}

// run plays every event until nothing is left to happen.
func (s *sim) run(ctx context.Context) error {
	if len(s.cfg.works) > 0 {
		s.after(s.cfg.works[0].arrive, func() { s.arrive(0) })
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
func (s *sim) arrive(i int) {
	works := s.cfg.works
	if i+1 < len(works) {
		s.after(works[i+1].arrive-s.t, func() { s.arrive(i + 1) })
	}
	spec := orchestrator.JobSpec{
		ID:      types.JobID(fmt.Sprint("j", i)),
		Task:    types.Task{Executor: "wasm", Module: "bafyplacement", Resources: works[i].need},
		Retries: simRetries, BidWindow: jobs.DefaultBidWindow, EnoughBids: jobs.DefaultEnoughBids,
		QueueTimeout: jobs.DefaultQueueTimeout,
	}
	if s.cfg.enough > 0 {
		spec.EnoughBids = s.cfg.enough
	}
	req := s.cfg.requesters[i%len(s.cfg.requesters)]
	job, err := orchestrator.NewJob(spec, orchestrator.JobConfig{Requester: req, Ranking: s.cfg.ranking}, s.now())
	if err != nil {
		s.err = fmt.Errorf("bench: %s: %w", s.cfg.name, err)
		return
	}
	j := &simJob{work: works[i], job: job, requester: req, arrived: s.now()}
	s.jobs = append(s.jobs, j)
	job.Start(s.now())
	s.settle(j)
}

// toJob carries a message from a node to j's requester, which hands it to
// j with fn.
func (s *sim) toJob(from string, j *simJob, frames int, fn func(now time.Time)) {
	s.net.send(from, j.requester, j, frames, func() { fn(s.now()); s.settle(j) })
}

// settle does what j asks, as the orchestrator shell does, notes its end,
// and schedules its next Tick.
func (s *sim) settle(j *simJob) {
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

// act sends the messages an action asks for; the network publishes bid
// requests.
func (s *sim) act(j *simJob, act orchestrator.Action, now time.Time) {
	switch a := act.(type) {
	case orchestrator.Publish:
		s.auctions++
		s.net.publish(j, a)
	case orchestrator.SendAccept:
		n := s.nodes[a.Peer]
		s.net.send(j.requester, a.Peer, j, 1, func() { s.accept(n, j, a.Accept) })
	case orchestrator.Release:
		n := s.nodes[a.Peer]
		s.net.send(j.requester, a.Peer, j, 2, func() { s.cancel(n, j, a.Cancel) })
	case orchestrator.Invoke:
		if j.placed.IsZero() {
			j.placed = now
		}
		n := s.nodes[a.Peer]
		s.net.send(j.requester, a.Peer, j, 1, func() { s.invoke(n, j, a.Invocation) })
	}
}

// bidRequest hands a bid request to a node; its answer travels back. The
// node's holds and locks are expired at most once a virtual second (they
// stop counting at their end anyway).
func (s *sim) bidRequest(n *simNode, req types.BidRequest) {
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
func (s *sim) request(n *simNode, step func(t node.Ticket), onReply func(node.Reply)) {
	n.ticket++
	n.replies[n.ticket] = onReply
	step(n.ticket)
	s.flush(n)
}

// flush plays the node's shell: what the machine asks becomes messages to
// the requester and runs.
func (s *sim) flush(n *simNode) {
	n.m.Ready() // no disk in the model: the records are not kept
	for _, e := range n.m.Advance(nil) {
		switch e := e.(type) {
		case node.Send:
			s.answer(n, e.Msg)
		case node.Reply:
			if fn := n.replies[e.Ticket]; fn != nil {
				delete(n.replies, e.Ticket)
				fn(e)
			}
		case node.Notify:
			if j := n.streams[e.Ticket]; j != nil {
				st := e.Status
				s.toJob(n.peer, j, 1, func(now time.Time) { j.job.Status(st, now) })
				if e.Last {
					delete(n.streams, e.Ticket)
				}
			}
		case node.Run:
			j := s.jobs[simJobIndex(e.Allocation.JobID)]
			if j.started.IsZero() {
				j.started = s.now()
			}
			s.start(n, e.Allocation.AllocationID, e.Allocation.JobID, j.work.service)
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
func (s *sim) answer(n *simNode, msg types.Message) {
	switch m := msg.(type) {
	case *types.Bid:
		b, j := *m, s.jobs[simJobIndex(m.JobID)]
		s.toJob(n.peer, j, 2, func(now time.Time) { j.job.Bid(b, now) })
	case *types.Decline:
		d, j := *m, s.jobs[simJobIndex(m.JobID)]
		if d.Busy {
			s.busy++
			if need := j.work.need; need.Fits(n.m.Ledger().Registered().Sub(n.m.Ledger().Locked(s.now()))) {
				s.heldBusy++
			}
		}
		s.toJob(n.peer, j, 2, func(now time.Time) { j.job.Decline(d, now) })
	}
}

// simJobIndex is the index of the job named "j<i>".
func simJobIndex(id types.JobID) int {
	i, _ := strconv.Atoi(string(id[1:]))
	return i
}

// accept hands an Accept to a node; the Confirm or Reject travels back.
func (s *sim) accept(n *simNode, j *simJob, a types.Accept) {
	s.request(n, func(t node.Ticket) { n.m.Accept(j.requester, &a, t, s.now()) }, func(r node.Reply) {
		switch m := r.Msg.(type) {
		case *types.Confirm:
			c := *m
			s.toJob(n.peer, j, 1, func(now time.Time) { j.job.Confirmed(c, now) })
		case *types.Reject:
			rej := *m
			s.toJob(n.peer, j, 1, func(now time.Time) { j.job.Rejected(rej, now) })
		}
	})
}

// invoke hands the invocation to a node: its statuses travel back on the
// stream; a refusal comes back as a failed status, as the node's shell
// sends it.
func (s *sim) invoke(n *simNode, j *simJob, inv types.Invocation) {
	s.request(n, func(t node.Ticket) {
		n.streams[t] = j
		n.m.Invoke(j.requester, &inv, t, s.now())
	}, func(r node.Reply) {
		if r.Err != nil {
			st := types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: types.AllocFailed, Fault: types.FaultNode, Reason: r.Err.Error()}
			s.toJob(n.peer, j, 1, func(now time.Time) { j.job.Status(st, now) })
		}
	})
}

// start runs an allocation: it ends after service.
func (s *sim) start(n *simNode, id types.AllocationID, job types.JobID, service time.Duration) {
	r := &simRun{jobID: job}
	n.runs[id] = r
	s.after(service, func() {
		if !r.stopped {
			s.end(n, id, r, types.AllocCompleted)
		}
	})
}

// end reports the end of a run to its node, which tells the requester.
func (s *sim) end(n *simNode, id types.AllocationID, r *simRun, state types.AllocationState) {
	delete(n.runs, id)
	st := types.Status{JobID: r.jobID, AllocationID: id, State: state}
	if state == types.AllocCompleted {
		st.Result = &types.Result{}
	}
	n.m.RunEnded(st, s.now())
	s.flush(n)
}

// cancel hands a Cancel to a node: it withdraws a bid's hold, or drops a
// lock or stops a run. Its reply is not carried back: the requester only
// logs it, unless the run had ended already, which does not happen here.
func (s *sim) cancel(n *simNode, j *simJob, c types.Cancel) {
	s.request(n, func(t node.Ticket) { n.m.Cancel(j.requester, &c, t, s.now()) }, func(node.Reply) {})
}

// workload is a cluster and the jobs it is offered.
type workload struct {
	nodes []types.Resources
	jobs  []simWork
}

// needCPU is the distribution of a job's cores: millicores and weight (%).
var needCPU = [][2]int{{500, 30}, {1000, 35}, {2000, 25}, {4000, 10}}

// drawWorkload draws a cluster of n nodes (drawNode), then jobs sized by
// drawNeed whose service times are exponential with a mean of service,
// arriving (Poisson) at the rate that offers load: rate * mean(cores) *
// service / the cluster's cores.
func drawWorkload(rng *rand.Rand, n, jobs int, load float64, service time.Duration) workload {
	var w workload
	var cores float64
	for range n {
		r := drawNode(rng)
		w.nodes = append(w.nodes, r)
		cores += float64(r.CPU) / 1000
	}
	rate := load * cores / (meanNeedCPU() * service.Seconds()) // jobs per second
	var at time.Duration
	for range jobs {
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		need := drawNeed(rng)
		svc := time.Duration(rng.ExpFloat64() * float64(service))
		w.jobs = append(w.jobs, simWork{arrive: at, need: need, service: max(svc, time.Microsecond)})
	}
	return w
}

// drawNode draws a node: 2, 4, 8 or 16 cores (30/30/25/15%), with 2 or 4
// GiB a core.
func drawNode(rng *rand.Rand) types.Resources {
	c := []int{2, 4, 8, 16}[pickWeighted(rng, []int{30, 30, 25, 15})]
	return types.Resources{CPU: types.MilliCPU(c * 1000), Memory: types.Bytes(c*(2+2*rng.IntN(2))) << 30}
}

// drawNeed draws a job's resources: cores as needCPU says, 1 to 3
// GiB a core.
func drawNeed(rng *rand.Rand) types.Resources {
	weights := make([]int, len(needCPU))
	for i, cw := range needCPU {
		weights[i] = cw[1]
	}
	cpu := needCPU[pickWeighted(rng, weights)][0]
	return types.Resources{CPU: types.MilliCPU(cpu), Memory: types.Bytes(cpu) * types.Bytes(1+rng.IntN(3)) << 30 / 1000}
}

// meanNeedCPU is the mean of drawNeed's cores.
func meanNeedCPU() float64 {
	mean := 0.0
	for _, cw := range needCPU {
		mean += float64(cw[0]*cw[1]) / 100 / 1000
	}
	return mean
}

// pickWeighted draws an index with the given weights.
func pickWeighted(rng *rand.Rand, weights []int) int {
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

// minHeap is a binary min-heap.
type minHeap[T any] struct {
	items []T
	less  func(a, b T) bool
}

func (h *minHeap[T]) len() int { return len(h.items) }
func (h *minHeap[T]) peek() T  { return h.items[0] }

func (h *minHeap[T]) push(x T) {
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

func (h *minHeap[T]) pop() T {
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

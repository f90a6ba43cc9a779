package orchestrator

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
	"pgregory.net/rapid"
)

// This file runs many jobs (each its Job and Auction machines) against many
// nodes (each the real provider machine, node.Machine, with its records
// kept in a map that stands for its database) over a network that delays,
// reorders, duplicates and drops every message, with random completions,
// node failures and restarts, full disks, false "node lost" alarms,
// cancels, stale and forged invocations and the passing of time. The
// simulation plays both shells: it turns a Job's actions into messages to
// nodes and a Machine's effects into messages to jobs, as the orchestrator
// and the Node actor do. After every step it checks:
//
//   - no node's holds, locks and running allocations exceed what it offers,
//     by the ledger's account and by its live allocations';
//   - no job is held by two nodes: at most one allocation per job is running
//     on a node without its requester having let go of it (released it, or
//     seen it end);
//   - a job's result is the result of the allocation its final attempt
//     placed, and never changes;
//   - an invocation that names a lock past its expiry, or a stale epoch,
//     never starts;
//
// and at the end, once every message is delivered and every run finished,
// that every job ended with a reason and every ledger is empty.

const (
	simLockTTL = time.Second
	simBidHold = 500 * ms
	simLease   = time.Second
)

// simMsg is one message in flight; deliver acts on its receiver.
type simMsg struct {
	what    string
	deliver func(now time.Time)
}

// simHistory stands for a node's database: the records it saved.
type simHistory map[types.AllocationID]node.Allocation

func (h simHistory) Lookup(id types.AllocationID) (node.Allocation, bool) {
	r, ok := h[id]
	return r, ok
}

// simNode is a provider: the real machine, its saved records, and what its
// shell keeps: the runs in progress, the requests waiting for a reply and
// the invocation streams.
type simNode struct {
	peer    string
	offered types.Resources
	m       *node.Machine
	saved   simHistory
	full    bool // the next write fails
	ticket  node.Ticket
	running map[types.AllocationID]types.JobID // runs in progress, by the Run effects
	replies map[node.Ticket]func(node.Reply, time.Time)
	streams map[node.Ticket]*simJob
}

func newSimNode(t fataler, peer string, offered types.Resources, now time.Time) *simNode {
	n := &simNode{peer: peer, offered: offered, saved: simHistory{}}
	n.restart(t, now)
	return n
}

// restart rebuilds the node from its saved records, as after a crash: the
// runs, the pending replies and the streams die with the process.
func (n *simNode) restart(t fataler, now time.Time) {
	recs := make([]node.Allocation, 0, len(n.saved))
	for _, r := range n.saved {
		recs = append(recs, r)
	}
	m, err := node.NewMachine(node.MachineConfig{
		ID:        types.NodeID{PeerID: n.peer},
		Record:    types.CapabilityRecord{Offered: n.offered, Price: types.Credit, Executors: []string{"wasm"}, Benchmark: types.Benchmark{CPUAll: 1}},
		Executors: []string{"wasm"}, LockTTL: simLockTTL, BidHold: simBidHold,
	}, n.saved, recs, 0, now)
	if err != nil {
		t.Fatalf("restarting %s: %v", n.peer, err)
	}
	n.m = m
	n.running = map[types.AllocationID]types.JobID{}
	n.replies = map[node.Ticket]func(node.Reply, time.Time){}
	n.streams = map[node.Ticket]*simJob{}
}

type simJob struct {
	job      *Job
	invoked  map[types.AllocationID]string // allocation -> node it was invoked on
	letGo    map[types.AllocationID]bool   // released by the job, or seen ending by it
	result   *types.Result                 // the first result the job reported
	resultOf types.AllocationID
	heard    time.Time // the last frame on the current allocation's stream, for the lease
}

// fataler is what *testing.T and *rapid.T have in common.
type fataler interface {
	Fatalf(format string, args ...any)
}

type market struct {
	t     fataler
	now   time.Time
	nodes []*simNode
	jobs  []*simJob
	queue []simMsg
}

func (m *market) send(what string, fn func(now time.Time)) {
	m.queue = append(m.queue, simMsg{what: what, deliver: fn})
}

// peers names every node: a bid request reaches them all.
func (m *market) peers() []string {
	out := make([]string, len(m.nodes))
	for i, n := range m.nodes {
		out[i] = n.peer
	}
	return out
}

func (m *market) nodeOf(peer string) *simNode {
	i := slices.IndexFunc(m.nodes, func(n *simNode) bool { return n.peer == peer })
	return m.nodes[i]
}

// drain turns a job's actions into messages, as the orchestrator shell does.
func (m *market) drain(sj *simJob) {
	for _, act := range sj.job.Actions() {
		switch a := act.(type) {
		case Publish:
			for _, n := range m.nodes {
				req := a.Request
				m.send("bid request to "+n.peer, func(now time.Time) { n.m.BidRequest(&req, now); m.flush(n, now) })
			}
			attempt, reached := a.Attempt, m.peers()
			m.send("published", func(now time.Time) { sj.job.Published(attempt, reached, now); m.drain(sj) })
		case SendAccept:
			n, acc := m.nodeOf(a.Peer), a.Accept
			m.send("accept to "+n.peer, func(now time.Time) { m.accept(n, sj, acc, now) })
		case Release:
			n, c := m.nodeOf(a.Peer), a.Cancel
			if c.AllocationID != "" {
				sj.letGo[c.AllocationID] = true
			}
			m.send("cancel to "+n.peer, func(now time.Time) { m.cancel(n, sj, c, now) })
		case Invoke:
			n, inv := m.nodeOf(a.Peer), a.Invocation
			if _, again := sj.invoked[inv.AllocationID]; again {
				m.t.Fatalf("allocation %s invoked twice", inv.AllocationID)
			}
			sj.invoked[inv.AllocationID] = n.peer
			sj.heard = m.now
			m.send("invocation to "+n.peer, func(now time.Time) { m.invoke(n, sj, inv, now) })
		}
	}
}

// toJob queues a message for a job, and its actions once delivered.
func (m *market) toJob(sj *simJob, what string, fn func(j *Job, now time.Time)) {
	m.send(what, func(now time.Time) { fn(sj.job, now); m.drain(sj) })
}

func (m *market) status(sj *simJob, st types.Status) {
	m.toJob(sj, fmt.Sprintf("%s status of %s", st.State, st.AllocationID), func(j *Job, now time.Time) {
		if st.State.Terminal() {
			sj.letGo[st.AllocationID] = true
		}
		if st.AllocationID == j.alloc {
			sj.heard = now
		}
		j.Status(st, now)
	})
}

// request hands a node a request with a fresh ticket, and what to do with
// its reply.
func (m *market) request(n *simNode, now time.Time, step func(t node.Ticket), onReply func(node.Reply, time.Time)) node.Ticket {
	n.ticket++
	n.replies[n.ticket] = onReply
	step(n.ticket)
	m.flush(n, now)
	return n.ticket
}

// flush plays the Node actor: the node saves the step's records (unless its
// disk is full), advances, and its effects become messages and runs.
func (m *market) flush(n *simNode, now time.Time) {
	var err error
	if n.full {
		n.full, err = false, errors.New("disk full")
	} else {
		for _, r := range n.m.Ready() {
			n.saved[r.AllocationID] = r
		}
	}
	for _, e := range n.m.Advance(err) {
		switch e := e.(type) {
		case node.Send:
			sj := m.jobOf(jobOfMsg(e.Msg))
			switch msg := e.Msg.(type) {
			case *types.Bid:
				b := *msg
				m.toJob(sj, "bid", func(j *Job, now time.Time) { j.Bid(b, now) })
			case *types.Decline:
				d := *msg
				m.toJob(sj, "decline", func(j *Job, now time.Time) { j.Decline(d, now) })
			}
		case node.Reply:
			if fn := n.replies[e.Ticket]; fn != nil {
				delete(n.replies, e.Ticket)
				fn(e, now)
			}
		case node.Notify:
			if sj := n.streams[e.Ticket]; sj != nil {
				m.status(sj, e.Status)
				if e.Last {
					delete(n.streams, e.Ticket)
				}
			}
		case node.Run:
			n.running[e.Allocation.AllocationID] = e.Allocation.JobID
		case node.Stop:
			id := e.AllocationID
			m.send("stopped "+string(id), func(now time.Time) {
				m.runEnded(n, id, types.AllocCancelled, "cancelled by requester", now)
			})
		}
	}
}

func jobOfMsg(msg types.Message) types.JobID {
	switch m := msg.(type) {
	case *types.Bid:
		return m.JobID
	case *types.Decline:
		return m.JobID
	}
	return ""
}

// runEnded reports the end of a run in progress to its node.
func (m *market) runEnded(n *simNode, id types.AllocationID, state types.AllocationState, why string, now time.Time) {
	if _, ok := n.running[id]; !ok {
		return // the node restarted meanwhile: the run died with it
	}
	delete(n.running, id)
	st := types.Status{JobID: n.saved[id].JobID, AllocationID: id, State: state, Reason: why}
	if state == types.AllocCompleted {
		st.Result = &types.Result{Stdout: "out-of-" + string(id)}
	}
	if state == types.AllocFailed {
		st.Fault = types.FaultProgram
	}
	n.m.RunEnded(st, now)
	m.flush(n, now)
}

// accept delivers an Accept; the reply goes back as the orchestrator reads
// it: a confirm of the allocation offered, or a reject.
func (m *market) accept(n *simNode, sj *simJob, a types.Accept, now time.Time) {
	m.request(n, now, func(t node.Ticket) { n.m.Accept("requester", &a, t, now) }, func(r node.Reply, _ time.Time) {
		if c, ok := r.Msg.(*types.Confirm); ok && c.JobID == a.JobID && c.AllocationID == a.AllocationID {
			conf := *c
			m.toJob(sj, "confirm", func(j *Job, now time.Time) { j.Confirmed(conf, now) })
			return
		}
		if rr, ok := r.Msg.(*types.Reject); ok {
			rej := types.Reject{JobID: a.JobID, AllocationID: a.AllocationID, Reason: rr.Reason}
			m.toJob(sj, "reject", func(j *Job, now time.Time) { j.Rejected(rej, now) })
			return
		}
		why := fmt.Sprint(r.Msg, r.Err)
		m.toJob(sj, "unanswered", func(j *Job, now time.Time) { j.Unanswered(a.AllocationID, why, now) })
	})
}

// invoke delivers an invocation: its statuses come back on its stream; a
// refusal comes back as a failed status, as the node's shell sends it.
func (m *market) invoke(n *simNode, sj *simJob, inv types.Invocation, now time.Time) {
	// A run already going is joined, not started: its record may still
	// read locked when the write of its start failed (a full disk).
	_, wasRunning := n.running[inv.AllocationID]
	lk, locked := n.saved[inv.AllocationID]
	expired := locked && lk.State == types.AllocLocked && !now.Before(lk.LockExpiry)
	t := m.request(n, now, func(t node.Ticket) {
		n.streams[t] = sj
		n.m.Invoke("requester", &inv, t, now)
	}, func(r node.Reply, _ time.Time) {
		if r.Err != nil {
			m.status(sj, types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: types.AllocFailed, Fault: types.FaultNode, Reason: r.Err.Error()})
		}
	})
	_, started := n.running[inv.AllocationID]
	if started && !wasRunning && expired {
		m.t.Fatalf("%s started at %s, after its lock expired at %s", inv.AllocationID, now, lk.LockExpiry)
	}
	if _, open := n.streams[t]; open && !started {
		delete(n.streams, t) // refused: the stream ends
	}
}

func (m *market) cancel(n *simNode, sj *simJob, c types.Cancel, now time.Time) {
	m.request(n, now, func(t node.Ticket) { n.m.Cancel("requester", &c, t, now) }, func(r node.Reply, _ time.Time) {
		// The shell feeds a late outcome from the reply back to the job.
		if st, ok := r.Msg.(*types.Status); ok && c.AllocationID != "" && st.AllocationID == c.AllocationID &&
			(st.State == types.AllocCompleted || st.State == types.AllocFailed) {
			m.status(sj, *st)
		}
	})
}

func (m *market) jobOf(id types.JobID) *simJob {
	return m.jobs[slices.IndexFunc(m.jobs, func(sj *simJob) bool { return sj.job.info.ID == id })]
}

// simRun is a run in progress on a node.
type simRun struct {
	n   *simNode
	id  types.AllocationID
	job types.JobID
}

// running lists the runs in progress, in order.
func (m *market) running() []simRun {
	var out []simRun
	for _, n := range m.nodes {
		for _, id := range slices.Sorted(maps.Keys(n.running)) {
			out = append(out, simRun{n: n, id: id, job: n.running[id]})
		}
	}
	return out
}

func (m *market) advance(dt time.Duration) {
	m.now = m.now.Add(dt)
	for _, n := range m.nodes {
		n.m.Tick(m.now)
		m.flush(n, m.now)
	}
	for _, sj := range m.jobs {
		sj.job.Tick(m.now)
		m.drain(sj)
		m.lease(sj)
	}
}

// lease plays the shell's lease: a running allocation heartbeats, so its
// stream is heard from; a stream silent for a lease (the invocation or the
// final status was lost, the node restarted) is a lost node.
func (m *market) lease(sj *simJob) {
	alloc := sj.job.alloc
	if alloc == "" {
		return
	}
	if _, ok := m.nodeOf(sj.invoked[alloc]).running[alloc]; ok {
		sj.heard = m.now
		return
	}
	if m.now.Sub(sj.heard) >= simLease {
		sj.job.NodeLost(alloc, "no heartbeat", m.now)
		m.drain(sj)
	}
}

func (m *market) step(t *rapid.T) {
	switch e := rapid.IntRange(0, 99).Draw(t, "event"); {
	case e < 60: // deliver a message; sometimes it also stays, to be delivered again
		if len(m.queue) == 0 {
			return
		}
		i := rapid.IntRange(0, len(m.queue)-1).Draw(t, "msg")
		msg := m.queue[i]
		if !rapid.Bool().Draw(t, "duplicate") || rapid.IntRange(0, 9).Draw(t, "dup") > 0 {
			m.queue = slices.Delete(m.queue, i, i+1)
		}
		msg.deliver(m.now)
	case e < 64: // the network loses a message
		if len(m.queue) > 0 {
			i := rapid.IntRange(0, len(m.queue)-1).Draw(t, "drop")
			m.queue = slices.Delete(m.queue, i, i+1)
		}
	case e < 74:
		m.advance(time.Duration(rapid.IntRange(0, 1500).Draw(t, "dt")) * ms)
	case e < 84: // a run ends on its node
		if r := m.running(); len(r) > 0 {
			run := rapid.SampledFrom(r).Draw(t, "run")
			state := types.AllocCompleted
			if rapid.IntRange(0, 3).Draw(t, "fails") == 0 {
				state = types.AllocFailed
			}
			m.runEnded(run.n, run.id, state, "", m.now)
		}
	case e < 88: // the requester loses the stream to a node that is in fact alive
		placed := slices.DeleteFunc(slices.Clone(m.jobs), func(sj *simJob) bool { return sj.job.alloc == "" })
		if len(placed) > 0 {
			sj := rapid.SampledFrom(placed).Draw(t, "lost job")
			sj.job.NodeLost(sj.job.alloc, "no heartbeat", m.now)
			m.drain(sj)
		}
	case e < 90: // the submitter cancels
		sj := rapid.SampledFrom(m.jobs).Draw(t, "cancel job")
		if sj.job.Cancel("", m.now) == nil {
			m.drain(sj)
		}
	case e < 92: // a node's next write fails: it promises nothing it cannot record
		rapid.SampledFrom(m.nodes).Draw(t, "full disk").full = true
	case e < 93: // a node crashes and restarts from its records
		rapid.SampledFrom(m.nodes).Draw(t, "restart").restart(t, m.now)
	default: // a replayed or forged invocation: a stale epoch never starts
		m.forgedInvocation(t)
	}
}

// forgedInvocation invokes a live allocation under an epoch that is not its
// lock's: it must be refused as stale, and nothing must start.
func (m *market) forgedInvocation(t *rapid.T) {
	n := rapid.SampledFrom(m.nodes).Draw(t, "node")
	live := n.m.Live()
	if len(live) == 0 {
		return
	}
	slices.SortFunc(live, func(a, b node.Allocation) int { return strings.Compare(string(a.AllocationID), string(b.AllocationID)) })
	al := rapid.SampledFrom(live).Draw(t, "alloc")
	inv := types.Invocation{JobID: al.JobID, AllocationID: al.AllocationID, Epoch: al.Epoch + uint64(rapid.IntRange(1, 3).Draw(t, "ahead")),
		Task: types.Task{Executor: "wasm", Resources: al.Resources}}
	_, wasRunning := n.running[al.AllocationID]
	m.request(n, m.now, func(tk node.Ticket) { n.m.Invoke(al.Requester, &inv, tk, m.now) }, func(r node.Reply, _ time.Time) {
		if !errors.Is(r.Err, node.ErrStaleEpoch) {
			t.Fatalf("invocation of %s under epoch %d (lock has %d): %v", al.AllocationID, inv.Epoch, al.Epoch, r)
		}
	})
	if _, running := n.running[al.AllocationID]; running && !wasRunning {
		t.Fatalf("a forged invocation started %s", al.AllocationID)
	}
}

func (m *market) check() {
	for _, n := range m.nodes {
		reg := n.m.Ledger().Registered()
		if used := n.m.Ledger().Used(m.now); !used.Fits(reg) {
			m.t.Fatalf("node %s: ledger uses %s of %s", n.peer, used, reg)
		}
		var sum types.Resources
		for _, al := range n.m.Live() {
			if al.State == types.AllocRunning || m.now.Before(al.LockExpiry) {
				sum = sum.Add(al.Resources)
			}
		}
		if !sum.Fits(reg) {
			m.t.Fatalf("node %s: locked and running allocations hold %s of %s", n.peer, sum, reg)
		}
	}
	held := map[types.JobID][]types.AllocationID{}
	for _, r := range m.running() {
		if !m.jobOf(r.job).letGo[r.id] {
			held[r.job] = append(held[r.job], r.id)
		}
	}
	for job, ids := range held {
		if len(ids) > 1 {
			m.t.Fatalf("job %s is held by %d running allocations: %v", job, len(ids), ids)
		}
	}
	for _, sj := range m.jobs {
		m.checkResult(sj)
	}
}

func (m *market) checkResult(sj *simJob) {
	info := sj.job.info
	if info.State.Terminal() && info.Reason == "" {
		m.t.Fatalf("job %s %s without a reason", info.ID, info.State)
	}
	if info.Result == nil {
		if sj.result != nil {
			m.t.Fatalf("job %s lost its result", info.ID)
		}
		return
	}
	last := info.Attempts[len(info.Attempts)-1]
	if want := "out-of-" + string(last.AllocationID); info.Result.Stdout != want || info.State != types.JobCompleted {
		m.t.Fatalf("job %s (%s) has result %s, want the one of its final allocation %s", info.ID, info.State, info.Result.Stdout, last.AllocationID)
	}
	if sj.result == nil {
		sj.result, sj.resultOf = info.Result, last.AllocationID
	}
	if info.Result.Stdout != sj.result.Stdout {
		m.t.Fatalf("job %s result changed from %s to %s", info.ID, sj.result.Stdout, info.Result.Stdout)
	}
}

// settle delivers everything, finishes every run and lets every timer fire,
// until nothing is left to happen.
func (m *market) settle() {
	for round := 0; round < 100; round++ {
		for len(m.queue) > 0 {
			msg := m.queue[0]
			m.queue = m.queue[1:]
			msg.deliver(m.now)
			m.check()
		}
		for _, r := range m.running() {
			m.runEnded(r.n, r.id, types.AllocCompleted, "", m.now)
		}
		m.advance(6 * time.Second)
		m.check()
		if len(m.queue) == 0 && len(m.running()) == 0 && !slices.ContainsFunc(m.jobs, func(sj *simJob) bool { return !sj.job.Done() }) {
			break
		}
	}
	for _, sj := range m.jobs {
		if !sj.job.Done() {
			m.t.Fatalf("job %s still %s after everything settled", sj.job.info.ID, sj.job.info.State)
		}
	}
	for _, n := range m.nodes {
		if used, live := n.m.Ledger().Used(m.now), n.m.Live(); used != (types.Resources{}) || len(live) > 0 {
			m.t.Fatalf("node %s still uses %s for %d allocations after every job ended", n.peer, used, len(live))
		}
	}
}

func TestManyJobsOnManyNodesNeverOversubscribeNorDoublePlace(t *testing.T) {
	outcomes := map[string]int{} // how the simulated jobs ended, to show the runs reach every outcome
	rapid.Check(t, func(t *rapid.T) {
		m := &market{t: t, now: t0}
		for i := range rapid.IntRange(1, 6).Draw(t, "nodes") {
			reg := types.Resources{
				CPU:    types.MilliCPU(rapid.IntRange(1, 8).Draw(t, "cpu") * 500),
				Memory: types.Bytes(rapid.IntRange(1, 4).Draw(t, "mem")) << 30,
			}
			m.nodes = append(m.nodes, newSimNode(t, fmt.Sprint("n", i), reg, m.now))
		}
		for i := range rapid.IntRange(1, 12).Draw(t, "jobs") {
			spec := JobSpec{
				ID: types.JobID(fmt.Sprint("j", i)), Name: "sim",
				Task: types.Task{Executor: "wasm", Module: "bafymodule", Resources: types.Resources{
					CPU:    types.MilliCPU(rapid.IntRange(1, 4).Draw(t, "job cpu") * 500),
					Memory: types.Bytes(rapid.IntRange(1, 2).Draw(t, "job mem")) << 30,
				}},
				Retries:      rapid.IntRange(0, 3).Draw(t, "retries"),
				BidWindow:    time.Duration(rapid.IntRange(1, 5).Draw(t, "window")) * 100 * ms,
				EnoughBids:   rapid.IntRange(1, 3).Draw(t, "enough"),
				QueueTimeout: time.Duration(rapid.IntRange(0, 10).Draw(t, "queue")) * time.Second,
				Deadline:     time.Duration(rapid.IntRange(0, 30).Draw(t, "deadline")) * time.Second,
			}
			j, err := NewJob(spec, JobConfig{Requester: "requester", ConfirmTimeout: 200 * ms}, m.now)
			if err != nil {
				t.Fatal(err)
			}
			sj := &simJob{job: j, invoked: map[types.AllocationID]string{}, letGo: map[types.AllocationID]bool{}}
			m.jobs = append(m.jobs, sj)
			j.Start(m.now)
			m.drain(sj)
		}
		for range rapid.IntRange(200, 800).Draw(t, "steps") {
			m.step(t)
			m.check()
		}
		m.settle()
		for _, sj := range m.jobs {
			outcomes[string(sj.job.info.State)]++
			if len(sj.job.info.Attempts) > 1 {
				outcomes["retried"]++
			}
			for _, a := range sj.job.info.Attempts {
				outcomes["notes"] += len(a.Notes)
			}
		}
	})
	t.Logf("simulated jobs: %v", outcomes)
}

// The simulation must reach the interesting states, not only shuffle bids:
// over a reliable network, 20 jobs on 3 nodes with room for 2 each all
// complete, 6 at a time.
func TestMarketSimulationPlacesJobs(t *testing.T) {
	m := &market{t: t, now: t0}
	for i := range 3 {
		m.nodes = append(m.nodes, newSimNode(t, fmt.Sprint("n", i), types.Resources{CPU: 2000, Memory: 4 << 30}, m.now))
	}
	for i := range 20 {
		spec := testSpec()
		spec.ID, spec.QueueTimeout = types.JobID(fmt.Sprint("j", i)), time.Minute
		j, err := NewJob(spec, JobConfig{Requester: "requester", ConfirmTimeout: 200 * ms}, m.now)
		if err != nil {
			t.Fatal(err)
		}
		sj := &simJob{job: j, invoked: map[types.AllocationID]string{}, letGo: map[types.AllocationID]bool{}}
		m.jobs = append(m.jobs, sj)
		j.Start(m.now)
		m.drain(sj)
	}
	peak := 0
	for round := 0; round < 200 && slices.ContainsFunc(m.jobs, func(sj *simJob) bool { return !sj.job.Done() }); round++ {
		for len(m.queue) > 0 {
			msg := m.queue[0]
			m.queue = m.queue[1:]
			msg.deliver(m.now)
		}
		m.check()
		peak = max(peak, len(m.running()))
		for _, r := range m.running() {
			m.runEnded(r.n, r.id, types.AllocCompleted, "", m.now)
		}
		m.advance(200 * ms)
	}
	completed := 0
	for _, sj := range m.jobs {
		if sj.job.info.State == types.JobCompleted {
			completed++
		}
	}
	if completed != len(m.jobs) || peak < 2 {
		t.Fatalf("%d of %d jobs completed; at most %d ran at once", completed, len(m.jobs), peak)
	}
}

package orchestrator

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
	"pgregory.net/rapid"
)

// This file runs many jobs (each its Job and Auction machines) against many
// simulated nodes (each a real node.Ledger behind a small model of the Node
// actor's protocol) over a network that delays, reorders, duplicates and
// drops every message, with random completions, node failures, false "node
// lost" alarms, cancels, stale invocations and the passing of time. After
// every step it checks:
//
//   - no node's holds, locks and running allocations exceed what it offers,
//     by the ledger's account and by the simulation's own;
//   - no job is held by two nodes: at most one allocation per job is running
//     on a node without its requester having let go of it (released it, or
//     seen it end);
//   - a job's result is the result of the allocation its final attempt
//     placed, and never changes;
//   - an invocation that names a lock past its expiry, or a stale epoch,
//     never starts (node.ErrLockExpired, node.ErrStaleEpoch, or the lock is
//     already gone);
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

type simAlloc struct {
	job     types.JobID
	lock    node.Lock
	running bool
}

// simNode models the Node actor's protocol around a real Ledger.
type simNode struct {
	peer   string
	ledger *node.Ledger
	live   map[types.AllocationID]*simAlloc
	ended  map[types.AllocationID]types.Status // final status of every allocation that ended
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
				m.send("bid request to "+n.peer, func(now time.Time) { m.bidRequest(n, sj, req, now) })
			}
			attempt := a.Attempt
			m.send("published", func(now time.Time) { sj.job.Published(attempt, len(m.nodes), now); m.drain(sj) })
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

func (m *market) bidRequest(n *simNode, sj *simJob, req types.BidRequest, now time.Time) {
	if !now.Before(req.Deadline) {
		return
	}
	if err := n.ledger.Hold(req.JobID, req.Resources, now, req.Deadline.Add(simBidHold)); err != nil {
		busy := req.Resources.Fits(n.ledger.Registered())
		d := types.Decline{JobID: req.JobID, Node: types.NodeID{PeerID: n.peer}, Reasons: []string{err.Error()}, Busy: busy}
		m.toJob(sj, "decline", func(j *Job, now time.Time) { j.Decline(d, now) })
		return
	}
	b := types.Bid{JobID: req.JobID, Node: types.NodeID{PeerID: n.peer}, Price: 1, Score: 1, HoldUntil: req.Deadline.Add(simBidHold)}
	m.toJob(sj, "bid", func(j *Job, now time.Time) { j.Bid(b, now) })
}

func (m *market) accept(n *simNode, sj *simJob, a types.Accept, now time.Time) {
	reject := func(why string) {
		r := types.Reject{JobID: a.JobID, AllocationID: a.AllocationID, Reason: why}
		m.toJob(sj, "reject", func(j *Job, now time.Time) { j.Rejected(r, now) })
	}
	if al, ok := n.live[a.AllocationID]; ok {
		if al.running {
			reject("allocation ID already in use")
			return
		}
		c := types.Confirm{JobID: a.JobID, AllocationID: a.AllocationID, Epoch: al.lock.Epoch, LockExpiry: al.lock.Expiry}
		m.toJob(sj, "confirm again", func(j *Job, now time.Time) { j.Confirmed(c, now) })
		return
	}
	if _, over := n.ended[a.AllocationID]; over {
		reject("allocation ID already in use")
		return
	}
	lk, err := n.ledger.Lock(a.AllocationID, a.JobID, "requester", a.Resources, now, simLockTTL)
	if err != nil {
		reject(err.Error())
		return
	}
	n.live[a.AllocationID] = &simAlloc{job: a.JobID, lock: lk}
	c := types.Confirm{JobID: a.JobID, AllocationID: a.AllocationID, Epoch: lk.Epoch, LockExpiry: lk.Expiry}
	m.toJob(sj, "confirm", func(j *Job, now time.Time) { j.Confirmed(c, now) })
}

func (m *market) invoke(n *simNode, sj *simJob, inv types.Invocation, now time.Time) {
	al, ok := n.live[inv.AllocationID]
	if ok && al.running && al.lock.Epoch == inv.Epoch {
		m.status(sj, types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: types.AllocRunning})
		return
	}
	expired := ok && !now.Before(al.lock.Expiry)
	_, err := n.ledger.Start(inv.AllocationID, inv.Epoch, now)
	switch {
	case err == nil && expired:
		m.t.Fatalf("%s started at %s, after its lock expired at %s", inv.AllocationID, now, al.lock.Expiry)
	case err == nil:
		al.running = true
		m.status(sj, types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: types.AllocRunning})
		return
	case expired && !errors.Is(err, node.ErrLockExpired):
		m.t.Fatalf("starting %s after its expiry: %v, want ErrLockExpired", inv.AllocationID, err)
	}
	if ok && errors.Is(err, node.ErrLockExpired) {
		m.end(n, sj, al, types.AllocFailed, err.Error())
		return
	}
	m.status(sj, types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: types.AllocFailed, Reason: err.Error()})
}

func (m *market) cancel(n *simNode, sj *simJob, c types.Cancel, now time.Time) {
	if c.AllocationID == "" {
		n.ledger.DropHold(c.JobID)
		return
	}
	if al, ok := n.live[c.AllocationID]; ok {
		m.end(n, sj, al, types.AllocCancelled, c.Reason)
		return
	}
	if st, ok := n.ended[c.AllocationID]; ok && (st.State == types.AllocCompleted || st.State == types.AllocFailed) {
		m.status(sj, st) // the shell feeds a late outcome from the reply back to the job
	}
}

// end finishes a live allocation: its capability is released and, if it
// ran, its requester hears the outcome on the stream.
func (m *market) end(n *simNode, sj *simJob, al *simAlloc, state types.AllocationState, why string) {
	id := al.lock.AllocationID
	st := types.Status{JobID: al.job, AllocationID: id, State: state, Reason: why}
	if state == types.AllocCompleted {
		st.Result = &types.Result{Stdout: "out-of-" + string(id)}
	}
	n.ledger.Release(id)
	delete(n.live, id)
	n.ended[id] = st
	if al.running {
		m.status(sj, st)
	}
}

func (m *market) jobOf(id types.JobID) *simJob {
	return m.jobs[slices.IndexFunc(m.jobs, func(sj *simJob) bool { return sj.job.info.ID == id })]
}

// running lists (node, allocation) pairs of running allocations, in order.
func (m *market) running() [][2]any {
	var out [][2]any
	for _, n := range m.nodes {
		for _, id := range slices.Sorted(maps.Keys(n.live)) {
			if n.live[id].running {
				out = append(out, [2]any{n, n.live[id]})
			}
		}
	}
	return out
}

func (m *market) advance(dt time.Duration) {
	m.now = m.now.Add(dt)
	for _, n := range m.nodes {
		for _, lk := range n.ledger.Expire(m.now) {
			if al := n.live[lk.AllocationID]; al != nil {
				m.end(n, m.jobOf(al.job), al, types.AllocFailed, "lock expired")
			}
		}
	}
	for _, sj := range m.jobs {
		sj.job.Tick(m.now)
		m.drain(sj)
		m.lease(sj)
	}
}

// lease plays the shell's lease: a running allocation heartbeats, so its
// stream is heard from; a stream silent for a lease (the invocation or the
// final status was lost) is a lost node.
func (m *market) lease(sj *simJob) {
	alloc := sj.job.alloc
	if alloc == "" {
		return
	}
	if n := m.nodeOf(sj.invoked[alloc]); n.live[alloc] != nil && n.live[alloc].running {
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
			p := rapid.SampledFrom(r).Draw(t, "run")
			n, al := p[0].(*simNode), p[1].(*simAlloc)
			state := types.AllocCompleted
			if rapid.IntRange(0, 3).Draw(t, "fails") == 0 {
				state = types.AllocFailed
			}
			m.end(n, m.jobOf(al.job), al, state, "")
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
	default: // a replayed or forged invocation: a stale epoch never starts
		n := rapid.SampledFrom(m.nodes).Draw(t, "node")
		ids := slices.Sorted(maps.Keys(n.live))
		if len(ids) == 0 {
			return
		}
		al := n.live[rapid.SampledFrom(ids).Draw(t, "alloc")]
		bad := al.lock.Epoch + uint64(rapid.IntRange(1, 3).Draw(t, "ahead"))
		if _, err := n.ledger.Start(al.lock.AllocationID, bad, m.now); !errors.Is(err, node.ErrStaleEpoch) {
			t.Fatalf("start of %s under epoch %d (lock has %d): %v", al.lock.AllocationID, bad, al.lock.Epoch, err)
		}
	}
}

func (m *market) check() {
	for _, n := range m.nodes {
		reg := n.ledger.Registered()
		if used := n.ledger.Used(m.now); !used.Fits(reg) {
			m.t.Fatalf("node %s: ledger uses %s of %s", n.peer, used, reg)
		}
		var sum types.Resources
		for _, al := range n.live {
			if al.running || m.now.Before(al.lock.Expiry) {
				sum = sum.Add(al.lock.Resources)
			}
		}
		if !sum.Fits(reg) {
			m.t.Fatalf("node %s: locked and running allocations hold %s of %s", n.peer, sum, reg)
		}
	}
	held := map[types.JobID][]types.AllocationID{}
	for _, n := range m.nodes {
		for id, al := range n.live {
			if al.running && !m.jobOf(al.job).letGo[id] {
				held[al.job] = append(held[al.job], id)
			}
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
		for _, p := range m.running() {
			n, al := p[0].(*simNode), p[1].(*simAlloc)
			m.end(n, m.jobOf(al.job), al, types.AllocCompleted, "")
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
		if used := n.ledger.Used(m.now); used != (types.Resources{}) || len(n.live) > 0 {
			m.t.Fatalf("node %s still uses %s for %d allocations after every job ended", n.peer, used, len(n.live))
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
			m.nodes = append(m.nodes, &simNode{
				peer: fmt.Sprint("n", i), ledger: node.NewLedger(reg),
				live: map[types.AllocationID]*simAlloc{}, ended: map[types.AllocationID]types.Status{},
			})
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
		m.nodes = append(m.nodes, &simNode{peer: fmt.Sprint("n", i), ledger: node.NewLedger(types.Resources{CPU: 2000, Memory: 4 << 30}),
			live: map[types.AllocationID]*simAlloc{}, ended: map[types.AllocationID]types.Status{}})
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
		for _, p := range m.running() {
			m.end(p[0].(*simNode), m.jobOf(p[1].(*simAlloc).job), p[1].(*simAlloc), types.AllocCompleted, "")
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

package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/opendms/dms/types"
)

// The actor's closed message set. Network goroutines send these; only the
// actor touches the state they act on.
type (
	bidRequestMsg struct {
		from string
		req  *types.BidRequest
	}
	acceptMsg struct {
		from   string
		accept *types.Accept
	}
	invokeMsg struct {
		from string
		inv  *types.Invocation
		sink chan *types.Status
	}
	cancelMsg struct {
		from   string
		cancel *types.Cancel
	}
	statusMsg struct {
		from  string
		query *types.StatusQuery
	}
	infoMsg   struct{}
	recordMsg struct{ rec types.CapabilityRecord }
	tickMsg   struct{}
	// dropHoldMsg releases a bid's soft reservation when the bid could not be delivered.
	dropHoldMsg struct{ job types.JobID }
	// allocDoneMsg is a finished allocation run's terminal status.
	allocDoneMsg struct{ status types.Status }
	okReply      struct{}
	// request carries a message that wants an answer (acceptMsg, invokeMsg,
	// cancelMsg, statusMsg, infoMsg, recordMsg): the actor sends it on reply,
	// which has room for it, so an asker that gave up never blocks the actor.
	// A channel, not a protoactor future: see allocRun.
	request struct {
		body  any
		reply chan any
	}
)

// sinkSize holds every status an allocation emits (running, then one
// terminal), so the actor never blocks on a slow stream.
const sinkSize = 4

// allocation is a live (locked or running) allocation.
type allocation struct {
	rec    allocRecord
	cancel context.CancelCauseFunc // set while running: stops its run
	sinks  []chan *types.Status
}

// nodeActor owns the ledger and the live allocations.
type nodeActor struct {
	n      *Node
	store  Store
	blobs  Blobs
	log    *slog.Logger
	record types.CapabilityRecord
	ledger *Ledger
	checks []Check
	live   map[types.AllocationID]*allocation
	holds  map[types.JobID]holdOwner // who each bid's soft reservation is for
}

// holdOwner is the requester a bid's soft reservation was made for; only it
// may withdraw the reservation.
type holdOwner struct {
	requester string
	until     time.Time
}

func (a *nodeActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case request:
		m.reply <- a.answer(m.body)
	case bidRequestMsg:
		a.onBidRequest(m)
	case allocDoneMsg:
		a.finish(m.status)
	case dropHoldMsg:
		a.dropHold(m.job)
	case tickMsg:
		a.expire()
	}
}

// answer handles the body of a request and returns the answer: a
// types.Message, okReply or an error.
func (a *nodeActor) answer(body any) any {
	switch m := body.(type) {
	case acceptMsg:
		return a.onAccept(m)
	case invokeMsg:
		return a.onInvoke(m)
	case cancelMsg:
		return a.onCancel(m)
	case statusMsg:
		return a.onStatus(m)
	case infoMsg:
		return a.info()
	case recordMsg:
		a.record = m.rec
		a.ledger.SetRegistered(m.rec.Offered)
		return okReply{}
	}
	return fmt.Errorf("node: %T is not a request", body)
}

func (a *nodeActor) now() time.Time { return a.n.cfg.Clock() }

func (a *nodeActor) snapshot(now time.Time) *Snapshot {
	return &Snapshot{
		Admission: a.n.cfg.Admission, Network: a.n.cfg.Network,
		Executors: a.offered(), Labels: a.record.Labels, Energy: a.record.Energy, Price: a.record.Price,
		Registered: a.ledger.Registered(), Available: a.ledger.Available(now),
	}
}

// offered returns the executors the node runs and its record offers now.
func (a *nodeActor) offered() map[string]bool {
	ex := make(map[string]bool, len(a.record.Executors))
	for _, name := range a.record.Executors {
		if _, ok := a.n.cfg.Executors[name]; ok {
			ex[name] = true
		}
	}
	return ex
}

func (a *nodeActor) onBidRequest(m bidRequestMsg) {
	req, now := m.req, a.now()
	if !now.Before(req.Deadline) {
		return // the window closed while the request travelled
	}
	snap := a.snapshot(now)
	reasons := Decide(a.checks, req, snap)
	until := req.Deadline.Add(a.n.cfg.BidHold)
	if len(reasons) == 0 {
		if err := a.ledger.Hold(req.JobID, req.Resources, now, until); err != nil {
			reasons = []string{err.Error()}
		}
	}
	var msg types.Message
	if len(reasons) == 0 {
		a.holds[req.JobID] = holdOwner{requester: req.Requester, until: until}
		msg = a.bid(req, now)
	} else {
		msg = &types.Decline{JobID: req.JobID, Node: a.n.cfg.ID, Reasons: reasons, Busy: a.busyOnly(req, snap)}
	}
	a.n.goDo(func(ctx context.Context) { a.n.sendBid(ctx, req, msg) })
}

// busyOnly reports whether the node would bid on req if nothing it offers
// were in use: the decline is only for now.
func (a *nodeActor) busyOnly(req *types.BidRequest, snap *Snapshot) bool {
	idle := *snap
	idle.Available = idle.Registered
	return len(Decide(a.checks, req, &idle)) == 0
}

func (a *nodeActor) bid(req *types.BidRequest, now time.Time) *types.Bid {
	load := 0.0
	if reg := a.ledger.Registered(); reg.CPU > 0 {
		load = float64(a.ledger.Used(now).CPU) / float64(reg.CPU)
	}
	return &types.Bid{
		JobID: req.JobID, Node: a.n.cfg.ID, Price: a.record.Price,
		Score: a.record.Benchmark.Score(), Load: load,
		HoldUntil: req.Deadline.Add(a.n.cfg.BidHold),
	}
}

func (a *nodeActor) onAccept(m acceptMsg) any {
	acc, now := m.accept, a.now()
	reject := func(reason string) *types.Reject {
		return &types.Reject{JobID: acc.JobID, AllocationID: acc.AllocationID, Reason: reason}
	}
	if r := a.n.cfg.Admission.refusal(m.from); r != "" {
		return reject(r) // anyone can send an Accept, bid or not
	}
	if al, ok := a.live[acc.AllocationID]; ok {
		if al.rec.Requester == m.from && al.rec.State == types.AllocLocked {
			return al.rec.confirm() // a retried accept gets the same answer
		}
		return reject("allocation ID already in use")
	}
	lock, err := a.ledger.Lock(acc.AllocationID, acc.JobID, m.from, acc.Resources, now, a.n.cfg.LockTTL)
	if err != nil {
		return reject(err.Error())
	}
	rec := newAllocRecord(lock, now)
	// The epoch and the lock are durable before the Confirm leaves: a
	// restarted node never forgets a lock it confirmed, and never issues an
	// epoch twice, as it takes the highest of its records (never deleted).
	if err := a.persist(rec); err != nil {
		a.ledger.Release(acc.AllocationID)
		return reject(err.Error())
	}
	a.live[acc.AllocationID] = &allocation{rec: rec}
	return rec.confirm()
}

func (a *nodeActor) onInvoke(m invokeMsg) any {
	inv, now := m.inv, a.now()
	if err := a.n.cfg.Admission.check(m.from); err != nil {
		return err // a lock restored from before the allowlist changed is not enough
	}
	al, err := a.own(m.from, inv.AllocationID)
	if err != nil {
		if rec, ok := a.stored(inv.AllocationID); ok && rec.Requester == m.from && rec.Epoch == inv.Epoch && rec.State.Terminal() {
			// It ended while its requester was away (a restart): the
			// requester learns how, result included.
			m.sink <- rec.status()
			close(m.sink)
			return okReply{}
		}
		return err
	}
	if al.rec.State == types.AllocRunning && al.rec.Epoch == inv.Epoch {
		al.sinks = append(al.sinks, m.sink) // the requester re-attaches
		m.sink <- al.rec.status()
		return okReply{}
	}
	exec, ok := a.n.cfg.Executors[inv.Task.Executor]
	if !ok || !a.offered()[inv.Task.Executor] {
		return fmt.Errorf("%w: %q", ErrNoExecutor, inv.Task.Executor)
	}
	if inv.Task.Network && !a.n.cfg.Network {
		return fmt.Errorf("%w: the task asks for one", ErrNoNetwork)
	}
	if !inv.Task.Resources.Fits(al.rec.Resources) {
		return fmt.Errorf("%w: task asks for %s, lock holds %s", ErrInsufficientCapability, inv.Task.Resources, al.rec.Resources)
	}
	if _, err := a.ledger.Start(inv.AllocationID, inv.Epoch, now); err != nil {
		if errors.Is(err, ErrLockExpired) {
			a.end(al, types.AllocFailed, "lock expired before the invocation arrived", nil)
		}
		return err
	}
	al.rec.start(inv, now)
	a.persistLogged(al.rec)
	al.sinks = append(al.sinks, m.sink)
	al.cancel = (&allocRun{n: a.n, rec: al.rec, exec: exec, blobs: a.blobs}).start()
	a.broadcast(al, al.rec.status(), false)
	return okReply{}
}

// own returns a live allocation that belongs to requester from.
func (a *nodeActor) own(from string, id types.AllocationID) (*allocation, error) {
	al, ok := a.live[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownAllocation, id)
	}
	if al.rec.Requester != from {
		return nil, fmt.Errorf("%w: %s belongs to another requester", ErrNotYours, id)
	}
	return al, nil
}

func (a *nodeActor) onCancel(m cancelMsg) any {
	if m.cancel.AllocationID == "" {
		// The requester placed the job elsewhere: withdraw our bid's hold.
		if h, ok := a.holds[m.cancel.JobID]; ok && h.requester == m.from {
			a.dropHold(m.cancel.JobID)
		}
		return okReply{}
	}
	al, err := a.own(m.from, m.cancel.AllocationID)
	if err != nil {
		if rec, ok := a.stored(m.cancel.AllocationID); ok && rec.Requester == m.from {
			return rec.status() // already over: cancelling is a no-op
		}
		return err
	}
	if al.cancel != nil {
		al.cancel(errCancelled{reason: m.cancel.Reason}) // the run ends, and finish records it
		return al.rec.status()
	}
	a.end(al, types.AllocCancelled, "cancelled by requester: "+m.cancel.Reason, nil)
	return al.rec.status()
}

func (a *nodeActor) onStatus(m statusMsg) any {
	if al, err := a.own(m.from, m.query.AllocationID); err == nil {
		return al.rec.status()
	}
	if rec, ok := a.stored(m.query.AllocationID); ok && rec.Requester == m.from {
		return rec.status()
	}
	return fmt.Errorf("%w: %s", ErrUnknownAllocation, m.query.AllocationID)
}

// finish records the terminal status of an allocation run.
func (a *nodeActor) finish(st types.Status) {
	al, ok := a.live[st.AllocationID]
	if !ok {
		return
	}
	a.end(al, st.State, st.Reason, st.Result)
}

// end moves a live allocation to a terminal state: the record is persisted,
// the capability released, every watcher told.
func (a *nodeActor) end(al *allocation, state types.AllocationState, reason string, res *types.Result) {
	al.rec.end(state, reason, res, a.now())
	a.persistLogged(al.rec)
	a.ledger.Release(al.rec.AllocationID)
	delete(a.live, al.rec.AllocationID)
	a.broadcast(al, al.rec.status(), true)
}

// broadcast sends st to every watcher without blocking; a watcher that
// fell behind by sinkSize statuses is dropped (it can query the status).
func (a *nodeActor) broadcast(al *allocation, st *types.Status, last bool) {
	kept := al.sinks[:0]
	for _, s := range al.sinks {
		select {
		case s <- st:
			kept = append(kept, s)
		default:
			close(s)
			continue
		}
		if last {
			close(s)
		}
	}
	al.sinks = kept
	if last {
		al.sinks = nil
	}
}

func (a *nodeActor) dropHold(job types.JobID) {
	a.ledger.DropHold(job)
	delete(a.holds, job)
}

func (a *nodeActor) expire() {
	now := a.now()
	for job, h := range a.holds {
		if !now.Before(h.until) {
			delete(a.holds, job)
		}
	}
	for _, l := range a.ledger.Expire(now) {
		if al, ok := a.live[l.AllocationID]; ok {
			a.end(al, types.AllocFailed, "lock expired: no invocation within "+a.n.cfg.LockTTL.String(), nil)
		}
	}
}

func (a *nodeActor) info() Info {
	now := a.now()
	in := Info{Record: a.record, Registered: a.ledger.Registered(), Available: a.ledger.Available(now)}
	for _, al := range a.live {
		if al.rec.State == types.AllocRunning {
			in.Running++
		} else {
			in.Locked++
		}
	}
	return in
}

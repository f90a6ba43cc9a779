package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/opendms/dms/types"
)

// MachineConfig is what the provider's Machine takes from its node.
type MachineConfig struct {
	ID     types.NodeID
	Record types.CapabilityRecord // what the node offers: Offered, Price, Labels, Energy, Executors
	// Executors names the executors the node has. It offers those its
	// record lists too: an executor whose engine stops answering is
	// dropped from the record, not from here.
	Executors []string
	Network   bool // tasks that ask for a network may have one
	Admission Admission
	LockTTL   time.Duration // a confirmed lock waits this long for its invocation
	BidHold   time.Duration // a bid's hold outlives the bid window by this much
	Holds     HoldPolicy    // how holds are shared among requesters; zero fields: defaults
	// NewID names the allocation a bid for job would become; nil: the
	// job's ID and 64 random bits (crypto/rand). IDs must not repeat.
	NewID func(job types.JobID) types.AllocationID
}

// randomID is the default MachineConfig.NewID.
func randomID(job types.JobID) types.AllocationID {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return types.AllocationID(fmt.Sprintf("%s-%x", job, b))
}

func (c *MachineConfig) validate() error {
	switch {
	case c.ID.PeerID == "":
		return errors.New("node: machine config: no PeerID")
	case c.LockTTL <= 0 || c.BidHold <= 0:
		return fmt.Errorf("node: machine config: lock TTL %s and bid hold %s must be positive", c.LockTTL, c.BidHold)
	}
	if err := c.Holds.Validate(); err != nil {
		return fmt.Errorf("node: machine config: hold policy: %w", err)
	}
	if c.NewID == nil {
		c.NewID = randomID
	}
	return nil
}

// Machine is the provider's side of the protocol as a pure state machine,
// in the manner of etcd's raft and the orchestrator's Auction and Job: it
// owns the ledger (with the bids' holds), the live (locked or running)
// allocations and a bounded memory of bids and locks that ended unused,
// and changes them only on events, its methods, each given the time. It
// does no I/O, starts no goroutine and reads no clock.
//
// An event's consequences come out in two parts, in the order they must
// happen: Ready returns the allocation records the event changed, which the
// shell writes to its database; Advance, told how that write went, returns
// the Effects (messages to send and replies, runs to start and stop). There
// is no other way to get the effects, so nothing the node promises (a
// Confirm above all: the commit point of an auction) leaves before the
// record that backs it is durable, and when the write fails the promise is
// withdrawn: the lock is undone and the accept is rejected, saying why.
//
// The shell calls Ready and Advance after each event (several events may
// share one Ready and Advance: their effects come out in order). It is not
// safe for concurrent use.
type Machine struct {
	cfg       MachineConfig
	history   History
	record    types.CapabilityRecord
	executors map[string]bool // offered now: configured and in the record
	checks    []Check
	ledger    *Ledger
	live      map[types.AllocationID]*liveAlloc
	gone      gone          // bids evicted and locks ended unused, lately
	waiting   []lateRequest // bid requests declined as busy, oldest first (latebind.go)
	host      string        // why the host is not idle (SetHost); "" when it is

	// The step in progress: records to write, locks to undo if they cannot
	// be, and the effects Advance hands out.
	records []Allocation
	accepts []pendingAccept
	effects []Effect
}

// liveAlloc is a locked or running allocation and the invocation streams
// that follow it.
type liveAlloc struct {
	rec      Allocation
	watchers []Ticket
}

// pendingAccept is a lock taken in this step, confirmed once its record is
// durable.
type pendingAccept struct {
	ticket Ticket
	hold   Hold // the lock's hold, back if the record is not written
}

// NewMachine rebuilds a provider from the records of its allocations, as
// after a start or a crash: unexpired locks are held again; an allocation
// that was locked or running when the node stopped is recorded as failed,
// the node's fault (its process is gone), in the first Ready (a lock that
// never started is to be deleted, see Allocation.Discard, as is any record
// of one an earlier version kept). epoch is the
// highest lock epoch stored apart from the records (0 if none): no epoch
// at or below it, or below any record's, is issued again. history is where
// the records of allocations no longer live are read.
func NewMachine(cfg MachineConfig, history History, stored []Allocation, epoch uint64, now time.Time) (*Machine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Machine{
		cfg: cfg, history: history, checks: DefaultChecks(), ledger: NewLedger(cfg.Record.Offered),
		live: map[types.AllocationID]*liveAlloc{}, gone: newGone(goneSize),
	}
	m.ledger.SetPolicy(cfg.Holds)
	m.SetRecord(cfg.Record)
	var locks []Lock
	for _, r := range stored {
		epoch = max(epoch, r.Epoch)
		switch {
		case r.Discard():
			m.records = append(m.records, r) // left by an earlier version: delete it now
		case r.State == types.AllocLocked && now.Before(r.LockExpiry):
			locks = append(locks, r.lock())
			m.live[r.AllocationID] = &liveAlloc{rec: r}
		case !r.State.Terminal():
			why := types.Status{State: types.AllocFailed, Fault: types.FaultNode, Reason: "node restarted while the allocation was " + string(r.State)}
			if err := r.end(why, now); err != nil {
				return nil, fmt.Errorf("node: restoring allocation %s: %w", r.AllocationID, err)
			}
			m.records = append(m.records, r)
		}
	}
	m.ledger.Restore(locks, epoch, now)
	return m, nil
}

// Ready returns the records changed since the last Advance, and those a
// failed write left unwritten: the shell must
// make them durable (delete, with an audit entry, those whose Discard
// reports true), then call Advance with the outcome.
func (m *Machine) Ready() []Allocation { return m.records }

// Advance takes the outcome of writing Ready's records and returns what
// the shell must do now, in order. If the write failed, the locks taken in
// the step are undone and their accepts rejected; what already happened (a
// run started or ended, a lock released) stands, and its records stay in
// Ready, written again with the next step's: a lock the node released must
// not come back at a restart beside the lock that took its room.
func (m *Machine) Advance(saved error) []Effect {
	var kept []Allocation
	if saved != nil {
		kept = m.records
	}
	for _, p := range m.accepts {
		id := p.hold.Allocation
		l := m.live[id]
		if saved == nil && l != nil {
			m.reply(p.ticket, l.rec.confirm(), nil)
			continue
		}
		if l != nil && l.rec.State == types.AllocLocked {
			m.ledger.Undo(p.hold) // the requester may accept again
			delete(m.live, id)
			kept = slices.DeleteFunc(kept, func(r Allocation) bool { return r.AllocationID == id })
		}
		reason := "the lock could not be kept"
		if saved != nil {
			reason = fmt.Sprintf("%v: %v", ErrNotRecorded, saved)
		}
		m.reply(p.ticket, &types.Reject{JobID: p.hold.JobID, AllocationID: id, Reason: reason}, nil)
	}
	out := m.effects
	m.records, m.accepts, m.effects = kept, m.accepts[:0], nil
	return out
}

// SetRecord replaces what the node offers (share, price, labels, energy,
// executors). Existing locks and allocations keep what they hold.
func (m *Machine) SetRecord(rec types.CapabilityRecord) {
	m.record = rec
	m.ledger.SetRegistered(rec.Offered)
	m.executors = make(map[string]bool, len(rec.Executors))
	for _, name := range rec.Executors {
		if slices.Contains(m.cfg.Executors, name) {
			m.executors[name] = true
		}
	}
}

// BidRequest decides on a bid request through the check pipeline: a Bid,
// naming a fresh allocation ID and backed by a hold until shortly after
// the bid window, or a Decline that says why. The requester's earlier hold
// for the same job, if any, is replaced; other requesters' holds are
// evicted only as the ledger's HoldPolicy allows. A request whose window
// closed on the way is ignored.
func (m *Machine) BidRequest(req *types.BidRequest, now time.Time) {
	if !now.Before(req.Deadline) {
		return
	}
	h, reasons := m.hold(req, req.Deadline.Add(m.cfg.BidHold), now)
	send := Send{To: req.Requester, Addrs: req.ReplyAddrs, Deadline: req.Deadline, Request: req}
	if len(reasons) == 0 {
		m.forget(req.Requester, req.JobID)
		send.Msg = m.bid(req, h, now)
	} else {
		d := &types.Decline{JobID: req.JobID, Node: m.cfg.ID, Reasons: reasons, Busy: m.busyOnly(req, m.snapshot(now))}
		if d.Busy {
			m.remember(req, now)
		} else {
			m.forget(req.Requester, req.JobID)
		}
		send.Msg = d
	}
	m.emit(send)
}

// hold decides on req through the check pipeline and, if it passes, holds
// what it asks until until, under a fresh allocation ID; else it says
// why not. The ledger's Hold, not the pipeline, judges whether there is
// room now: it may evict holds beyond their requester's share.
func (m *Machine) hold(req *types.BidRequest, until, now time.Time) (Hold, []string) {
	static := m.snapshot(now)
	static.Available = static.Registered
	h := Hold{JobID: req.JobID, Requester: req.Requester, Resources: req.Resources, Price: m.record.Price, Until: until}
	if reasons := Decide(m.checks, req, &static); len(reasons) > 0 {
		return h, reasons
	}
	h.Allocation = m.cfg.NewID(req.JobID)
	evicted, err := m.ledger.Hold(h, now)
	if err != nil {
		return h, []string{err.Error()}
	}
	for _, e := range evicted {
		m.gone.addEvicted(e.Allocation, e.Requester, fmt.Sprintf("the bid's hold was given up at %s for a requester within its share: "+
			"yours were over your share of this node", now.Format(time.RFC3339Nano)))
	}
	return h, nil
}

func (m *Machine) snapshot(now time.Time) Snapshot {
	return Snapshot{
		Admission: m.cfg.Admission, Network: m.cfg.Network,
		Executors: m.executors, Labels: m.record.Labels, Energy: m.record.Energy, Price: m.record.Price, Host: m.host,
		Registered: m.ledger.Registered(), Available: m.ledger.Available(now),
	}
}

// Short says what the node lacks, now, to bid on req when that is all it
// lacks (it would bid were nothing in use): its need beyond what is
// available; zero otherwise, and while the host is not idle. The shell may
// free that much (idle warm instances) so the requester, asking again,
// finds room.
func (m *Machine) Short(req *types.BidRequest, now time.Time) types.Resources {
	snap := m.snapshot(now)
	if req.Resources.Fits(snap.Available) || m.host != "" || !m.busyOnly(req, snap) {
		return types.Resources{}
	}
	return req.Resources
}

// busyOnly reports whether the node would bid on req if nothing it offers
// were in use and its host were idle: the decline is only for now.
func (m *Machine) busyOnly(req *types.BidRequest, snap Snapshot) bool {
	snap.Available, snap.Host = snap.Registered, ""
	return len(Decide(m.checks, req, &snap)) == 0
}

func (m *Machine) bid(req *types.BidRequest, h Hold, now time.Time) *types.Bid {
	load := 0.0
	if reg := m.ledger.Registered(); reg.CPU > 0 {
		load = float64(m.ledger.Used(now).CPU) / float64(reg.CPU)
	}
	return &types.Bid{
		JobID: req.JobID, Allocation: h.Allocation, Node: m.cfg.ID, Price: h.Price,
		Score: m.record.Benchmark.Score(), Load: load, HoldUntil: h.Until,
	}
}

// BidUndelivered drops the hold behind a bid, naming alloc, that never
// reached its requester.
func (m *Machine) BidUndelivered(alloc types.AllocationID) { m.ledger.DropHold(alloc) }

// Accept locks capability for an allocation: the commit point. It is
// honoured only for a bid of this node: the hold of acc.AllocationID must
// be from's, for acc.JobID, live at now, and of exactly acc.Resources. The
// lock re-checks the fit, is fenced by a fresh epoch and expires unless
// invoked within the lock TTL; its Confirm is the Reply once its record is
// durable. A retried accept of a live lock by its requester gets the same
// Confirm. Anything else is a Reject saying why, and changes nothing: a
// refused Accept costs the node no state. While the host is not idle
// (SetHost), every new lock is refused.
func (m *Machine) Accept(from string, acc *types.Accept, t Ticket, now time.Time) {
	reject := func(reason string) {
		m.reply(t, &types.Reject{JobID: acc.JobID, AllocationID: acc.AllocationID, Reason: reason}, nil)
	}
	if r := m.cfg.Admission.refusal(from); r != "" {
		reject(r) // anyone can send an Accept, bid or not
		return
	}
	if l, ok := m.live[acc.AllocationID]; ok && l.rec.Requester == from {
		if l.rec.JobID == acc.JobID && l.rec.State == types.AllocLocked {
			m.reply(t, l.rec.confirm(), nil)
			return
		}
		reject("allocation ID already in use")
		return
	}
	h, why, evicted := m.unbid(from, acc, now)
	if evicted {
		m.reply(t, &types.Reject{JobID: acc.JobID, AllocationID: acc.AllocationID, Reason: why, Busy: true}, nil)
		return
	}
	if why == "" {
		why = m.host
	}
	if why != "" {
		reject(why)
		return
	}
	if m.history != nil {
		if _, used := m.history.Lookup(acc.AllocationID); used {
			reject("allocation ID already in use") // by an allocation that ended: its record stays
			return
		}
	}
	lock, err := m.ledger.Lock(acc.AllocationID, now, m.cfg.LockTTL)
	if err != nil {
		reject(err.Error())
		return
	}
	m.forget(from, acc.JobID)
	rec := newAllocation(lock, now)
	m.live[acc.AllocationID] = &liveAlloc{rec: rec}
	m.persist(rec)
	m.accepts = append(m.accepts, pendingAccept{ticket: t, hold: h})
}

// unbid returns the hold of the bid acc accepts, or says why acc is not
// the acceptance of a bid this node made to from, and whether that is
// because its hold was evicted (fair share). The reason reveals nothing
// of other requesters' bids.
func (m *Machine) unbid(from string, acc *types.Accept, now time.Time) (Hold, string, bool) {
	h, ok := m.ledger.HoldOf(acc.AllocationID)
	switch {
	case !ok || h.Requester != from:
		if g, ok := m.gone.get(acc.AllocationID); ok && g.requester == from && g.status == nil {
			return Hold{}, g.reason, true
		}
		return Hold{}, fmt.Sprintf("no bid of this node for allocation %s to you", acc.AllocationID), false
	case h.JobID != acc.JobID:
		return Hold{}, fmt.Sprintf("the bid for allocation %s was for job %s, not %s", acc.AllocationID, h.JobID, acc.JobID), false
	case !h.live(now):
		return Hold{}, fmt.Sprintf("the bid's hold expired at %s", h.Until.Format(time.RFC3339Nano)), false
	case acc.Resources != h.Resources:
		return Hold{}, fmt.Sprintf("resources differ from the bid: the accept asks for %s, the bid held %s", acc.Resources, h.Resources), false
	}
	return h, "", false
}

// Invoke starts a locked allocation: the lock must be the requester's,
// under the invocation's epoch and unexpired, and the task must fit it and
// name an executor the node offers. Ticket then follows the allocation's
// statuses (Notify) until the last. Invoking a running allocation again
// with its epoch re-attaches to it; invoking one that ended, as a restarted
// requester does, gives its final status at once.
func (m *Machine) Invoke(from string, inv *types.Invocation, t Ticket, now time.Time) {
	if err := m.cfg.Admission.check(from); err != nil {
		m.reply(t, nil, err) // a lock restored from before the allowlist changed is not enough
		return
	}
	l, err := m.own(from, inv.AllocationID)
	if err != nil {
		if st, ok := m.endedUnder(from, inv.AllocationID, inv.Epoch); ok {
			m.notify(t, st, true)
			m.reply(t, nil, nil)
			return
		}
		m.reply(t, nil, err)
		return
	}
	if l.rec.State == types.AllocRunning && l.rec.Epoch == inv.Epoch {
		l.watchers = append(l.watchers, t)
		m.notify(t, l.rec.status(), false)
		m.reply(t, nil, nil)
		return
	}
	if err := m.startable(inv.Task, l); err != nil {
		m.reply(t, nil, err)
		return
	}
	if _, err := m.ledger.Start(inv.AllocationID, inv.Epoch, now); err != nil {
		if errors.Is(err, ErrLockExpired) {
			m.end(l, types.Status{State: types.AllocFailed, Fault: types.FaultNode, Reason: "lock expired before the invocation arrived"}, now)
		}
		m.reply(t, nil, err)
		return
	}
	if err := l.rec.start(inv.Task, now); err != nil { // Start checked the lock was not running
		m.reply(t, nil, err)
		return
	}
	m.persist(l.rec)
	l.watchers = append(l.watchers, t)
	m.emit(Run{Allocation: l.rec})
	m.notify(t, l.rec.status(), false)
	m.reply(t, nil, nil)
}

// startable checks a task against the node and the lock it must run under.
func (m *Machine) startable(task types.Task, l *liveAlloc) error {
	switch {
	case !m.executors[task.Executor]:
		return fmt.Errorf("%w: %q", ErrNoExecutor, task.Executor)
	case task.Network && !m.cfg.Network:
		return fmt.Errorf("%w: the task asks for one", ErrNoNetwork)
	case !task.Resources.Fits(l.rec.Resources):
		return fmt.Errorf("%w: task asks for %s, lock holds %s", ErrInsufficientCapability, task.Resources, l.rec.Resources)
	case task.Warm != nil:
		if err := task.Warm.Check(); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	return nil
}

// Cancel stops an allocation of the requester's, locked or running, and
// releases its capability; a running one is stopped and ends when its run
// does. The Reply is the allocation's status (its final one if it had
// already ended). Naming a bid not yet accepted, it drops that bid's hold;
// without an allocation ID, it drops the requester's hold for the job: the
// job went elsewhere. Either way the Reply is nil.
func (m *Machine) Cancel(from string, c *types.Cancel, t Ticket, now time.Time) {
	defer m.bindLate(now)
	if c.AllocationID == "" {
		m.forget(from, c.JobID)
		m.ledger.DropHolds(from, c.JobID)
		m.reply(t, nil, nil)
		return
	}
	if h, ok := m.ledger.HoldOf(c.AllocationID); ok && h.Requester == from {
		m.ledger.DropHold(c.AllocationID)
		m.reply(t, nil, nil)
		return
	}
	l, err := m.own(from, c.AllocationID)
	if err != nil {
		if rec, ok := m.ended(from, c.AllocationID); ok {
			m.reply(t, &rec, nil) // already over: cancelling is a no-op
			return
		}
		m.reply(t, nil, err)
		return
	}
	if l.rec.State == types.AllocRunning {
		m.emit(Stop{AllocationID: c.AllocationID, Reason: c.Reason})
	} else {
		m.end(l, types.Status{State: types.AllocCancelled, Reason: "cancelled by requester: " + c.Reason}, now)
	}
	st := l.rec.status()
	m.reply(t, &st, nil)
}

// Query answers a status query with the allocation's status, live or
// ended, for its own requester only.
func (m *Machine) Query(from string, q *types.StatusQuery, t Ticket) {
	if l, err := m.own(from, q.AllocationID); err == nil {
		st := l.rec.status()
		m.reply(t, &st, nil)
		return
	}
	if st, ok := m.ended(from, q.AllocationID); ok {
		m.reply(t, &st, nil)
		return
	}
	m.reply(t, nil, fmt.Errorf("%w: %s", ErrUnknownAllocation, q.AllocationID))
}

// Unwatch forgets an invocation stream that went away.
func (m *Machine) Unwatch(t Ticket) {
	for _, l := range m.live {
		if i := slices.Index(l.watchers, t); i >= 0 {
			l.watchers = slices.Delete(l.watchers, i, i+1)
			return
		}
	}
}

// RunEnded records how a run ended (st is terminal: completed, failed with
// its fault, or cancelled), releases the allocation's capability and tells
// its streams. A report for an allocation that is not running is ignored.
func (m *Machine) RunEnded(st types.Status, now time.Time) {
	l, ok := m.live[st.AllocationID]
	if !ok || l.rec.State != types.AllocRunning || !st.State.Terminal() {
		return
	}
	m.end(l, st, now)
	m.bindLate(now)
}

// Tick expires the holds and the unstarted locks whose time is up; an
// expired lock fails its allocation, the node's fault, and its requester
// loses its room beyond its share for a while (HoldPolicy.Penalty).
func (m *Machine) Tick(now time.Time) {
	for _, lk := range m.ledger.Expire(now) {
		if l, ok := m.live[lk.AllocationID]; ok {
			m.end(l, types.Status{State: types.AllocFailed, Fault: types.FaultNode, Reason: "lock expired: no invocation within " + m.cfg.LockTTL.String()}, now)
		}
	}
	m.bindLate(now)
}

// SetHost tells an idle-only node's machine whether its host is idle:
// busy says why not, "" when it is. While the host is not idle the node
// declines bid requests with busy as the reason (a Busy decline: only for
// now) and rejects Accepts. When the host stops being idle, every live
// allocation ends failed, the node's fault, so that its requester places
// it elsewhere: a locked one at once, a running one when its run, stopped
// (Stop with ByNode), returns.
func (m *Machine) SetHost(busy string, now time.Time) {
	was := m.host
	m.host = busy
	if busy == "" {
		m.bindLate(now) // idle again: the requests it declined meanwhile may fit
	}
	if was != "" || busy == "" {
		return
	}
	why := "stopped for the host's owner (idle_only): " + busy
	for _, id := range slices.Sorted(maps.Keys(m.live)) {
		l := m.live[id]
		if l.rec.State == types.AllocRunning {
			m.emit(Stop{AllocationID: id, Reason: why, ByNode: true})
		} else {
			m.end(l, types.Status{State: types.AllocFailed, Fault: types.FaultNode, Reason: why}, now)
		}
	}
}

// Info returns the node's record and load at now.
func (m *Machine) Info(now time.Time) Info {
	in := Info{Record: m.record, Registered: m.ledger.Registered(), Available: m.ledger.Available(now), Used: m.ledger.Used(now)}
	in.Holds, in.Held = m.ledger.Held(now)
	for _, l := range m.live {
		if l.rec.State == types.AllocRunning {
			in.Running++
			in.RunningRes = in.RunningRes.Add(l.rec.Resources)
		} else {
			in.Locked++
			in.LockedRes = in.LockedRes.Add(l.rec.Resources)
		}
	}
	return in
}

// Live returns a copy of each live (locked or running) allocation's record.
func (m *Machine) Live() []Allocation {
	out := make([]Allocation, 0, len(m.live))
	for _, l := range m.live {
		out = append(out, l.rec)
	}
	return out
}

// Ledger returns the machine's ledger, for reading: what is held, locked
// and running.
func (m *Machine) Ledger() *Ledger { return m.ledger }

// own returns a live allocation that belongs to requester from.
func (m *Machine) own(from string, id types.AllocationID) (*liveAlloc, error) {
	l, ok := m.live[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownAllocation, id)
	}
	if l.rec.Requester != from {
		return nil, fmt.Errorf("%w: %s belongs to another requester", ErrNotYours, id)
	}
	return l, nil
}

// ended returns the final status of from's allocation that is no longer
// live: from its record, or, for a lock that ended unused (its record
// deleted), from the machine's memory of it.
func (m *Machine) ended(from string, id types.AllocationID) (types.Status, bool) {
	st, _, ok := m.endedEpoch(from, id)
	return st, ok
}

// endedUnder is ended for an invocation: the allocation's epoch must be epoch.
func (m *Machine) endedUnder(from string, id types.AllocationID, epoch uint64) (types.Status, bool) {
	st, e, ok := m.endedEpoch(from, id)
	return st, ok && e == epoch
}

func (m *Machine) endedEpoch(from string, id types.AllocationID) (types.Status, uint64, bool) {
	if id == "" {
		return types.Status{}, 0, false
	}
	if g, ok := m.gone.get(id); ok && g.requester == from && g.status != nil {
		return *g.status, g.epoch, true
	}
	if m.history == nil {
		return types.Status{}, 0, false
	}
	rec, ok := m.history.Lookup(id)
	if !ok || !rec.State.Terminal() || rec.Requester != from {
		return types.Status{}, 0, false
	}
	return rec.status(), rec.Epoch, true
}

// end moves a live allocation to a terminal state: the record is written,
// the capability released, every stream told.
func (m *Machine) end(l *liveAlloc, st types.Status, now time.Time) {
	if err := l.rec.end(st, now); err != nil {
		return // a terminal allocation is never live; Transition keeps it so
	}
	m.persist(l.rec)
	m.ledger.Release(l.rec.AllocationID)
	delete(m.live, l.rec.AllocationID)
	final := l.rec.status()
	if l.rec.Discard() {
		m.gone.addEnded(l.rec, final)
	}
	for _, t := range l.watchers {
		m.notify(t, final, true)
	}
}

func (m *Machine) persist(rec Allocation) {
	for i := range m.records {
		if m.records[i].AllocationID == rec.AllocationID {
			m.records[i] = rec
			return
		}
	}
	m.records = append(m.records, rec)
}

func (m *Machine) notify(t Ticket, st types.Status, last bool) {
	m.emit(Notify{Ticket: t, Status: st, Last: last})
}

func (m *Machine) reply(t Ticket, msg types.Message, err error) {
	m.emit(Reply{Ticket: t, Msg: msg, Err: err})
}

func (m *Machine) emit(e Effect) { m.effects = append(m.effects, e) }

package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/opendms/dms/types"
)

// ErrInternal means the node failed on a request through a bug of its own
// (a panic, contained); the request had no effect the node knows of.
var ErrInternal = errors.New("node: internal error")

// The actor's messages. Only the actor touches the Machine.
type (
	// event is one event for the Machine: fn calls one of its methods. A
	// request carries its ticket and where its answer goes; an invocation
	// also where its statuses go.
	event struct {
		fn     func(m *Machine, now time.Time)
		ticket Ticket
		reply  chan<- answer     // nil: nobody waits for an answer
		stream chan types.Status // an invocation's statuses; nil otherwise
		slot   bool              // the event holds an admission slot (Node.acquire)
	}
	// answer is the Reply to a request.
	answer struct {
		msg types.Message
		err error
	}
	infoRequest   struct{ reply chan<- Info }
	recordRequest struct {
		rec   types.CapabilityRecord
		reply chan<- struct{}
	}
	// unwatch tells the actor an invocation stream went away.
	unwatch struct{ ticket Ticket }
	// runEnded is the end of an allocation's run.
	runEnded struct{ status types.Status }
	tickMsg  struct{}
	// hostSample is an idle-only node's reading of its host's CPU times
	// (or why it failed), at the time it was taken.
	hostSample struct {
		times CPUTimes
		err   error
		at    time.Time
	}
)

// streamSize holds every status an invocation gets (running, then the
// last), so the actor never blocks on a slow stream.
const streamSize = 4

// nodeActor is the shell around the Machine: it writes what the machine's
// steps change to the store, then applies their effects.
type nodeActor struct {
	n       *Node
	m       *Machine
	store   Store
	blobs   Blobs
	audit   *audit
	log     *slog.Logger
	replies map[Ticket]chan<- answer
	streams map[Ticket]chan types.Status
	runs    map[types.AllocationID]*runHandle // each run in progress
	idle    *idleWatch                        // nil unless the node is idle-only
	stopped uint64                            // runs stopped for the host's owner
}

// runHandle is what the actor keeps of a run in progress: its cancel and,
// for a warm allocation once its program is warm, its instance.
type runHandle struct {
	cancel context.CancelCauseFunc
	warm   atomic.Pointer[instance]
}

func (a *nodeActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case event:
		a.step(m)
	case runEnded:
		delete(a.runs, m.status.AllocationID)
		a.step(event{fn: func(mc *Machine, now time.Time) { mc.RunEnded(m.status, now) }})
	case unwatch:
		delete(a.streams, m.ticket)
		a.step(event{fn: func(mc *Machine, _ time.Time) { mc.Unwatch(m.ticket) }})
	case bidRequestMsg:
		need := a.m.Short(m.req, a.now()) // before the request's own hold takes the room
		a.step(event{fn: func(mc *Machine, now time.Time) { mc.BidRequest(m.req, now) }, slot: true})
		if !need.IsZero() {
			a.reclaimFor(need)
		}
	case tickMsg:
		a.step(event{fn: (*Machine).Tick})
	case hostSample:
		a.sampled(m)
	case infoRequest:
		a.n.release()
		in := a.m.Info(a.now())
		if a.idle != nil {
			h := a.idle.state
			h.Stopped = a.stopped
			in.Host = &h
		}
		m.reply <- in
	case viewRequest:
		a.n.release()
		m.reply <- a.m.Ledger().View(a.now())
	case recordRequest:
		a.m.SetRecord(m.rec)
		a.reclaim()
		m.reply <- struct{}{}
	}
}

func (a *nodeActor) now() time.Time { return a.n.cfg.Clock() }

// sampled moves an idle-only node's view of its host on by one sample,
// tells the machine, and logs when the node starts or stops bidding.
func (a *nodeActor) sampled(s hostSample) {
	was := a.idle.state
	var st HostState
	if s.err != nil {
		st = a.idle.failed(s.err, s.at)
	} else {
		st = a.idle.observe(s.times, s.at)
	}
	stopped := a.stopped
	a.step(event{fn: func(m *Machine, now time.Time) { m.SetHost(st.Reason, now) }})
	switch {
	case st.Idle && !was.Idle:
		a.log.Info("host idle: bidding", "others", percent(st.Others), "threshold", percent(st.Threshold), "quiet_for", a.idle.p.Period)
	case !st.Idle && was.Idle:
		a.log.Info("host no longer idle: not bidding", "reason", st.Reason, "units_stopped", a.stopped-stopped)
	case s.err != nil && was.Reason != st.Reason:
		a.log.Warn("reading the host's CPU use", "err", s.err)
	}
}

// step hands one event to the machine, writes the records it changed, and
// then, not before, does what it asks.
func (a *nodeActor) step(e event) {
	if e.slot {
		a.n.release()
	}
	if e.reply != nil {
		a.replies[e.ticket] = e.reply
		defer a.unanswered(e.ticket)
	}
	if e.stream != nil {
		a.streams[e.ticket] = e.stream
	}
	defer a.contain()
	e.fn(a.m, a.now())
	saved := a.save(a.m.Ready())
	for _, eff := range a.m.Advance(saved) {
		a.apply(eff)
	}
}

// contain stops a panic of the machine's step from taking the node down:
// it is logged with its stack, and the request that caused it, if any, is
// answered with ErrInternal (by unanswered).
func (a *nodeActor) contain() {
	if r := recover(); r != nil {
		a.log.Error("node step panicked", "panic", r, "stack", string(debug.Stack()))
	}
}

// unanswered answers a request the step did not: only a panic skips the
// machine's Reply.
func (a *nodeActor) unanswered(t Ticket) {
	if r, ok := a.replies[t]; ok {
		delete(a.replies, t)
		r <- answer{err: fmt.Errorf("%w: the request was not answered", ErrInternal)}
	}
}

// save writes the records of a step, each under its key, and deletes
// those of locks that ended unused, leaving an audit entry (see audit);
// the first failure is returned, so the machine withdraws what it would
// promise.
func (a *nodeActor) save(recs []Allocation) error {
	var first error
	for i := range recs {
		var err error
		if recs[i].Discard() {
			err = a.audit.discard(recs[i], a.m.Ledger().Epoch())
		} else {
			err = a.record(recs[i])
		}
		if err != nil {
			a.log.Error("recording allocation", "allocation", recs[i].AllocationID, "state", recs[i].State, "err", err)
			if first == nil {
				first = fmt.Errorf("recording allocation %s: %w", recs[i].AllocationID, err)
			}
		}
	}
	return first
}

// record writes an allocation's record with its index keys (index.go)
// and, for a run that ended billed, its receipt as pending, in one write:
// a crash keeps all or none.
func (a *nodeActor) record(rec Allocation) error {
	rc, err := rec.receipt()
	if err != nil {
		a.log.Error("no receipt for the run", "allocation", rec.AllocationID, "err", err)
	}
	put, stale := allocIndex(&rec)
	put[rec.Key()] = rec
	if rc != nil {
		put[pendingKey(rc)] = rc
	}
	if err := a.store.Write(put, stale); err != nil {
		return err
	}
	if rc == nil {
		return nil
	}
	a.n.outbox.wake()
	return nil
}

func (a *nodeActor) apply(e Effect) {
	switch e := e.(type) {
	case Send:
		a.n.bids.add(e, a.now())
		a.n.goDo(func(ctx context.Context) { a.n.sendBid(ctx, e) })
	case Reply:
		if r, ok := a.replies[e.Ticket]; ok {
			delete(a.replies, e.Ticket)
			r <- answer{msg: e.Msg, err: e.Err}
		}
	case Notify:
		a.notify(e)
	case Run:
		a.run(e.Allocation)
	case Stop:
		h, ok := a.runs[e.AllocationID]
		switch {
		case !ok:
		case e.ByNode:
			h.cancel(errStopped{reason: e.Reason})
			a.stopped++
		default:
			h.cancel(errCancelled{reason: e.Reason})
		}
	}
}

// notify passes a status to its stream without blocking; a stream that fell
// behind by streamSize statuses is closed (its requester can query the
// status, or invoke again).
func (a *nodeActor) notify(n Notify) {
	s, ok := a.streams[n.Ticket]
	if !ok {
		return
	}
	select {
	case s <- n.Status:
		if !n.Last {
			return
		}
	default:
	}
	close(s)
	delete(a.streams, n.Ticket)
}

// run starts an allocation's run in a goroutine owned by the node, under a
// context of its own whose cancel the actor keeps; the end comes back as
// runEnded.
func (a *nodeActor) run(rec Allocation) {
	exec := a.n.cfg.Executors[rec.Task.Executor] // the machine starts only executors the node has
	ctx, cancel := context.WithCancelCause(a.n.ctx)
	h := &runHandle{cancel: cancel}
	a.runs[rec.AllocationID] = h
	x := &allocRun{n: a.n, rec: rec, exec: exec, blobs: a.blobs, handle: h}
	a.n.goDo(func(context.Context) {
		st := x.run(ctx)
		cancel(nil)
		a.n.post(runEnded{status: st})
	})
}

// storeHistory reads the records of allocations no longer live.
type storeHistory struct {
	store Store
	log   *slog.Logger
}

func (h storeHistory) Lookup(id types.AllocationID) (Allocation, bool) {
	var r Allocation
	found, err := h.store.Lookup(AllocationPrefix+string(id), &r)
	if err != nil {
		h.log.Error("reading allocation record", "allocation", id, "err", err)
	}
	return r, found && err == nil
}

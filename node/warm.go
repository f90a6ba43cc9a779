package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// ErrNotWarmer means a warm task names an executor that cannot keep a
// program warm (it is no jobs.Warmer).
var ErrNotWarmer = errors.New("node: executor cannot keep a program warm")

// Why a warm instance ends without its requester cancelling it: it
// completes, and its status says which.
const (
	releasedIdle    = "released: idle for "
	releasedGone    = "released: requester gone"
	releasedReclaim = "released: the provider reclaimed its capability"
	releasedBroken  = "released: the program broke: "
	releasedDemand  = "released: idle, its capability was wanted for other work"
)

// errReleased is the cause of a warm allocation's context when the
// provider takes its capability back.
type errReleased struct{ reason string }

func (e errReleased) Error() string { return e.reason }

// Bounds on how long an ending instance waits for its calls: beyond the
// calls' own timeout (drainGrace), and once the instance is closed, which
// stops what it runs (closeGrace).
const (
	drainGrace = time.Second
	closeGrace = 5 * time.Second
)

// closedBit marks, in instance.state, an instance that takes no more calls.
const closedBit = int64(1) << 62

// instance is a warm allocation's program as the node serves it. It is in
// the Node's registry (Node.warm) from Warm until it starts to end; its
// methods are safe for concurrent use.
type instance struct {
	alloc     types.AllocationID
	job       types.JobID
	requester string
	res       types.Resources
	price     types.Credits // per core-hour, as bid: its receipts bill it
	account   string        // the task's, named in its receipts
	prog      jobs.Instance
	limit     int64         // Warm.Concurrency
	keepAlive time.Duration // Warm.KeepAlive
	timeout   time.Duration // the task's, every call's bound
	started   time.Time

	// state is the number of calls in flight, with closedBit once closed.
	state     atomic.Int64
	drained   chan struct{} // closed once closed with no call in flight
	drainOnce sync.Once
	reclaimed atomic.Bool   // the provider asked for its capability back
	kick      chan struct{} // a batch of ReceiptCalls calls awaits its receipt
	ended     chan struct{} // closed when the last call is counted
	broke     chan struct{} // closed when a call found the program broken (jobs.ErrInstanceBroken)
	// ready is closed once the program is warm (prog set) or could not be
	// (prepErr set): an instance is in the registry from the start of its
	// run, so calls sent as soon as the requester learns it runs wait for
	// it rather than miss it.
	ready     chan struct{}
	prepErr   error
	breakOnce sync.Once
	brokeWhy  string // set before broke is closed

	mu    sync.Mutex
	tally tally
	sent  uint64 // tally.calls when the last receipt was taken
}

// tally is what an instance served: calls that got a slot, those that did
// not end CallOK, their run time, and the end of the last (started, before
// any).
type tally struct {
	calls, failed uint64
	busy          time.Duration
	last          time.Time
}

func newInstance(rec Allocation, prog jobs.Instance, timeout time.Duration, now time.Time) *instance {
	w := rec.Task.Warm
	return &instance{
		alloc: rec.AllocationID, job: rec.JobID, requester: rec.Requester, res: rec.Resources, prog: prog,
		price: rec.Price, account: rec.Task.Account,
		limit: int64(w.Concurrency), keepAlive: w.KeepAlive, timeout: timeout, started: now,
		drained: make(chan struct{}), kick: make(chan struct{}, 1), ended: make(chan struct{}), broke: make(chan struct{}),
		ready: make(chan struct{}),
		tally: tally{last: now},
	}
}

// acquire takes a call slot: CallOK when taken, CallBusy when all are,
// CallUnknown when the instance is closed. It never blocks.
func (w *instance) acquire() types.CallStatus {
	for {
		s := w.state.Load()
		switch {
		case s&closedBit != 0:
			return types.CallUnknown
		case s >= w.limit:
			return types.CallBusy
		case w.state.CompareAndSwap(s, s+1):
			return types.CallOK
		}
	}
}

// release gives a call slot back.
func (w *instance) release() {
	if w.state.Add(-1) == closedBit {
		w.drainOnce.Do(func() { close(w.drained) })
	}
}

// leaving reports whether the instance is ending: closed, or reclaimed.
func (w *instance) leaving() bool { return w.state.Load()&closedBit != 0 || w.reclaimed.Load() }

// inFlight returns the number of calls in flight.
func (w *instance) inFlight() int { return int(w.state.Load() &^ closedBit) }

// close stops the instance taking calls.
func (w *instance) close() {
	if w.state.Or(closedBit) == 0 {
		w.drainOnce.Do(func() { close(w.drained) })
	}
}

// drain waits, for at most d, until no call is in flight; it reports whether none is.
func (w *instance) drain(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.drained:
		return true
	case <-t.C:
		return false
	}
}

// count adds a call that ran from start to end to the tally, and asks for
// a receipt when every calls have gone without one.
func (w *instance) count(ok bool, start, end time.Time, every uint64) {
	w.mu.Lock()
	w.tally.calls++
	if !ok {
		w.tally.failed++
	}
	w.tally.busy += max(end.Sub(start), 0)
	w.tally.last = end
	batch := w.tally.calls-w.sent >= every
	w.mu.Unlock()
	if batch {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// snapshot returns the tally.
func (w *instance) snapshot() tally {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tally
}

// idle returns how long the instance has served no call at now: zero
// while one is in flight.
func (w *instance) idle(now time.Time) time.Duration {
	if w.inFlight() > 0 {
		return 0
	}
	return now.Sub(w.snapshot().last)
}

// setReady makes the instance ready with prog, or failed with err; only
// the first call counts.
func (w *instance) setReady(prog jobs.Instance, err error) {
	select {
	case <-w.ready:
		return
	default:
	}
	w.prog, w.prepErr = prog, err
	close(w.ready)
}

// usage returns what the instance's program has used so far (nothing
// before it is warm).
func (w *instance) usage() types.Usage {
	select {
	case <-w.ready:
	default:
		return types.Usage{}
	}
	if w.prog == nil {
		return types.Usage{}
	}
	return w.prog.Usage()
}

// waitReady waits, at most limit, for the instance's program to be warm:
// nil once it is, else why not.
func (w *instance) waitReady(ctx context.Context, limit time.Duration) error {
	select {
	case <-w.ready:
	default:
		t := time.NewTimer(limit)
		defer t.Stop()
		select {
		case <-w.ready:
		case <-t.C:
			return fmt.Errorf("node: the instance was not ready within %s", limit)
		case <-ctx.Done():
			return fmt.Errorf("node: the call ended while the instance got ready: %w", context.Cause(ctx))
		}
	}
	if w.prepErr != nil {
		return fmt.Errorf("the instance could not start: %w", w.prepErr)
	}
	return nil
}

// callTimeout is the bound of a call that asked for asked (0: none).
func (w *instance) callTimeout(asked time.Duration) time.Duration {
	if asked > 0 && asked < w.timeout {
		return asked
	}
	return w.timeout
}

// warm runs a warm allocation: it prepares the program, keeps it warm in
// the registry until it is released or its context ends, then retires it.
// released says why it was released ("" when the context ended first).
func (x *allocRun) warm(ctx context.Context) (res *types.Result, released string, err error) {
	wm, ok := x.exec.(jobs.Warmer)
	if !ok {
		return nil, "", fmt.Errorf("%w: %s", ErrNotWarmer, x.exec.Name())
	}
	w := x.n.register(x.rec, jobs.Input{Timeout: x.rec.Task.Timeout}.WithDefaults().Timeout)
	x.handle.warm.Store(w)
	defer func() {
		var stopped errStopped // for the host's owner: within the idle policy's bound
		x.n.retire(w, !errors.As(context.Cause(ctx), &stopped))
		if res != nil { // once closed, what the instance used no longer changes
			u := w.usage()
			res.Usage = &u
		}
	}()
	dir := filepath.Join(x.n.cfg.WorkDir, string(x.rec.AllocationID))
	defer os.RemoveAll(dir)
	in, err := x.prepare(ctx, dir)
	if err != nil {
		w.setReady(nil, err)
		return nil, "", err
	}
	prog, err := wm.Warm(ctx, in)
	if err != nil {
		err = fmt.Errorf("warming the program: %w", err)
		w.setReady(nil, err)
		return nil, "", err
	}
	w.setReady(prog, nil)
	released = x.n.keepWarm(ctx, w)
	return &types.Result{DurationMillis: x.n.cfg.Clock().Sub(w.started).Milliseconds()}, released, nil
}

// register puts a warm allocation's instance in the registry, not ready
// yet, and starts its receipts.
func (n *Node) register(rec Allocation, timeout time.Duration) *instance {
	w := newInstance(rec, nil, timeout, n.cfg.Clock())
	n.warm.Store(w.alloc, w)
	n.goReceipts(w)
	return w
}

// retire ends an instance: out of the registry first (new calls get
// CallUnknown), then, if drain, it waits for the calls in flight (bounded
// by their timeout; not at all when the node is closing), closes the
// program, which stops what still runs, and lets the final receipt go.
func (n *Node) retire(w *instance, drain bool) {
	defer func() { // even when Close panics: the receipts' goroutine must end
		n.warmCalls.Add(w.snapshot().calls)
		close(w.ended)
	}()
	n.warm.CompareAndDelete(w.alloc, w)
	w.close()
	if drain && n.ctx.Err() == nil && !w.drain(w.timeout+drainGrace) {
		n.cfg.Logger.Warn("warm instance: calls outlived their timeout", "allocation", w.alloc, "in_flight", w.inFlight())
	}
	w.setReady(nil, errors.New("the instance ended before it was ready"))
	if w.prog == nil {
		return
	}
	if err := w.prog.Close(); err != nil {
		n.cfg.Logger.Warn("closing a warm instance", "allocation", w.alloc, "err", err)
	}
	if !w.drain(closeGrace) {
		n.cfg.Logger.Error("warm instance: calls still running after it closed", "allocation", w.alloc, "in_flight", w.inFlight())
	}
}

// keepWarm waits until the instance is released (idle for its keep-alive,
// its requester gone for the orphan grace, reclaimed: it says which) or
// its context ends ("").
func (n *Node) keepWarm(ctx context.Context, w *instance) string {
	t := time.NewTicker(n.warmCheck(w.keepAlive))
	defer t.Stop()
	orphan := orphanWatch{grace: n.cfg.OrphanGrace}
	for {
		select {
		case <-ctx.Done():
			var r errReleased
			if errors.As(context.Cause(ctx), &r) {
				return r.reason
			}
			return ""
		case <-w.broke:
			return releasedBroken + w.brokeWhy
		case <-t.C:
		}
		now := n.cfg.Clock()
		if w.idle(now) >= w.keepAlive {
			return releasedIdle + w.keepAlive.String()
		}
		if orphan.gone(n.net.Connected(w.requester), now) {
			return releasedGone
		}
	}
}

// warmCheck is how often an instance looks whether it is idle or orphaned:
// a quarter of the shorter of its keep-alive and the orphan grace, at most
// a second, at least 10ms.
func (n *Node) warmCheck(keepAlive time.Duration) time.Duration {
	return max(min(time.Second, keepAlive/4, n.cfg.OrphanGrace/4), 10*time.Millisecond)
}

// orphanWatch tells when a requester has been away for its grace.
type orphanWatch struct {
	grace time.Duration
	since time.Time // first seen away; zero while connected
}

func (o *orphanWatch) gone(connected bool, now time.Time) bool {
	if connected {
		o.since = time.Time{}
		return false
	}
	if o.since.IsZero() {
		o.since = now
	}
	return now.Sub(o.since) >= o.grace
}

// Call runs one call on a warm instance of from's and always answers, with
// req.Seq. It is the hot path: no actor round trip, no disk, one reply
// allocated. CallUnknown: no such instance of from's (ended, released,
// someone else's, never was); CallBusy: its Concurrency calls are in
// flight; CallFailed: the program trapped, ran out of time or memory, or
// does not load; CallNodeError: the caller's context ended, the instance
// closed, or anything else (a panic of the executor included). Safe for
// concurrent use.
func (n *Node) Call(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
	rep := &types.CallReply{Seq: req.Seq, Status: types.CallUnknown, Error: "no such warm instance"}
	v, ok := n.warm.Load(req.Allocation)
	if !ok || v.(*instance).requester != from {
		return rep
	}
	w := v.(*instance)
	if err := w.waitReady(ctx, w.callTimeout(req.Timeout)); err != nil {
		rep.Status, rep.Error = types.CallNodeError, err.Error()
		if faultOf(err) == types.FaultProgram { // it cannot start anywhere: say why, do not retry
			rep.Status = types.CallFailed
		}
		return rep
	}
	if rep.Status = w.acquire(); rep.Status != types.CallOK {
		if rep.Status == types.CallBusy {
			rep.Error = "the instance is at its concurrency limit"
		}
		return rep
	}
	defer w.release()
	start := n.cfg.Clock()
	n.serve(ctx, w, req, rep)
	w.count(rep.Status == types.CallOK, start, n.cfg.Clock(), n.cfg.ReceiptCalls)
	return rep
}

// serve runs a call on w and fills rep; a panic of the executor is
// contained here and answered CallNodeError.
func (n *Node) serve(ctx context.Context, w *instance, req *types.CallRequest, rep *types.CallReply) {
	defer func() {
		if r := recover(); r != nil {
			n.cfg.Logger.Error("warm call panicked", "allocation", w.alloc, "panic", r, "stack", string(debug.Stack()))
			*rep = types.CallReply{Seq: req.Seq, Status: types.CallNodeError, Error: fmt.Sprintf("node: the executor panicked: %v", r)}
		}
	}()
	out, err := w.prog.Call(ctx, jobs.CallInput{Env: req.Env, Stdin: req.Stdin, Timeout: w.callTimeout(req.Timeout)})
	if errors.Is(err, jobs.ErrInstanceBroken) {
		n.warm.CompareAndDelete(w.alloc, w) // new calls go to other instances at once
		w.breakOnce.Do(func() {
			w.brokeWhy = err.Error()
			close(w.broke)
		})
	}
	rep.Status, rep.Error = callStatus(ctx, err)
	if out != nil && rep.Status != types.CallNodeError {
		rep.ExitCode, rep.Stdout, rep.Stderr, rep.Duration = out.ExitCode, out.Stdout, out.Stderr, out.Duration
		rep.StdoutTruncated, rep.StderrTruncated = out.StdoutTruncated, out.StderrTruncated
	}
}

// callStatus maps a call's error to its status and message: the program's
// failures (jobs.ErrTrap, ErrTimeout, ErrMemoryLimit, ErrBadModule) are
// CallFailed, anything else, the caller's context ending first included,
// CallNodeError.
func callStatus(ctx context.Context, err error) (types.CallStatus, string) {
	switch {
	case err == nil:
		return types.CallOK, ""
	case ctx.Err() != nil:
		return types.CallNodeError, fmt.Sprintf("node: the call ended: %v", context.Cause(ctx))
	}
	for _, program := range []error{jobs.ErrTrap, jobs.ErrTimeout, jobs.ErrMemoryLimit, jobs.ErrBadModule} {
		if errors.Is(err, program) {
			return types.CallFailed, err.Error()
		}
	}
	return types.CallNodeError, err.Error()
}

package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// fakeWarmer is a jobs.Warmer whose instances answer by their call's stdin:
// "wait" waits for the instance's gate (or its Close, or the call's
// context), "trap" traps, "panic" panics; anything else says hello.
type fakeWarmer struct {
	fakeExec
	mu    sync.Mutex
	insts map[string]*fakeInstance // by the run's Job (job/allocation)
}

var _ jobs.Warmer = (*fakeWarmer)(nil)

func (f *fakeWarmer) Warm(_ context.Context, in jobs.Input) (jobs.Instance, error) {
	if _, err := in.Load(); err != nil {
		return nil, err
	}
	i := &fakeInstance{gate: make(chan struct{}), entered: make(chan struct{}, 64), closed: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.insts == nil {
		f.insts = map[string]*fakeInstance{}
	}
	f.insts[in.Job[strings.IndexByte(in.Job, '/')+1:]] = i
	return i, nil
}

func (f *fakeWarmer) instance(alloc string) *fakeInstance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.insts[alloc]
}

type fakeInstance struct {
	gate      chan struct{}
	entered   chan struct{} // one per "wait" call that started
	closed    chan struct{}
	closeOnce sync.Once
	timeout   atomic.Int64 // the last call's
	active    atomic.Int32 // "yield" calls running
	peak      atomic.Int32 // the most seen at once
	calls     atomic.Int64 // every call
}

var hello = &jobs.Output{Stdout: []byte("hello")}

func (i *fakeInstance) Call(ctx context.Context, c jobs.CallInput) (*jobs.Output, error) {
	i.calls.Add(1)
	i.timeout.Store(int64(c.Timeout))
	select {
	case <-i.closed:
		return nil, errors.New("instance closed")
	default:
	}
	switch string(c.Stdin) {
	case "yield":
		a := i.active.Add(1)
		for p := i.peak.Load(); a > p && !i.peak.CompareAndSwap(p, a); p = i.peak.Load() {
		}
		runtime.Gosched()
		i.active.Add(-1)
	case "wait":
		i.entered <- struct{}{}
		select {
		case <-i.gate:
		case <-i.closed:
			return nil, errors.New("instance closed")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "trap":
		return &jobs.Output{ExitCode: 1, Stderr: []byte("oops")}, fmt.Errorf("%w: unreachable", jobs.ErrTrap)
	case "panic":
		panic("the instance lost its mind")
	case "break":
		return nil, fmt.Errorf("%w: %w: the program exited with code 3", jobs.ErrInstanceBroken, jobs.ErrTrap)
	}
	return hello, nil
}

// Usage implements jobs.Instance: each call counts 1ms of CPU time, 10ms
// of wall time and 5 bytes of output, under 1 MiB.
func (i *fakeInstance) Usage() types.Usage {
	n := i.calls.Load()
	return types.Usage{
		CPU: time.Duration(n) * time.Millisecond, Wall: time.Duration(n) * 10 * time.Millisecond,
		MemoryPeak: 1 << 20, MemoryLimit: 1 << 20, OutputBytes: 5 * n, Calls: uint64(n),
	}.WithMemoryTime()
}

func (i *fakeInstance) Close() error {
	i.closeOnce.Do(func() { close(i.closed) })
	return nil
}

func (i *fakeInstance) isClosed() bool {
	select {
	case <-i.closed:
		return true
	default:
		return false
	}
}

// warmHarness is a node whose "wasm" executor is a fakeWarmer and whose
// clock runs skew ahead of the wall clock.
type warmHarness struct {
	*harness
	exec *fakeWarmer
	skew atomic.Int64
}

var warmRes = types.Resources{CPU: 1000, Memory: 1 << 20}

func newWarmHarness(t testing.TB, tweak func(*Config)) *warmHarness {
	t.Helper()
	w := &warmHarness{exec: &fakeWarmer{}}
	w.harness = newHarnessConfig(t, newMemStore(), func(c *Config) {
		c.Executors = map[string]jobs.Executor{"wasm": w.exec}
		c.Clock = func() time.Time { return time.Now().Add(time.Duration(w.skew.Load())) }
		c.ReceiptEvery = time.Hour
		if tweak != nil {
			tweak(c)
		}
	})
	return w
}

// start accepts and invokes a warm allocation and waits until it takes
// calls; its statuses, the last one terminal, come on the channel.
func (w *warmHarness) start(alloc string, warm types.Warm) <-chan []*types.Status {
	w.t.Helper()
	c, ok := w.accept(alloc, warmRes).(*types.Confirm)
	if !ok {
		w.t.Fatalf("accept %s: %#v", alloc, c)
	}
	done := make(chan []*types.Status, 1)
	inv := &types.Invocation{JobID: types.JobID(alloc), AllocationID: types.AllocationID(alloc), Epoch: c.Epoch,
		Task: types.Task{Executor: "wasm", Module: w.module, Resources: warmRes, Timeout: time.Minute, Warm: &warm}}
	go func() {
		var got []*types.Status
		_ = w.node.Invoke(context.Background(), requester, inv, func(st *types.Status) error { got = append(got, st); return nil })
		done <- got
	}()
	// Registered first, the instance is made once the module is fetched:
	// tests reach it through the executor.
	waitUntil(w.t, func() bool { return w.registered(alloc) && w.exec.instance(alloc) != nil })
	return done
}

func (w *warmHarness) registered(alloc string) bool {
	return slices.ContainsFunc(w.node.Instances(), func(i InstanceInfo) bool { return i.Allocation == types.AllocationID(alloc) })
}

func (w *warmHarness) call(from, alloc, stdin string) *types.CallReply {
	return w.node.Call(w.ctx(), from, &types.CallRequest{Seq: 7, Allocation: types.AllocationID(alloc), Stdin: []byte(stdin)})
}

// ended waits for a warm allocation's last status.
func ended(t *testing.T, done <-chan []*types.Status) *types.Status {
	t.Helper()
	select {
	case sts := <-done:
		if len(sts) == 0 {
			t.Fatal("no status")
		}
		return sts[len(sts)-1]
	case <-time.After(10 * time.Second):
		t.Fatal("the warm allocation did not end within 10s")
		return nil
	}
}

func (w *warmHarness) info() Info {
	in, err := w.node.Info(w.ctx())
	if err != nil {
		w.t.Fatal(err)
	}
	return in
}

func TestWarmServesUpToItsConcurrencyAndBusyBeyond(t *testing.T) {
	w := newWarmHarness(t, nil)
	w.start("a1", types.Warm{Concurrency: 2, KeepAlive: time.Hour})
	fi := w.exec.instance("a1")
	replies := make(chan *types.CallReply, 2)
	for range 2 {
		go func() { replies <- w.call(requester, "a1", "wait") }()
		<-fi.entered
	}
	if r := w.call(requester, "a1", "x"); r.Status != types.CallBusy || r.Seq != 7 {
		t.Fatalf("a third call at concurrency 2: %+v", r)
	}
	if in := w.node.Instances(); len(in) != 1 || in[0].InFlight != 2 || in[0].Concurrency != 2 || in[0].Requester != requester {
		t.Fatalf("instances %+v", in)
	}
	close(fi.gate)
	for range 2 {
		if r := <-replies; r.Status != types.CallOK || string(r.Stdout) != "hello" {
			t.Fatalf("a call in flight: %+v", r)
		}
	}
	if r := w.call(requester, "a1", "x"); r.Status != types.CallOK {
		t.Fatalf("a call with a slot free again: %+v", r)
	}
	if got := time.Duration(fi.timeout.Load()); got != time.Minute {
		t.Fatalf("a call that asks for no timeout gets %s, not the task's", got)
	}
	w.node.Call(w.ctx(), requester, &types.CallRequest{Allocation: "a1", Timeout: time.Second})
	if got := time.Duration(fi.timeout.Load()); got != time.Second {
		t.Fatalf("a call that asks for 1s gets %s", got)
	}
	w.node.Call(w.ctx(), requester, &types.CallRequest{Allocation: "a1", Timeout: time.Hour})
	if got := time.Duration(fi.timeout.Load()); got != time.Minute {
		t.Fatalf("a call that asks for more than the task's timeout gets %s", got)
	}
	if in := w.info(); in.Warm != 1 || in.WarmCalls != 5 || in.Running != 1 {
		t.Fatalf("info %+v", in)
	}
}

// Many callers at once never get more calls in flight than the
// instance's concurrency, and every call is either served and counted or
// answered Busy.
func TestWarmConcurrencyUnderContention(t *testing.T) {
	w := newWarmHarness(t, nil)
	w.start("a1", types.Warm{Concurrency: 3, KeepAlive: time.Hour})
	var ok, busy atomic.Uint64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				switch r := w.call(requester, "a1", "yield"); r.Status {
				case types.CallOK:
					ok.Add(1)
				case types.CallBusy:
					busy.Add(1)
				default:
					t.Errorf("call: %+v", r)
				}
			}
		})
	}
	wg.Wait()
	in := w.node.Instances()[0]
	if ok.Load()+busy.Load() != 1600 || in.Calls != ok.Load() || in.InFlight != 0 || w.exec.instance("a1").peak.Load() > 3 {
		t.Fatalf("ok %d, busy %d, instance %+v, peak %d", ok.Load(), busy.Load(), in, w.exec.instance("a1").peak.Load())
	}
}

// Another peer cannot tell someone else's instance from none.
func TestWarmCallOfAnotherPeerIsUnknown(t *testing.T) {
	w := newWarmHarness(t, nil)
	w.start("a1", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	theirs := w.call(stranger, "a1", "x")
	none := w.call(requester, "nope", "x")
	if theirs.Status != types.CallUnknown || !reflect.DeepEqual(theirs, none) {
		t.Fatalf("another's instance %+v, no instance %+v", theirs, none)
	}
	if in := w.node.Instances(); in[0].Calls != 0 {
		t.Fatalf("a refused call was counted: %+v", in)
	}
}

func TestWarmCallFailures(t *testing.T) {
	w := newWarmHarness(t, nil)
	w.start("a1", types.Warm{Concurrency: 4, KeepAlive: time.Hour})
	r := w.call(requester, "a1", "trap")
	if r.Status != types.CallFailed || !strings.Contains(r.Error, "unreachable") || r.ExitCode != 1 || string(r.Stderr) != "oops" {
		t.Fatalf("a trap: %+v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := w.node.Call(ctx, requester, &types.CallRequest{Allocation: "a1", Stdin: []byte("wait")}); r.Status != types.CallNodeError {
		t.Fatalf("a call whose caller gave up: %+v", r)
	}
	r = w.call(requester, "a1", "panic")
	if r.Status != types.CallNodeError || !strings.Contains(r.Error, "panicked: the instance lost its mind") || r.Seq != 7 {
		t.Fatalf("a panicking call: %+v", r)
	}
	if r := w.call(requester, "a1", "x"); r.Status != types.CallOK {
		t.Fatalf("the call after a panic: %+v", r)
	}
	if in := w.node.Instances(); in[0].Calls != 4 || in[0].Failed != 3 || in[0].InFlight != 0 {
		t.Fatalf("instances %+v", in)
	}
}

// A call that finds the program broken fails (the program's fault), takes
// the instance out of the registry at once (the next call is Unknown: the
// gateway sends it elsewhere) and releases it, closed.
func TestWarmBrokenInstanceIsReleased(t *testing.T) {
	w := newWarmHarness(t, nil)
	done := w.start("a1", types.Warm{Concurrency: 4, KeepAlive: time.Hour})
	if r := w.call(requester, "a1", "break"); r.Status != types.CallFailed || !strings.Contains(r.Error, "exited with code 3") {
		t.Fatalf("the call that broke it: %+v", r)
	}
	if r := w.call(requester, "a1", "x"); r.Status != types.CallUnknown {
		t.Fatalf("a call after it broke: %+v", r)
	}
	last := ended(t, done)
	if last.State != types.AllocCompleted || !strings.HasPrefix(last.Reason, releasedBroken) {
		t.Fatalf("last status %+v", last)
	}
	if !w.exec.instance("a1").isClosed() {
		t.Fatal("the broken instance was not closed")
	}
}

// Idle for its keep-alive by the node's clock, an instance completes,
// closed, its capability free; later calls are Unknown.
func TestWarmIdleInstanceIsReleased(t *testing.T) {
	w := newWarmHarness(t, func(c *Config) { c.OrphanGrace = 40 * time.Millisecond })
	done := w.start("a1", types.Warm{Concurrency: 1, KeepAlive: 10 * time.Minute})
	if r := w.call(requester, "a1", "x"); r.Status != types.CallOK {
		t.Fatal(r)
	}
	w.skew.Store(int64(11 * time.Minute))
	last := ended(t, done)
	if last.State != types.AllocCompleted || last.Reason != "released: idle for 10m0s" ||
		last.Result == nil || last.Result.DurationMillis < (11*time.Minute).Milliseconds() {
		t.Fatalf("last status %+v, result %+v", last, last.Result)
	}
	if !w.exec.instance("a1").isClosed() {
		t.Fatal("the released instance was not closed")
	}
	if r := w.call(requester, "a1", "x"); r.Status != types.CallUnknown {
		t.Fatalf("a call after the release: %+v", r)
	}
	waitUntil(t, func() bool { return w.info().Running == 0 })
	if in := w.info(); in.Warm != 0 || in.WarmCalls != 1 || in.Available != offered {
		t.Fatalf("info %+v", in)
	}
}

func TestWarmOrphanIsReleased(t *testing.T) {
	w := newWarmHarness(t, func(c *Config) { c.OrphanGrace = 50 * time.Millisecond })
	done := w.start("a1", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	w.net.away.Store(true)
	if last := ended(t, done); last.State != types.AllocCompleted || last.Reason != releasedGone {
		t.Fatalf("last status %+v", last)
	}
}

func TestOrphanWatch(t *testing.T) {
	o := orphanWatch{grace: time.Second}
	t0 := time.Unix(0, 0)
	steps := []struct {
		connected bool
		at        time.Duration
		gone      bool
	}{
		{false, 0, false}, {false, 999 * time.Millisecond, false},
		{true, 1500 * time.Millisecond, false}, // back: the grace starts over
		{false, 2 * time.Second, false}, {false, 3 * time.Second, true},
	}
	for i, s := range steps {
		if got := o.gone(s.connected, t0.Add(s.at)); got != s.gone {
			t.Fatalf("step %d: gone = %v", i, got)
		}
	}
}

// Cancel stops new calls at once, and the instance ends, cancelled, only
// after its call in flight.
func TestWarmCancelWaitsForCallsInFlight(t *testing.T) {
	w := newWarmHarness(t, nil)
	done := w.start("a1", types.Warm{Concurrency: 2, KeepAlive: time.Hour})
	fi := w.exec.instance("a1")
	inFlight := make(chan *types.CallReply, 1)
	go func() { inFlight <- w.call(requester, "a1", "wait") }()
	<-fi.entered
	if _, err := w.node.Cancel(w.ctx(), requester, &types.Cancel{JobID: "a1", AllocationID: "a1", Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return w.call(requester, "a1", "x").Status == types.CallUnknown })
	st, err := w.node.Status(w.ctx(), requester, &types.StatusQuery{AllocationID: "a1"})
	if err != nil || st.(*types.Status).State != types.AllocRunning || fi.isClosed() {
		t.Fatalf("with a call in flight: %+v, %v, closed %v", st, err, fi.isClosed())
	}
	close(fi.gate)
	if r := <-inFlight; r.Status != types.CallOK {
		t.Fatalf("the call in flight: %+v", r)
	}
	if last := ended(t, done); last.State != types.AllocCancelled || last.Reason != "cancelled by requester: done" {
		t.Fatalf("last status %+v", last)
	}
	if !fi.isClosed() {
		t.Fatal("not closed")
	}
}

// Closing the node stops its instances, their calls in flight included,
// and waits for them; their final receipts stay pending.
func TestWarmNodeCloseEndsInstances(t *testing.T) {
	w := newWarmHarness(t, nil)
	w.start("a1", types.Warm{Concurrency: 2, KeepAlive: time.Hour})
	fi := w.exec.instance("a1")
	inFlight := make(chan *types.CallReply, 1)
	go func() { inFlight <- w.call(requester, "a1", "wait") }()
	<-fi.entered
	if err := w.node.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-inFlight; r.Status != types.CallNodeError {
		t.Fatalf("the call in flight: %+v", r)
	}
	if !fi.isClosed() || w.registered("a1") {
		t.Fatal("the instance outlived its node")
	}
	if r := w.call(requester, "a1", "x"); r.Status != types.CallUnknown {
		t.Fatalf("a call after Close: %+v", r)
	}
	var rc types.Receipt // the node closed: its final receipt waits for the next start
	if ok, _ := w.store.Lookup(PendingReceiptPrefix+"a1/1", &rc); !ok || !rc.Final || rc.Calls != 1 || rc.Failed != 1 {
		t.Fatalf("final receipt %+v (pending: %v)", rc, ok)
	}
}

// A task whose executor cannot keep a program warm fails, the node's fault.
func TestWarmNeedsAWarmer(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	c := h.accept("a1", warmRes).(*types.Confirm)
	var last *types.Status
	err := h.node.Invoke(h.ctx(), requester, &types.Invocation{JobID: "a1", AllocationID: "a1", Epoch: c.Epoch,
		Task: types.Task{Executor: "wasm", Module: h.module, Resources: warmRes, Warm: &types.Warm{Concurrency: 1, KeepAlive: time.Hour}}},
		func(st *types.Status) error { last = st; return nil })
	if err != nil || last.State != types.AllocFailed || last.Fault != types.FaultNode || !strings.Contains(last.Reason, ErrNotWarmer.Error()) {
		t.Fatalf("last status %+v, %v", last, err)
	}
	c = h.accept("a2", warmRes).(*types.Confirm)
	err = h.node.Invoke(h.ctx(), requester, &types.Invocation{JobID: "a2", AllocationID: "a2", Epoch: c.Epoch,
		Task: types.Task{Executor: "wasm", Module: h.module, Resources: warmRes, Warm: &types.Warm{Concurrency: 0, KeepAlive: time.Hour}}},
		func(*types.Status) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "concurrency 0") {
		t.Fatalf("an invalid Warm: %v", err)
	}
}

// nextReceipt takes the next receipt off net, skipping bids.
func nextReceipt(t *testing.T, net *fakeNet) *types.Receipt {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-net.sent:
			if r, ok := m.(*types.Receipt); ok {
				return r
			}
		case <-timeout:
			t.Fatal("no receipt within 10s")
		}
	}
}

func TestWarmReceipts(t *testing.T) {
	w := newWarmHarness(t, func(c *Config) { c.ReceiptCalls = 3 })
	done := w.start("a1", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	calls := func(stdin ...string) {
		for _, s := range stdin {
			w.call(requester, "a1", s)
		}
	}
	calls("x", "x", "x")
	r1 := nextReceipt(t, w.net)
	calls("x", "trap", "x")
	r2 := nextReceipt(t, w.net)
	calls("x")
	if _, err := w.node.Cancel(w.ctx(), requester, &types.Cancel{JobID: "a1", AllocationID: "a1"}); err != nil {
		t.Fatal(err)
	}
	ended(t, done)
	r3 := nextReceipt(t, w.net)
	for i, want := range []struct{ calls, failed uint64 }{{3, 0}, {3, 1}, {1, 0}} {
		r := []*types.Receipt{r1, r2, r3}[i]
		if r.Seq != uint64(i+1) || r.Calls != want.calls || r.Failed != want.failed || r.Final != (i == 2) ||
			r.AllocationID != "a1" || r.JobID != "a1" || r.Requester != requester || r.To.Before(r.From) {
			t.Fatalf("receipt %d: %+v", i+1, r)
		}
	}
	if !r2.From.Equal(r1.To) || !r3.From.Equal(r2.To) {
		t.Fatalf("receipts' spans do not follow each other: %+v %+v %+v", r1, r2, r3)
	}
	select {
	case m := <-w.net.sent:
		t.Fatalf("more after the final receipt: %#v", m)
	default:
	}
}

// Each receipt carries what the instance used since the last (its
// executor's measure), and the allocation's result what it used in all.
func TestWarmReceiptsCarryUsage(t *testing.T) {
	w := newWarmHarness(t, func(c *Config) { c.ReceiptCalls = 2 })
	done := w.start("a1", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	for range 2 {
		w.call(requester, "a1", "x")
	}
	r1 := nextReceipt(t, w.net)
	w.call(requester, "a1", "break") // released, so it completes with its result
	last := ended(t, done)
	r2 := nextReceipt(t, w.net)
	for i, want := range []types.Usage{
		{CPU: 2 * time.Millisecond, Wall: 20 * time.Millisecond, OutputBytes: 10, Calls: 2},
		{CPU: time.Millisecond, Wall: 10 * time.Millisecond, OutputBytes: 5, Calls: 1},
	} {
		want.MemoryPeak, want.MemoryLimit = 1<<20, 1<<20
		if u := []*types.Receipt{r1, r2}[i].Usage; u == nil || *u != want.WithMemoryTime() {
			t.Errorf("receipt %d: usage %+v, want %+v", i+1, u, want.WithMemoryTime())
		}
	}
	total := w.exec.instance("a1").Usage()
	if last.Result == nil || last.Result.Usage == nil || *last.Result.Usage != total || total.Calls != 3 {
		t.Fatalf("result %+v, want usage %+v", last.Result, total)
	}
}

// An instance with no call since its last receipt ends without a final one.
func TestWarmNoCallsNoReceipt(t *testing.T) {
	w := newWarmHarness(t, nil)
	done := w.start("a1", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	if _, err := w.node.Cancel(w.ctx(), requester, &types.Cancel{JobID: "a1", AllocationID: "a1"}); err != nil {
		t.Fatal(err)
	}
	ended(t, done)
	w.node.Close() // waits for the receipts' goroutine
	select {
	case m := <-w.net.sent:
		t.Fatalf("a receipt for no calls: %#v", m)
	default:
	}
}

// Lowering the offer below what is committed releases warm instances, one
// with no call in flight before one with, until it fits; the ledger stays
// within what is registered once they end, and grants nothing meanwhile.
func TestWarmReclaimOnLowerOffer(t *testing.T) {
	w := newWarmHarness(t, nil)
	doneA := w.start("a", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	doneB := w.start("b", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	w.call(requester, "b", "x") // b served last, but a has a call in flight
	fa := w.exec.instance("a")
	inFlight := make(chan *types.CallReply, 1)
	go func() { inFlight <- w.call(requester, "a", "wait") }()
	<-fa.entered

	lower := types.CapabilityRecord{Offered: types.Resources{CPU: 1000, Memory: 1 << 30, Disk: 1 << 30}, Price: types.Credit, Executors: []string{"wasm"}}
	for range 2 { // asking twice reclaims no more
		if err := w.node.SetRecord(w.ctx(), lower); err != nil {
			t.Fatal(err)
		}
	}
	if last := ended(t, doneB); last.State != types.AllocCompleted || last.Reason != releasedReclaim {
		t.Fatalf("b: %+v", last)
	}
	waitUntil(t, func() bool { return w.info().Running == 1 })
	in := w.info()
	if in.Warm != 1 || in.Available.CPU != 0 || in.Registered.CPU != 1000 || !w.registered("a") {
		t.Fatalf("after the reclaim: %+v", in)
	}
	w.node.HandleBidRequest(requester, &types.BidRequest{JobID: "c", Requester: requester, Executor: "wasm", Resources: warmRes, Deadline: time.Now().Add(time.Minute)})
	for m := range w.net.sent { // b's final receipt may come first
		if _, receipt := m.(*types.Receipt); receipt {
			continue
		}
		if d, ok := m.(*types.Decline); !ok || !d.Busy {
			t.Fatalf("a bid request with the offer full: %#v", m)
		}
		break
	}
	close(fa.gate)
	<-inFlight
	lower.Offered.CPU = 500
	if err := w.node.SetRecord(w.ctx(), lower); err != nil {
		t.Fatal(err)
	}
	if last := ended(t, doneA); last.State != types.AllocCompleted || last.Reason != releasedReclaim {
		t.Fatalf("a: %+v", last)
	}
}

// A bid request that finds the node short only of the room idle warm
// instances hold is declined as busy, and frees them, longest idle
// first, no more than it needs, never one with a call in flight: the
// node then bids on the request.
func TestWarmReclaimForDemand(t *testing.T) {
	w := newWarmHarness(t, func(c *Config) { c.ReclaimIdle = time.Millisecond })
	doneA := w.start("a", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	w.start("b", types.Warm{Concurrency: 1, KeepAlive: time.Hour}) // the node is full: 2 cores
	fb := w.exec.instance("b")
	inFlight := make(chan *types.CallReply, 1)
	go func() { inFlight <- w.call(requester, "b", "wait") }()
	<-fb.entered
	time.Sleep(5 * time.Millisecond) // a is idle past ReclaimIdle (1ms)

	ask := func(job string) types.Message {
		w.node.HandleBidRequest(requester, &types.BidRequest{JobID: types.JobID(job), Requester: requester, Executor: "wasm", Resources: warmRes, Deadline: time.Now().Add(time.Minute)})
		for m := range w.net.sent {
			if _, receipt := m.(*types.Receipt); !receipt {
				return m
			}
		}
		return nil
	}
	if m := ask("c"); !isBusy(m) {
		t.Fatalf("a bid request with the node full: %#v; %+v", m, w.info())
	}
	if last := ended(t, doneA); last.State != types.AllocCompleted || last.Reason != releasedDemand {
		t.Fatalf("a: %+v", last)
	}
	waitUntil(t, func() bool { return w.info().Running == 1 })
	// The room freed: the node bids on c, late (it remembered the busy
	// decline) or asked again, whichever message comes first.
	if b, ok := ask("c").(*types.Bid); !ok || b.JobID != "c" {
		t.Fatalf("asked again, the node did not bid on c: %#v", b)
	}
	if !w.registered("b") {
		t.Fatal("the instance with a call in flight was released")
	}
	close(fb.gate)
	<-inFlight
}

func isBusy(m types.Message) bool {
	d, ok := m.(*types.Decline)
	return ok && d.Busy
}

func TestReclaimable(t *testing.T) {
	t0 := time.Unix(0, 0)
	cands := []reclaimCandidate{
		{id: "busy", res: types.Resources{CPU: 1000}, inFlight: 1, last: t0},
		{id: "recent", res: types.Resources{CPU: 1000}, last: t0.Add(2 * time.Second)},
		{id: "gpu", res: types.Resources{GPUs: 1}, last: t0},
		{id: "old", res: types.Resources{CPU: 1000}, last: t0.Add(time.Second)},
	}
	reclaimOrder(cands)
	var order []types.AllocationID
	for _, c := range cands {
		order = append(order, c.id)
	}
	if want := []types.AllocationID{"gpu", "old", "recent", "busy"}; !slices.Equal(order, want) {
		t.Fatalf("order %v", order)
	}
	reg := types.Resources{CPU: 1500}
	if got := reclaimable(types.Resources{CPU: 3000}, reg, cands); !slices.Equal(got, []types.AllocationID{"old", "recent"}) {
		t.Fatalf("reclaim %v", got) // the gpu one does not help
	}
	if got := reclaimable(types.Resources{CPU: 1500}, reg, cands); got != nil {
		t.Fatalf("nothing to reclaim, got %v", got)
	}
	if got := reclaimable(types.Resources{CPU: 9000}, reg, cands); len(got) != 3 {
		t.Fatalf("all that helps: %v", got)
	}
}

// BenchmarkWarmCall is Node.Call on a no-op instance: the node's own cost
// of a call.
func BenchmarkWarmCall(b *testing.B) {
	w := newWarmHarness(b, nil)
	w.start("a1", types.Warm{Concurrency: 1, KeepAlive: time.Hour})
	req := &types.CallRequest{Allocation: "a1"}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r := w.node.Call(ctx, requester, req); r.Status != types.CallOK {
			b.Fatal(r)
		}
	}
}

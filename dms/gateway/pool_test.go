package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// warmed waits for alice's function to have n warm instances, and returns
// them, oldest first.
func warmed(t *testing.T, r *rig, fn string, n int) []Instance {
	t.Helper()
	var in []Instance
	eventually(t, fmt.Sprintf("%d warm instances of %s", n, fn), func() bool {
		var err error
		in, err = r.alice.Instances(t.Context(), fn)
		return err == nil && len(in) == n
	})
	return in
}

// queued is how many calls wait in the queue of alice's fn@rev.
func queued(r *rig, fn string, rev int) int {
	p := r.g.pools.lookup(poolKey{"alice", fn, rev})
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// meter answers calls after a gate opens, counting each instance's
// calls at once and their most.
type meter struct {
	mu       sync.Mutex
	now, top map[string]int
	order    []string // the stdin of each call, in the order they were sent
	gate     chan struct{}
}

func newMeter(f *fakeRunner) *meter {
	m := &meter{now: map[string]int{}, top: map[string]int{}, gate: make(chan struct{})}
	f.setCalls(func(ctx context.Context, c fakeCall) (*types.CallReply, error) {
		m.mu.Lock()
		m.now[c.Job]++
		m.top[c.Job] = max(m.top[c.Job], m.now[c.Job])
		m.order = append(m.order, string(c.Req.Stdin))
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			m.now[c.Job]--
			m.mu.Unlock()
		}()
		select {
		case <-m.gate:
			return answer("ok " + string(c.Req.Stdin)), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	return m
}

func (m *meter) open() { close(m.gate) }

func (m *meter) snapshot() (now, top map[string]int, order []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now, top = map[string]int{}, map[string]int{}
	for k, v := range m.now {
		now[k] = v
	}
	for k, v := range m.top {
		top[k] = v
	}
	return now, top, append([]string(nil), m.order...)
}

// async makes n async calls of alice's fn, with stdin "0", "1", ...
func async(t *testing.T, r *rig, fn string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		task, err := r.alice.InvokeAsync(t.Context(), fn, Call{Body: strings.NewReader(fmt.Sprint(i))})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		ids = append(ids, task.ID)
	}
	return ids
}

// TestDispatchLeastBusy: calls spread over the instances, the least busy
// first, never more on one than its concurrency; the rest wait in the
// queue until a slot frees.
func TestDispatchLeastBusy(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 2, MaxInstances: 2, Concurrency: 2}})
	warmed(t, r, "f", 2)
	m := newMeter(r.f)
	ids := async(t, r, "f", 4)
	callsIn(t, r.f, 4)
	if now, _, _ := m.snapshot(); now["job-1"] != 2 || now["job-2"] != 2 {
		t.Fatalf("calls on each instance %v, want 2 and 2", now)
	}
	ids = append(ids, async(t, r, "f", 3)...)
	eventually(t, "3 calls queued", func() bool { return queued(r, "f", 1) == 3 })
	if n := len(r.f.callsMade()); n != 4 {
		t.Fatalf("%d calls sent with every slot taken, want 4", n)
	}
	m.open()
	for _, id := range ids {
		taskIn(t, r.alice, id, TaskCompleted)
	}
	if _, top, _ := m.snapshot(); top["job-1"] > 2 || top["job-2"] > 2 {
		t.Fatalf("most calls at once on an instance %v, over its concurrency 2", top)
	}
	if n := r.f.submissions(); n != 2 {
		t.Errorf("%d instances, want max_instances 2", n)
	}
}

// TestQueueFull: a call finding the queue full is refused at once (429,
// Retry-After); the calls queued before it are all served, first come
// first served.
func TestQueueFull(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 1, MaxInstances: 1, Concurrency: 1, MaxQueue: 3}})
	warmed(t, r, "f", 1)
	m := newMeter(r.f)
	var ids []string
	for i := range 4 { // one in flight, three queued
		ids = append(ids, async(t, r, "f", 1)[0])
		if i == 0 {
			callsIn(t, r.f, 1)
		} else {
			eventually(t, "queued", func() bool { return queued(r, "f", 1) == i })
		}
	}
	_, err := r.alice.Invoke(t.Context(), "f", Call{Body: strings.NewReader("refused")})
	var retry api.Retryer
	if !errors.Is(err, api.ErrTooManyRequests) || !errors.As(err, &retry) || retry.RetryAfter() < time.Second ||
		!strings.Contains(err.Error(), "queue") {
		t.Fatalf("a call on a full queue: %v, want 429 with Retry-After", err)
	}
	if n := queued(r, "f", 1); n != 3 {
		t.Fatalf("%d calls queued after a refusal, want the 3", n)
	}
	m.open()
	for _, id := range ids {
		taskIn(t, r.alice, id, TaskCompleted)
	}
	if n := len(r.f.callsMade()); n != 4 {
		t.Errorf("%d calls sent, want the 4 accepted", n)
	}
	for i, c := range r.f.callsMade() {
		if c.Req.Env["CONTENT_LENGTH"] != "1" {
			t.Errorf("call %d: the refused call was sent", i)
		}
	}
}

// TestQueueIsFIFO: queued calls are served in the order they came as
// slots free.
func TestQueueIsFIFO(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 1, MaxInstances: 1, Concurrency: 1}})
	warmed(t, r, "f", 1)
	m := newMeter(r.f)
	var ids []string
	for i := range 6 {
		task, err := r.alice.InvokeAsync(t.Context(), "f", Call{Body: strings.NewReader(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
		if i == 0 {
			callsIn(t, r.f, 1)
		} else {
			eventually(t, "queued in order", func() bool { return queued(r, "f", 1) == i })
		}
	}
	m.open()
	for _, id := range ids {
		taskIn(t, r.alice, id, TaskCompleted)
	}
	if _, _, order := m.snapshot(); strings.Join(order, ",") != "0,1,2,3,4,5" {
		t.Fatalf("calls sent in the order %v, want 0 to 5", order)
	}
}

// TestQueuedCallerLeaves: a caller that leaves while queued takes no
// slot: the next calls are served and the instance ends with none in
// flight.
func TestQueuedCallerLeaves(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 1, MaxInstances: 1, Concurrency: 1}})
	warmed(t, r, "f", 1)
	m := newMeter(r.f)
	first := async(t, r, "f", 1)[0]
	callsIn(t, r.f, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := r.alice.Invoke(ctx, "f", Call{})
		done <- err
	}()
	eventually(t, "the second call queued", func() bool { return queued(r, "f", 1) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that left: %v", err)
	}
	if n := queued(r, "f", 1); n != 0 {
		t.Fatalf("%d calls queued after the caller left", n)
	}
	m.open()
	taskIn(t, r.alice, first, TaskCompleted)
	for range 3 {
		if _, err := r.alice.Invoke(t.Context(), "f", Call{}); err != nil {
			t.Fatal(err)
		}
	}
	if in := warmed(t, r, "f", 1); in[0].InFlight != 0 || in[0].Calls != 4 {
		t.Fatalf("instance %+v, want 4 calls and none in flight", in[0])
	}
	if n := len(r.f.callsMade()); n != 4 {
		t.Errorf("%d calls sent, want 4 (not the one whose caller left)", n)
	}
}

// twoWarm deploys f and waits for job-1 then job-2 to be warm, in that
// order: a call goes to job-1 first (ties go to the older).
func twoWarm(t *testing.T, r *rig) {
	t.Helper()
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 1, MaxInstances: 2}})
	warmed(t, r, "f", 1)
	if _, err := r.alice.SetScaling(t.Context(), "f", Scaling{MinInstances: 2, MaxInstances: 2}); err != nil {
		t.Fatal(err)
	}
	if in := warmed(t, r, "f", 2); in[0].Job != "job-1" || in[1].Job != "job-2" {
		t.Fatalf("instances %+v", in)
	}
}

// TestLostInstance: a call whose stream broke (the Caller's error) is
// sent to another instance (at least once); the lost instance is dropped
// and its job released.
func TestLostInstance(t *testing.T) {
	r := newRig(t)
	twoWarm(t, r)
	r.f.setCalls(func(_ context.Context, c fakeCall) (*types.CallReply, error) {
		if c.Job == "job-1" {
			return nil, errors.New("stream reset")
		}
		return answer("from " + c.Job), nil
	})
	res, err := r.alice.Invoke(t.Context(), "f", Call{})
	if err != nil || string(res.Body) != "from job-2" {
		t.Fatalf("Invoke: %+v %v, want job-2's answer", res, err)
	}
	made := r.f.callsMade()
	if len(made) != 2 || made[0].Job != "job-1" || made[1].Job != "job-2" {
		t.Fatalf("calls %+v, want job-1 then job-2", made)
	}
	if !r.f.wasCancelled("job-1") || r.f.wasCancelled("job-2") {
		t.Error("the lost instance was not released, or the good one was")
	}
	if task, _ := r.alice.GetTask(t.Context(), res.Task); task.Job != "job-2" {
		t.Errorf("task ran on %s, want job-2", task.Job)
	}
}

// TestAttemptsAreBounded: a call whose every instance is lost is sent
// maxAttempts times, then fails 502.
func TestAttemptsAreBounded(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f"})
	r.f.setCalls(func(context.Context, fakeCall) (*types.CallReply, error) { return nil, errors.New("stream reset") })
	_, err := r.alice.Invoke(t.Context(), "f", Call{})
	if !errors.Is(err, api.ErrBadGateway) || !strings.Contains(err.Error(), "lost") {
		t.Fatalf("Invoke: %v, want 502 naming the lost instance", err)
	}
	if n := len(r.f.callsMade()); n != maxAttempts {
		t.Fatalf("%d calls sent, want %d", n, maxAttempts)
	}
}

// TestRetryElsewhere: a call an instance answers busy, unknown or with
// its node's error goes to another instance; a busy one stays, the
// others are dropped.
func TestRetryElsewhere(t *testing.T) {
	for _, status := range []types.CallStatus{types.CallBusy, types.CallUnknown, types.CallNodeError} {
		t.Run(status.String(), func(t *testing.T) {
			r := newRig(t)
			twoWarm(t, r)
			r.f.setCalls(func(_ context.Context, c fakeCall) (*types.CallReply, error) {
				if c.Job == "job-1" {
					return &types.CallReply{Status: status, Error: "not here"}, nil
				}
				return answer("from " + c.Job), nil
			})
			res, err := r.alice.Invoke(t.Context(), "f", Call{})
			if err != nil || string(res.Body) != "from job-2" {
				t.Fatalf("Invoke: %+v %v, want job-2's answer", res, err)
			}
			if n := len(r.f.callsMade()); n != 2 {
				t.Fatalf("%d calls sent, want 2", n)
			}
			in, _ := r.alice.Instances(t.Context(), "f")
			if status == types.CallBusy {
				if len(in) != 2 || r.f.wasCancelled("job-1") {
					t.Errorf("instances %+v after busy: want both kept", in)
				}
				return
			}
			if slices.ContainsFunc(in, func(i Instance) bool { return i.Job == "job-1" }) || !r.f.wasCancelled("job-1") {
				t.Errorf("instances %+v after %s: want job-1 dropped and released", in, status)
			}
		})
	}
}

// TestStartFails: an instance that cannot start (no node) answers 503
// with the reason; during the backoff the next call is refused without
// another auction; after it a call tries again.
func TestStartFails(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f"})
	r.f.setPlay(func(*jobs.Spec) []api.Job { return failed("no node bid: 3 nodes declined: memory (3 nodes)") })
	_, err := r.alice.Invoke(t.Context(), "f", Call{})
	var retry api.Retryer
	if !errors.Is(err, api.ErrUnavailable) || !strings.Contains(err.Error(), "3 nodes declined") || !errors.As(err, &retry) {
		t.Fatalf("Invoke: %v, want 503 with the reason and Retry-After", err)
	}
	before := r.f.submissions()
	if _, err := r.alice.Invoke(t.Context(), "f", Call{}); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("a call in the backoff: %v", err)
	}
	if n := r.f.submissions(); n != before {
		t.Errorf("a call in the backoff started %d more instances", n-before)
	}
	r.f.setPlay(func(*jobs.Spec) []api.Job { return held() })
	eventually(t, "a call after the backoff", func() bool {
		_, err := r.alice.Invoke(t.Context(), "f", Call{})
		return err == nil
	})
}

// TestStartFailuresBackOff: a pool that keeps a minimum warm does not
// auction again at every tick while its instances cannot start.
func TestStartFailuresBackOff(t *testing.T) {
	r := newRig(t)
	var mu sync.Mutex
	var at []time.Time
	r.f.setPlay(func(*jobs.Spec) []api.Job {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		return failed("no node bid")
	})
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 1}})
	eventually(t, "three starts", func() bool { return r.f.submissions() >= 3 })
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < failBackoff*9/10 {
			t.Fatalf("start %d came %s after a failed one, within the backoff %s", i+1, gap, failBackoff)
		}
	}
}

// TestMinInstances: min_instances are warm from the deploy, before any
// call, replaced when one ends, and follow SetScaling.
func TestMinInstances(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 2}})
	warmed(t, r, "f", 2)
	if n := len(r.f.callsMade()); n != 0 {
		t.Fatalf("%d calls", n)
	}
	r.f.finish("job-1", api.Job{State: types.JobCompleted, Reason: "idle past its keep-alive"})
	eventually(t, "job-1 replaced", func() bool {
		in, _ := r.alice.Instances(t.Context(), "f")
		return len(in) == 2 && in[0].Job != "job-1" && in[1].Job != "job-1"
	})
	if _, err := r.alice.SetScaling(t.Context(), "f", Scaling{MinInstances: 3}); err != nil {
		t.Fatal(err)
	}
	warmed(t, r, "f", 3)
	if n := r.f.live(); n != 3 {
		t.Errorf("%d instance jobs running, want 3", n)
	}
}

// TestMaxInstancesUnderBurst: a burst of concurrent slow calls never
// starts more than max_instances.
func TestMaxInstancesUnderBurst(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MaxInstances: 3, Concurrency: 1}})
	m := newMeter(r.f)
	var most int
	var mu sync.Mutex
	watch := func() {
		mu.Lock()
		most = max(most, r.f.live())
		mu.Unlock()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			watch()
			_, err := r.alice.Invoke(t.Context(), "f", Call{})
			errs <- err
		})
	}
	eventually(t, "3 calls in flight, 37 queued", func() bool {
		watch()
		return len(r.f.callsMade()) == 3 && queued(r, "f", 1) == 37
	})
	// The scaler looks at this load every scaleEvery: let it look again.
	p := r.g.pools.lookup(poolKey{"alice", "f", 1})
	for range 5 {
		p.poke()
		p.step()
		watch()
	}
	m.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	watch()
	if n := r.f.submissions(); n != 3 || most > 3 {
		t.Fatalf("%d instances started, at most %d running; want max_instances 3", n, most)
	}
}

// TestScalerFollowsLoad: under a load of slow calls the scaler starts
// more instances.
func TestScalerFollowsLoad(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MaxInstances: 5, Concurrency: 2}})
	m := newMeter(r.f)
	ids := async(t, r, "f", 10)
	warmed(t, r, "f", 5)
	callsIn(t, r.f, 10)
	m.open()
	for _, id := range ids {
		taskIn(t, r.alice, id, TaskCompleted)
	}
}

// TestDeleteReleasesInstances: a deleted function's instances are
// released.
func TestDeleteReleasesInstances(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 2}})
	warmed(t, r, "f", 2)
	if err := r.alice.DeleteFunction(t.Context(), "f"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both released", func() bool { return r.f.wasCancelled("job-1") && r.f.wasCancelled("job-2") })
	eventually(t, "none running", func() bool { return r.f.live() == 0 })
	// A function deployed again under the name gets instances of its own.
	r.deploy(t, r.alice, Deploy{Name: "f"})
	if _, err := r.alice.Invoke(t.Context(), "f", Call{}); err != nil {
		t.Fatalf("a call of the function deployed again: %v", err)
	}
}

// TestCloseReleasesInstances: Close releases every instance and returns.
func TestCloseReleasesInstances(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 2}})
	r.deploy(t, r.alice, Deploy{Name: "g", Scaling: &Scaling{MinInstances: 1}})
	warmed(t, r, "f", 2)
	warmed(t, r, "g", 1)
	if err := r.g.Close(); err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"job-1", "job-2", "job-3"} {
		if !r.f.wasCancelled(job) {
			t.Errorf("%s not released", job)
		}
	}
}

// TestLostSlotNotReused: the slot of an instance found lost is not handed
// to a queued call: that call goes to a new instance.
func TestLostSlotNotReused(t *testing.T) {
	for range 20 {
		r := newRig(t)
		r.deploy(t, r.alice, Deploy{Name: "f", Scaling: &Scaling{MinInstances: 1, MaxInstances: 1, Concurrency: 1}})
		warmed(t, r, "f", 1)
		gate := make(chan struct{})
		r.f.setCalls(func(ctx context.Context, c fakeCall) (*types.CallReply, error) {
			if string(c.Req.Stdin) == "A" {
				<-gate
				return nil, errors.New("stream reset")
			}
			return answer("from " + c.Job), nil
		})
		if _, err := r.alice.InvokeAsync(t.Context(), "f", Call{Body: strings.NewReader("A")}); err != nil {
			t.Fatal(err)
		}
		callsIn(t, r.f, 1)
		b, err := r.alice.InvokeAsync(t.Context(), "f", Call{Body: strings.NewReader("B")})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "B queued", func() bool { return queued(r, "f", 1) == 1 })
		close(gate)
		taskIn(t, r.alice, b.ID, TaskCompleted)
		for _, c := range r.f.callsMade() {
			if c.Job == "job-1" && string(c.Req.Stdin) == "B" {
				t.Fatal("the queued call got the slot of the lost instance")
			}
		}
	}
}

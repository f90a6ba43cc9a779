package orchestrator

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// lateResult is a completion from a node, with its own stdout CID so the
// test can tell whose result the job kept.
func lateResult(alloc, stdout string) event {
	return func(m machine, now time.Time) {
		m.(*Job).Status(types.Status{JobID: "j1", AllocationID: types.AllocationID(alloc), State: types.AllocCompleted,
			Result: &types.Result{Stdout: stdout}}, now)
	}
}

// A node declared lost that reports completion later, while the job runs
// elsewhere and again after it completed there, is recorded in its attempt's
// notes; the job's result stays the one of the allocation that placed it.
func TestJobLateResultOfALostNodeIsRecordedNotCounted(t *testing.T) {
	spec := testSpec()
	spec.Retries = 1
	j := newTestJob(t, spec)
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1"}},
		{at: 3 * ms, ev: status("j1-a1-n1", types.AllocRunning, ""), state: types.JobRunning},
		{at: 1003 * ms, ev: lost("j1-a1-n1", "no heartbeat for 1s"), want: []string{
			"release j1-a1-n1 on n1: the requester lost contact: no heartbeat for 1s"}, state: types.JobPending},
		{at: 1103 * ms, ev: tick, want: []string{"publish j1"}, state: types.JobBidding},
		{at: 1104 * ms, ev: bid("n2", 1), want: []string{"accept j1-a2-n2 -> n2"}},
		{at: 1105 * ms, ev: confirm("j1-a2-n2", 4), want: []string{"invoke j1-a2-n2 on n2 epoch 4"}},
		{at: 1106 * ms, ev: status("j1-a2-n2", types.AllocRunning, ""), state: types.JobRunning},
		{at: 1500 * ms, ev: lateResult("j1-a1-n1", "bafy-late-n1"), state: types.JobRunning},
		{at: 1600 * ms, ev: lost("j1-a1-n1", "the old stream broke")},
		{at: 2 * time.Second, ev: lateResult("j1-a2-n2", "bafy-n2"), state: types.JobCompleted},
		{at: 3 * time.Second, ev: lateResult("j1-a1-n1", "bafy-late-n1"), state: types.JobCompleted},
	})
	info := j.Info()
	if info.Result == nil || info.Result.Stdout != "bafy-n2" || info.Node != "n2" || info.Reason != "completed on node n2 with exit code 0" {
		t.Fatalf("job kept %+v from %s: %s", info.Result, info.Node, info.Reason)
	}
	first := info.Attempts[0]
	const note = "ignored a completed status from node n1 after the attempt ended"
	if first.Outcome != OutcomeFailed || first.Reason != "lost node n1: no heartbeat for 1s" || !slices.Contains(first.Notes, note) {
		t.Fatalf("first attempt %+v", first)
	}
	if second := info.Attempts[1]; second.Outcome != OutcomeCompleted || len(second.Notes) != 0 {
		t.Fatalf("second attempt %+v", second)
	}
}

// Heartbeats repeat the running status: the job neither changes nor
// announces anything for them.
func TestJobRepeatedRunningStatusChangesNothing(t *testing.T) {
	j := newTestJob(t, testSpec())
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1"}},
		{at: 3 * ms, ev: status("j1-a1-n1", types.AllocRunning, ""), state: types.JobRunning},
	})
	before := j.Info()
	for i := range 10 {
		j.Status(types.Status{JobID: "j1", AllocationID: "j1-a1-n1", State: types.AllocRunning}, t0.Add(time.Duration(4+250*i)*ms))
	}
	if acts := j.Actions(); len(acts) != 0 {
		t.Fatalf("heartbeats asked for %v", acts)
	}
	if after := j.Info(); after.Revision != before.Revision || after.State != types.JobRunning {
		t.Fatalf("heartbeats moved the job from revision %d to %d (%s)", before.Revision, after.Revision, after.State)
	}
}

// A node that goes quiet on an open stream (cut off: no reset, no FIN) is
// declared lost once the lease passes, and the job is placed again; its
// completion, arriving later on the same stream, is recorded and not
// counted.
func TestOrchestratorDetectsASilentNodeWithinTheLease(t *testing.T) {
	net := newFakeNet(
		&fakeNode{peer: "cut", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 1, mode: silent},
		&fakeNode{peer: "steady", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 2, mode: hang},
	)
	const lease = 500 * ms
	o := startOrchestratorWith(t, net, nil, func(c *Config) { c.Lease, c.Defaults.ConfirmTimeout = lease, 2*time.Second })
	ctx := t.Context()
	info, ch := submitWatch(t, o, spec(64<<20, 1))
	waitFor(t, ch, types.JobRunning)
	began := time.Now()
	waitFor(t, ch, types.JobPending)
	took := time.Since(began)
	waitFor(t, ch, types.JobRunning)
	t.Logf("silent node declared lost after %s (lease %s); running again after %s", took, lease, time.Since(began))
	if took < lease-20*ms || took > lease+time.Second {
		t.Fatalf("lost after %s with a lease of %s", took, lease)
	}
	first := fakeAlloc(info.ID, 1, "cut")
	net.waitReleased(t, first)
	net.finishLate(first, info.ID, "bafy-late")
	const note = "ignored a completed status from node cut after the attempt ended"
	deadline := time.Now().Add(waitLimit)
	for {
		got, _ := o.Job(info.ID)
		if slices.Contains(got.Attempts[0].Notes, note) {
			if got.State != types.JobRunning || got.Result != nil || got.Node != "steady" {
				t.Fatalf("the late result moved the job: %+v", got)
			}
			if a := got.Attempts[0]; a.Outcome != OutcomeFailed || !strings.HasPrefix(a.Reason, "lost node cut: no heartbeat for 500ms") {
				t.Fatalf("first attempt %+v", a)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("late result not recorded: %+v", got.Attempts)
		}
		time.Sleep(5 * ms)
	}
	if err := o.Cancel(ctx, info.ID, "done"); err != nil {
		t.Fatal(err)
	}
	net.mu.Lock()
	defer net.mu.Unlock()
	if len(net.leases) != 2 || net.leases[0] != lease || net.leases[1] != lease {
		t.Fatalf("invocations named leases %v, want %s", net.leases, lease)
	}
}

// A live node's heartbeats keep the lease: the job stays running for
// several leases without a change of revision.
func TestOrchestratorHeartbeatsKeepTheLease(t *testing.T) {
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: hang})
	o := startOrchestratorWith(t, net, nil, func(c *Config) { c.Lease = 400 * ms })
	ctx := t.Context()
	info, ch := submitWatch(t, o, spec(64<<20, 0))
	waitFor(t, ch, types.JobRunning)
	running, _ := o.Job(info.ID)
	time.Sleep(1200 * ms) // three leases of heartbeats: what is being tested is that nothing happens
	if now, _ := o.Job(info.ID); now.State != types.JobRunning || now.Revision != running.Revision {
		t.Fatalf("after three leases of heartbeats: %s (%s), revision %d -> %d", now.State, now.Reason, running.Revision, now.Revision)
	}
	if err := o.Cancel(ctx, info.ID, ""); err != nil {
		t.Fatal(err)
	}
}

// A node thought lost may answer the release with the result it reached
// meanwhile: recorded in its attempt, never the job's result.
func TestOrchestratorRecordsALateResultFromAReleaseReply(t *testing.T) {
	net := newFakeNet(
		&fakeNode{peer: "flaky", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 1, mode: die},
		&fakeNode{peer: "steady", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 2, mode: complete},
	)
	s := spec(64<<20, 1)
	s.ID = "j-late"
	first := fakeAlloc(s.ID, 1, "flaky")
	net.replies[first] = types.Status{JobID: s.ID, AllocationID: first, State: types.AllocCompleted, Result: &types.Result{Stdout: "bafy-late"}}
	o := startOrchestratorWith(t, net, nil, func(c *Config) { c.Defaults.ConfirmTimeout = 2 * time.Second })
	_, seen := submitAndWatch(t, o, s)
	if last := seen[len(seen)-1]; last.State != types.JobCompleted || last.Result.Stdout != "bafy-steady" {
		t.Fatalf("final %+v", last)
	}
	const note = "ignored a completed status from node flaky after the attempt ended"
	deadline := time.Now().Add(waitLimit)
	for {
		got, _ := o.Job(s.ID)
		if slices.Contains(got.Attempts[0].Notes, note) {
			if got.Result.Stdout != "bafy-steady" || got.Node != "steady" {
				t.Fatalf("the late result moved the job: %+v", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("late result not recorded: %+v", got.Attempts)
		}
		time.Sleep(5 * ms)
	}
}

// A bid that arrives once its auction is over (placed, failed, waiting for
// capacity) is released at once, so its node does not hold capability for
// a job that will never come.
func TestJobReleasesABidForAnAuctionThatIsOver(t *testing.T) {
	j := newTestJob(t, testSpec())
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		{at: 2 * ms, ev: bid("n2", 1), want: []string{"release the bid for j1 on n2: the bid arrived after the window closed"}},
		{at: 3 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1"}, state: types.JobPlaced},
		{at: 4 * ms, ev: bid("n3", 1), want: []string{"release the bid for j1 on n3: the bid arrived after the auction closed"}, state: types.JobPlaced},
		{at: 5 * ms, ev: status("j1-a1-n1", types.AllocCompleted, ""), state: types.JobCompleted},
		{at: 6 * ms, ev: bid("n4", 1), want: []string{"release the bid for j1 on n4: the bid arrived after the auction closed"}, state: types.JobCompleted},
	})
}

package orchestrator

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// record snapshots a job as its Store would hold it.
func record(j *Job) Record { return Record{JobInfo: j.Info(), Spec: j.spec} }

func restored(t *testing.T, rec Record) *Job {
	t.Helper()
	j, err := RestoreJob(rec, JobConfig{Requester: "me"})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func resume(m machine, now time.Time) { m.(*Job).Resume(now) }

// A requester that restarts while its job runs invokes the same allocation
// again, with the lock's epoch, on the node's addresses from its bid.
func TestResumeRunningJobInvokesItsAllocationAgain(t *testing.T) {
	j := newTestJob(t, testSpec())
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		{at: 2 * ms, ev: confirm("j1-a1-n1", 7), want: []string{"invoke j1-a1-n1 on n1 epoch 7"}},
		{at: 3 * ms, ev: status("j1-a1-n1", types.AllocRunning, ""), state: types.JobRunning},
	})
	back := restored(t, record(j))
	back.Resume(t0.Add(time.Second))
	acts := back.Actions()
	if len(acts) != 1 {
		t.Fatalf("actions %v", actionStrings(acts))
	}
	inv, ok := acts[0].(Invoke)
	if !ok || inv.Peer != "n1" || !slices.Equal(inv.Addrs, []string{"/mem/n1"}) || inv.Invocation.Epoch != 7 ||
		inv.Invocation.AllocationID != "j1-a1-n1" || inv.Invocation.Task.Module != "bafymodule" {
		t.Fatalf("resumed with %#v", acts[0])
	}
	if back.Info().State != types.JobRunning {
		t.Fatalf("state %s", back.Info().State)
	}
	run(t, back, []step{
		{at: 2 * time.Second, ev: status("j1-a1-n1", types.AllocCompleted, ""), state: types.JobCompleted},
	})
	if info := back.Info(); info.Result == nil || len(info.Attempts) != 1 || info.Attempts[0].Outcome != OutcomeCompleted {
		t.Fatalf("after resume: %+v", info)
	}
}

// An auction cut short by the restart is lost, but not charged: a job with
// no retries still gets its auction, under a new attempt number so that no
// allocation ID is offered twice.
func TestResumeBiddingJobBidsAgainUncharged(t *testing.T) {
	j := newTestJob(t, testSpec())
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
	})
	back := restored(t, record(j))
	run(t, back, []step{
		{at: time.Second, ev: resume, want: []string{"publish j1"}, state: types.JobBidding},
		{at: time.Second + 1*ms, ev: bid("n2", 1), want: []string{"accept j1-a2-n2 -> n2"}},
		{at: time.Second + 2*ms, ev: confirm("j1-a2-n2", 3), want: []string{"invoke j1-a2-n2 on n2 epoch 3"}},
		// The late confirm of the lost auction's offer is nobody's: the
		// node's lock expires on its own.
		{at: time.Second + 3*ms, ev: confirm("j1-a1-n1", 2)},
		{at: time.Second + 4*ms, ev: status("j1-a2-n2", types.AllocFailed, "boom"), state: types.JobFailed},
	})
	info := back.Info()
	if !info.Attempts[0].Interrupted || info.Attempts[0].Outcome != OutcomeFailed || info.Attempts[1].Interrupted {
		t.Fatalf("attempts %+v", info.Attempts)
	}
	if !strings.Contains(info.Reason, "failed on node n2: boom") {
		t.Fatalf("reason %q", info.Reason)
	}
}

func TestResumePendingJobRetriesAtOnce(t *testing.T) {
	s := testSpec()
	s.Retries = 2
	j := newTestJob(t, s)
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1"}},
		{at: 3 * ms, ev: lost("j1-a1-n1", "reset"), want: []string{"release j1-a1-n1 on n1"}, state: types.JobPending},
	})
	back := restored(t, record(j))
	run(t, back, []step{
		{at: 10 * ms, ev: resume, want: []string{"publish j1"}, state: types.JobBidding},
	})
	if n := len(back.Info().Attempts); n != 2 {
		t.Fatalf("%d attempts", n)
	}
}

func TestResumeAfterTheDeadlineFailsWithIt(t *testing.T) {
	s := testSpec()
	s.Deadline = time.Minute
	j := newTestJob(t, s)
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1"}},
	})
	back := restored(t, record(j))
	run(t, back, []step{
		// Invoked again, then at once told to stop: the deadline is past.
		{at: 2 * time.Minute, ev: resume, want: []string{"invoke j1-a1-n1", "release j1-a1-n1 on n1: job deadline (1m0s) passed"}, state: types.JobFailed},
	})
}

func TestRestoreJobRefusesARecordWithoutItsSpec(t *testing.T) {
	j := newTestJob(t, testSpec())
	rec := record(j)
	rec.Spec = JobSpec{}
	if _, err := RestoreJob(rec, JobConfig{}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("no spec: %v", err)
	}
	rec.Spec = testSpec()
	rec.Spec.ID = "other"
	if _, err := RestoreJob(rec, JobConfig{}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("another job's spec: %v", err)
	}
}

// The orchestrator of a restarted requester takes its jobs back from the
// store: the running one completes on its node, a record it cannot resume
// ends failed with the reason, finished ones are left alone.
func TestOrchestratorRestoresItsJobs(t *testing.T) {
	store := &memStore{}
	first := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: hang})
	o := startOrchestrator(t, first, store)
	info, ch := submitWatch(t, o, spec(64<<20, 0))
	waitFor(t, ch, types.JobRunning)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	recs := store.latest()
	broken := recs[0]
	broken.ID, broken.Spec = "broken", JobSpec{}
	done := recs[0]
	done.ID, done.State = "done", types.JobCompleted

	second := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: complete})
	o2 := startOrchestrator(t, second, store)
	n, err := o2.Restore(t.Context(), append(recs, broken, done))
	if n != 1 || err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("restored %d: %v", n, err)
	}
	ch, err = o2.Watch(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	final := collect(t, ch)
	last := final[len(final)-1]
	if last.State != types.JobCompleted || len(last.Attempts) != 1 || last.Result == nil || last.Result.Stdout != "bafy-n1" {
		t.Fatalf("after restore: %+v", last)
	}
	if opened, _ := second.streams(); opened != 1 {
		t.Fatalf("%d invocations after the restart, want 1", opened)
	}
	if b, _ := o2.Job("broken"); b.State != types.JobFailed || !strings.Contains(b.Reason, "cannot resume") {
		t.Fatalf("unresumable record: %+v", b)
	}
	if _, ok := o2.Job("done"); ok {
		t.Fatal("a finished job was restored")
	}
}

// Submit returns once the job is saved; if it cannot be, the job is
// cancelled and the caller told.
func TestSubmitFailsWhenTheJobCannotBeSaved(t *testing.T) {
	store := &memStore{fail: errors.New("disk full")}
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: hang})
	o := startOrchestrator(t, net, store)
	info, err := o.Submit(t.Context(), spec(64<<20, 0))
	if !errors.Is(err, ErrNotSaved) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("submit: %v", err)
	}
	if got, _ := o.Job(info.ID); got.State != types.JobCancelled || !strings.Contains(got.Reason, "could not be saved") {
		t.Fatalf("job after a failed save: %+v", got)
	}
}

package orchestrator

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
	"pgregory.net/rapid"
)

// jobWatch checks a job's safety properties over a random run.
type jobWatch struct {
	t        *rapid.T
	sent     []types.AllocationID
	invoked  map[types.AllocationID]int // allocation -> attempt
	attempts map[int]bool               // attempts that invoked
	ended    map[types.AllocationID]bool
	prev     JobInfo
}

func (w *jobWatch) observe(j *Job, acts []Action) {
	info := j.Info()
	for _, act := range acts {
		w.observeAction(act, info)
		if w.prev.State.Terminal() {
			if _, ok := act.(Release); !ok {
				w.t.Fatalf("%v after the job ended", act)
			}
		}
	}
	if w.prev.State.Terminal() && info.State != w.prev.State {
		w.t.Fatalf("terminal state %s changed to %s", w.prev.State, info.State)
	}
	if info.State.Terminal() && info.Reason == "" {
		w.t.Fatalf("terminal state %s without a reason", info.State)
	}
	if (info.State == types.JobCompleted) != (info.Result != nil) {
		w.t.Fatalf("state %s with result %v", info.State, info.Result)
	}
	w.checkBudgets(j, info)
	w.checkRevision(info)
	w.prev = info
}

// observeAction checks one action; info is the job after the event that
// caused it: an invocation belongs to the attempt its node confirmed.
func (w *jobWatch) observeAction(act Action, info JobInfo) {
	switch act := act.(type) {
	case SendAccept:
		w.sent = append(w.sent, act.Accept.AllocationID)
	case Invoke:
		attempt := -1
		for _, a := range info.Attempts {
			if a.AllocationID == act.Invocation.AllocationID {
				attempt = a.Number
			}
		}
		if attempt < 0 {
			w.t.Fatalf("%v of an allocation no attempt confirmed: %+v", act, info.Attempts)
		}
		if w.attempts[attempt] {
			w.t.Fatalf("second invocation in attempt %d: %v", attempt, act)
		}
		w.attempts[attempt] = true
		w.invoked[act.Invocation.AllocationID] = attempt
	case Release:
		w.ended[act.Cancel.AllocationID] = true
	}
}

func (w *jobWatch) checkRevision(info JobInfo) {
	a, b := w.prev, info
	a.Revision, b.Revision, a.UpdatedAt, b.UpdatedAt = 0, 0, time.Time{}, time.Time{}
	if info.Revision < w.prev.Revision || (!reflect.DeepEqual(a, b) && info.Revision == w.prev.Revision) {
		w.t.Fatalf("revision %d -> %d across a change", w.prev.Revision, info.Revision)
	}
}

// checkBudgets: only failed attempts are charged, and not those a restart
// interrupted; no budget is overdrawn while the job goes on, and a finished
// job overdrew at most one, by one attempt; a job completes with a non-zero
// exit code only once no retry, or no time for one, is left.
func (w *jobWatch) checkBudgets(j *Job, info JobInfo) {
	for _, a := range info.Attempts {
		if a.Charge != "" && (a.Outcome != OutcomeFailed || a.Interrupted) {
			w.t.Fatalf("attempt %d %s (interrupted %v) charged to %s", a.Number, a.Outcome, a.Interrupted, a.Charge)
		}
	}
	over := 0
	for _, c := range []Charge{ChargeRetry, ChargeReschedule} {
		switch left := j.left(c); {
		case left < -1 || (left == -1 && !info.State.Terminal()):
			w.t.Fatalf("%d attempts charged to %s beyond its limit, job %s (%s)", -left, c, info.State, info.Reason)
		case left == -1:
			over++
		}
	}
	if over > 1 {
		w.t.Fatalf("both budgets overdrawn: %+v", info.Attempts)
	}
	if r := info.Result; r != nil && r.ExitCode != 0 && j.left(ChargeRetry) > 0 && !strings.Contains(info.Reason, "no time left to retry") {
		w.t.Fatalf("completed with exit code %d while %d retries are left: %s", r.ExitCode, j.left(ChargeRetry), info.Reason)
	}
}

// checkHeld: every allocation the job started is either the one it still
// runs, released, or reported ended by its node.
func (w *jobWatch) checkHeld(j *Job) {
	for id := range w.invoked {
		if id != j.alloc && !w.ended[id] {
			w.t.Fatalf("allocation %s was started and is neither current (%q), released nor ended", id, j.alloc)
		}
	}
}

func TestJobNeverRunsTwiceNorLeaksAnAllocation(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		spec := testSpec()
		spec.Retries = rapid.IntRange(0, 3).Draw(t, "retries")
		spec.Reschedule = rapid.IntRange(RescheduleNever, 3).Draw(t, "reschedule")
		spec.Deadline = time.Duration(rapid.IntRange(0, 20).Draw(t, "deadline")) * time.Second
		j, err := NewJob(spec, JobConfig{}, t0)
		if err != nil {
			t.Fatal(err)
		}
		w := &jobWatch{t: t, invoked: map[types.AllocationID]int{}, attempts: map[int]bool{}, ended: map[types.AllocationID]bool{}, prev: j.Info()}
		now := t0
		j.Start(now)
		w.observe(j, j.Actions())
		for range rapid.IntRange(1, 60).Draw(t, "events") {
			now = now.Add(time.Duration(rapid.IntRange(0, 1500).Draw(t, "dt")) * ms)
			randomJobEvent(t, j, w, now)
			w.observe(j, j.Actions())
			w.checkHeld(j)
		}
	})
}

func randomJobEvent(t *rapid.T, j *Job, w *jobWatch, now time.Time) {
	peer := fmt.Sprint("p", rapid.IntRange(0, 4).Draw(t, "peer"))
	alloc := allocGen().Draw(t, "alloc")
	if len(w.sent) > 0 && rapid.Bool().Draw(t, "known") {
		alloc = rapid.SampledFrom(w.sent).Draw(t, "sent")
	}
	switch rapid.IntRange(0, 10).Draw(t, "kind") {
	case 0:
		b := mkBid("j1", peer, 1, 1, 0)
		b.Allocation = allocGen().Draw(t, "bid alloc") // empty, and repeated across attempts, too
		j.Bid(b, now)
	case 1:
		j.Decline(types.Decline{JobID: "j1", Node: types.NodeID{PeerID: peer}}, now)
	case 2:
		j.Confirmed(types.Confirm{JobID: "j1", AllocationID: alloc, Epoch: 1}, now)
	case 3:
		j.Rejected(types.Reject{JobID: "j1", AllocationID: alloc}, now)
	case 4:
		randomStatus(t, j, w, alloc, now)
	case 5:
		j.NodeLost(alloc, "gone", now)
	case 6:
		j.Tick(now) // Cancel fires due deadlines first
		done := j.Done()
		if err := j.Cancel("", now); errors.Is(err, ErrJobDone) != done {
			t.Fatalf("Cancel = %v on a job done=%v", err, done)
		}
	case 7:
		j.Published(len(w.prev.Attempts), rapid.SliceOfN(peerGen(), 0, 5).Draw(t, "reached"), now)
	case 8:
		j.NotSaved(alloc, "disk full", now)
	case 9:
		j.Unanswered(alloc, "stream reset", now)
	default:
		j.Tick(now)
	}
}

func randomStatus(t *rapid.T, j *Job, w *jobWatch, alloc types.AllocationID, now time.Time) {
	states := []types.AllocationState{types.AllocLocked, types.AllocRunning, types.AllocCompleted, types.AllocFailed, types.AllocCancelled}
	s := types.Status{JobID: "j1", AllocationID: alloc, State: rapid.SampledFrom(states).Draw(t, "state")}
	if s.State == types.AllocCompleted && rapid.Bool().Draw(t, "with result") {
		s.Result = &types.Result{ExitCode: rapid.SampledFrom([]int{0, 0, 1}).Draw(t, "exit code")}
	}
	if s.State == types.AllocFailed {
		s.Fault = rapid.SampledFrom([]types.Fault{"", types.FaultProgram, types.FaultNode}).Draw(t, "fault")
	}
	if s.State.Terminal() && slices.Contains(w.sent, alloc) {
		w.ended[alloc] = true // the node says it let go
	}
	j.Status(s, now)
}

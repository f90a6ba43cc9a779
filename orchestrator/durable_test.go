package orchestrator

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// gatedStore holds every save that includes a record matching holds until
// the test opens the gate, and says when one first waits there. While fail
// is set, such saves fail instead.
type gatedStore struct {
	memStore
	holds  func(Record) bool
	held   chan struct{} // closed when a save first waits at the gate
	gate   chan struct{}
	stored chan struct{} // closed once a first save went through
	fail   error
	once   sync.Once
	first  sync.Once
}

func newGatedStore(holds func(Record) bool) *gatedStore {
	return &gatedStore{holds: holds, held: make(chan struct{}), gate: make(chan struct{}), stored: make(chan struct{})}
}

func (s *gatedStore) SaveJobs(recs []Record) error {
	if slices.ContainsFunc(recs, s.holds) {
		if s.fail != nil {
			return s.fail
		}
		s.once.Do(func() { close(s.held) })
		<-s.gate
	}
	err := s.memStore.SaveJobs(recs)
	s.first.Do(func() { close(s.stored) })
	return err
}

// publishOnceSaved holds the bid requests of net until the store saved
// its first records, the job's submission: Submit returns only then, and
// a fake node places a job at once, so the save of the submission would
// otherwise meet its placement in one batch at the gate, and Submit wait
// for the gate the test opens after it (a 30-minute hang in CI at 1052642).
func publishOnceSaved(net *fakeNet, s *gatedStore) {
	net.gate = make(chan struct{})
	go func() {
		<-s.stored
		close(net.gate)
	}()
}

// saved reports whether the store holds a record of alloc's job that
// satisfies ok.
func (s *gatedStore) saved(alloc types.AllocationID, ok func(Record) bool) bool {
	return slices.ContainsFunc(s.latest(), func(r Record) bool {
		return slices.ContainsFunc(r.Attempts, func(a Attempt) bool { return a.AllocationID == alloc }) && ok(r)
	})
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("no %s within %s", what, waitLimit)
	}
}

func placedRecord(r Record) bool { return r.State == types.JobPlaced }

// An invocation is sent only once the Store holds the record of its
// placement: a requester killed in between would otherwise auction again,
// after its restart, a job that already runs. The loop goes on meanwhile.
func TestInvokeWaitsUntilThePlacementIsSaved(t *testing.T) {
	store := newGatedStore(placedRecord)
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: complete})
	var mu sync.Mutex
	var invoked []types.AllocationID
	net.sending = func(kind types.Kind, alloc types.AllocationID) {
		if kind != types.KindInvocation {
			return
		}
		mu.Lock()
		invoked = append(invoked, alloc)
		mu.Unlock()
		if !store.saved(alloc, placedRecord) {
			t.Errorf("%s invoked before the record of its placement was saved", alloc)
		}
	}
	publishOnceSaved(net, store)
	o := startOrchestrator(t, net, store)
	info, ch := submitWatch(t, o, spec(64<<20, 0))
	waitFor(t, ch, types.JobPlaced)
	waitClosed(t, store.held, "save of the placement")
	// The loop is not held up by the disk: it still answers.
	if err := o.Cancel(t.Context(), "nope", ""); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("the loop while a save waits: %v", err)
	}
	close(store.gate)
	final := collect(t, ch)
	if last := final[len(final)-1]; last.State != types.JobCompleted || len(last.Attempts) != 1 {
		t.Fatalf("job ended %+v", last)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(invoked, fakeAlloc(info.ID, 1, "n1")) {
		t.Fatalf("invoked %v", invoked)
	}
}

// A placement that cannot be saved is not invoked: the node is told to
// drop its lock, and the attempt fails, charged to reschedule.
func TestAPlacementThatCannotBeSavedIsNotInvoked(t *testing.T) {
	store := newGatedStore(placedRecord)
	store.fail = errors.New("disk full")
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: complete})
	publishOnceSaved(net, store)
	o := startOrchestrator(t, net, store)
	s := spec(64<<20, 0)
	s.Reschedule = RescheduleNever
	info, seen := submitAndWatch(t, o, s)
	last := seen[len(seen)-1]
	const reason = "placed on node n1, not invoked: the job could not be saved: disk full; not rescheduled: the job says reschedule: never"
	if last.State != types.JobFailed || last.Reason != reason || last.Attempts[0].Charge != ChargeReschedule {
		t.Fatalf("job ended %s: %q; attempts %+v", last.State, last.Reason, last.Attempts)
	}
	alloc := fakeAlloc(info.ID, 1, "n1")
	if r := net.waitReleased(t, alloc); r[len(r)-1].Reason != "the requester could not record the placement" {
		t.Fatalf("released %+v", r)
	}
	if opened, _ := net.streams(); opened != 0 {
		t.Fatalf("%d invocations sent", opened)
	}
}

// A cancel reaches the node only once the Store holds the cancelled job: a
// requester killed in between would otherwise resume the job after its
// restart, find its allocation cancelled, and place it again.
func TestReleaseOfACancelWaitsUntilTheCancelIsSaved(t *testing.T) {
	store := newGatedStore(func(r Record) bool { return r.State == types.JobCancelled })
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: hang})
	s := spec(64<<20, 0)
	s.ID = "j-cancel"
	alloc := fakeAlloc(s.ID, 1, "n1")
	net.sending = func(kind types.Kind, id types.AllocationID) {
		if kind == types.KindCancel && id == alloc && !store.saved(id, func(r Record) bool { return r.State == types.JobCancelled }) {
			t.Errorf("%s released before the cancel was saved", id)
		}
	}
	o := startOrchestrator(t, net, store)
	info, ch := submitWatch(t, o, s)
	waitFor(t, ch, types.JobRunning)
	if err := o.Cancel(t.Context(), info.ID, "no longer needed"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, store.held, "save of the cancel")
	close(store.gate)
	if r := net.waitReleased(t, alloc); !strings.Contains(r[len(r)-1].Reason, "no longer needed") {
		t.Fatalf("released %+v", r)
	}
}

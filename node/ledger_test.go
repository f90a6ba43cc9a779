package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func res(cores float64, mem types.Bytes) types.Resources {
	return types.Resources{CPU: types.MilliCPU(cores * 1000), Memory: mem}
}

const gib = types.Bytes(1 << 30)

func newTestLedger() *Ledger { return NewLedger(res(4, 8*gib)) }

func mustLock(t *testing.T, l *Ledger, alloc types.AllocationID, job types.JobID, r types.Resources, now time.Time) Lock {
	t.Helper()
	lk, err := l.Lock(alloc, job, "peer", r, now, time.Minute)
	if err != nil {
		t.Fatalf("Lock(%s): %v", alloc, err)
	}
	return lk
}

func TestLedgerHold(t *testing.T) {
	l := newTestLedger()
	if err := l.Hold("a", res(3, 6*gib), t0, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	err := l.Hold("b", res(2, 1*gib), t0, t0.Add(time.Second))
	if !errors.Is(err, ErrInsufficientCapability) || !strings.Contains(err.Error(), "cpu: need 2 cores, available 1 core") {
		t.Fatalf("second hold: %v", err)
	}
	// Re-hold replaces: growing a's hold counts the old one as free.
	if err := l.Hold("a", res(4, 8*gib), t0, t0.Add(time.Second)); err != nil {
		t.Fatalf("re-hold: %v", err)
	}
	if got := l.Available(t0); !got.IsZero() {
		t.Fatalf("available after full hold = %v", got)
	}
	// The hold ends at until, before Expire runs.
	if got := l.Available(t0.Add(time.Second)); got != l.Registered() {
		t.Fatalf("available after the hold ended = %v", got)
	}
	l.DropHold("a")
	if got := l.Used(t0); !got.IsZero() {
		t.Fatalf("used after DropHold = %v", got)
	}
}

func TestLedgerFailedReholdKeepsOld(t *testing.T) {
	l := newTestLedger()
	if err := l.Hold("a", res(1, gib), t0, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := l.Hold("a", res(5, gib), t0, t0.Add(time.Second)); !errors.Is(err, ErrInsufficientCapability) {
		t.Fatalf("oversized re-hold: %v", err)
	}
	if got := l.Used(t0); got != res(1, gib) {
		t.Fatalf("used = %v, want the old hold", got)
	}
}

func TestLedgerInvalidReservation(t *testing.T) {
	l := newTestLedger()
	neg := types.Resources{CPU: -1}
	cases := map[string]error{
		"hold negative":    l.Hold("a", neg, t0, t0.Add(time.Second)),
		"hold no job":      l.Hold("", res(1, 0), t0, t0.Add(time.Second)),
		"hold ends at now": l.Hold("a", res(1, 0), t0, t0),
	}
	_, cases["lock negative"] = l.Lock("x", "a", "p", neg, t0, time.Second)
	_, cases["lock zero ttl"] = l.Lock("x", "a", "p", res(1, 0), t0, 0)
	_, cases["lock no alloc"] = l.Lock("", "a", "p", res(1, 0), t0, time.Second)
	for name, err := range cases {
		if !errors.Is(err, ErrInvalidReservation) {
			t.Errorf("%s: %v, want ErrInvalidReservation", name, err)
		}
	}
	if len(l.Locks()) != 0 || !l.Used(t0).IsZero() {
		t.Fatal("an invalid request changed the ledger")
	}
}

func TestLedgerLockConsumesHoldAndRechecks(t *testing.T) {
	l := newTestLedger()
	if err := l.Hold("a", res(3, 4*gib), t0, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Another job cannot lock through a's hold.
	if _, err := l.Lock("x", "b", "p", res(2, gib), t0, time.Minute); !errors.Is(err, ErrInsufficientCapability) {
		t.Fatalf("lock over a hold: %v", err)
	}
	lk := mustLock(t, l, "y", "a", res(3, 4*gib), t0)
	if lk.Epoch != 1 || !lk.Expiry.Equal(t0.Add(time.Minute)) || lk.Running {
		t.Fatalf("lock = %+v", lk)
	}
	if got := l.Used(t0); got != res(3, 4*gib) {
		t.Fatalf("used = %v: the hold was not consumed", got)
	}
	if _, err := l.Lock("y", "a", "p", res(1, 0), t0, time.Minute); !errors.Is(err, ErrDuplicateAllocation) {
		t.Fatalf("duplicate: %v", err)
	}
	if lk2 := mustLock(t, l, "z", "b", res(1, 0), t0); lk2.Epoch != 2 || l.Epoch() != 2 {
		t.Fatalf("second epoch = %d, ledger epoch %d", lk2.Epoch, l.Epoch())
	}
}

func TestLedgerStart(t *testing.T) {
	l := newTestLedger()
	lk := mustLock(t, l, "x", "a", res(1, gib), t0)
	if _, err := l.Start("nope", lk.Epoch, t0); !errors.Is(err, ErrUnknownAllocation) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := l.Start("x", lk.Epoch+1, t0); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("stale: %v", err)
	}
	run, err := l.Start("x", lk.Epoch, t0.Add(time.Second))
	if err != nil || !run.Running || !run.Expiry.IsZero() {
		t.Fatalf("start = %+v, %v", run, err)
	}
	if _, err := l.Start("x", lk.Epoch, t0); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second start: %v", err)
	}
	// Running allocations never expire.
	if dropped := l.Expire(t0.Add(24 * time.Hour)); len(dropped) != 0 {
		t.Fatalf("expired a running lock: %+v", dropped)
	}
}

func TestLedgerStartExpired(t *testing.T) {
	l := newTestLedger()
	lk := mustLock(t, l, "x", "a", res(1, gib), t0)
	if _, err := l.Start("x", lk.Epoch, lk.Expiry); !errors.Is(err, ErrLockExpired) {
		t.Fatalf("start at expiry: %v", err)
	}
	if len(l.Locks()) != 0 {
		t.Fatal("the expired lock was not dropped")
	}
	if _, err := l.Start("x", lk.Epoch, t0); !errors.Is(err, ErrUnknownAllocation) {
		t.Fatalf("start after drop: %v", err)
	}
}

func TestLedgerReleaseAndExpire(t *testing.T) {
	l := newTestLedger()
	mustLock(t, l, "b", "j1", res(1, gib), t0)
	mustLock(t, l, "a", "j2", res(1, gib), t0)
	mustLock(t, l, "c", "j3", res(1, gib), t0.Add(time.Hour))
	if err := l.Hold("j4", res(1, 0), t0, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if lk, ok := l.Release("c"); !ok || lk.JobID != "j3" {
		t.Fatalf("release = %+v, %v", lk, ok)
	}
	if _, ok := l.Release("c"); ok {
		t.Fatal("released twice")
	}
	dropped := l.Expire(t0.Add(time.Minute))
	if len(dropped) != 2 || dropped[0].AllocationID != "a" || dropped[1].AllocationID != "b" {
		t.Fatalf("dropped = %+v", dropped)
	}
	if len(l.holds) != 0 || len(l.Locks()) != 0 {
		t.Fatalf("left after Expire: holds %v, locks %v", l.holds, l.Locks())
	}
}

func TestLedgerLoweredOffer(t *testing.T) {
	l := newTestLedger()
	mustLock(t, l, "x", "a", res(3, 6*gib), t0)
	l.SetRegistered(res(2, 8*gib))
	if got := l.Available(t0); got.CPU != 0 || got.Memory != 2*gib {
		t.Fatalf("available = %v, want no cpu and 2 GiB", got)
	}
	// Even a job that needs no cpu is refused while cpu is over the offer.
	err := l.Hold("b", res(0, gib), t0, t0.Add(time.Second))
	if !errors.Is(err, ErrInsufficientCapability) || !strings.Contains(err.Error(), "cpu: in use is over the offer by 1 core") {
		t.Fatalf("hold while over the offer: %v", err)
	}
	l.SetRegistered(res(4, 8*gib))
	if err := l.Hold("b", res(1, gib), t0, t0.Add(time.Second)); err != nil {
		t.Fatalf("hold after raising the offer: %v", err)
	}
}

func TestLedgerRestore(t *testing.T) {
	l := newTestLedger()
	mustLock(t, l, "old", "a", res(1, gib), t0.Add(-time.Hour)) // expired by t0
	mustLock(t, l, "live", "b", res(1, gib), t0)
	run := mustLock(t, l, "run", "c", res(1, gib), t0.Add(-time.Hour))
	if _, err := l.Start("run", run.Epoch, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.Hold("d", res(1, 0), t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	saved := l.Locks()

	r := newTestLedger()
	r.Restore(saved, 1, t0)
	got := r.Locks()
	if len(got) != 2 || got[0].AllocationID != "live" || got[1].AllocationID != "run" || !got[1].Running {
		t.Fatalf("restored = %+v", got)
	}
	if r.Used(t0) != res(2, 2*gib) {
		t.Fatalf("used = %v: holds must not survive a restart", r.Used(t0))
	}
	if next := mustLock(t, r, "new", "e", res(1, 0), t0); next.Epoch != run.Epoch+1 {
		t.Fatalf("epoch after restore = %d, want %d", next.Epoch, run.Epoch+1)
	}
	r.Restore(nil, 10, t0)
	if next := mustLock(t, r, "new", "e", res(1, 0), t0); next.Epoch != 11 {
		t.Fatalf("epoch after restore at 10 = %d", next.Epoch)
	}
}

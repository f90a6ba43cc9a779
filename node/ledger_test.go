package node

import (
	"errors"
	"fmt"
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

// hold asks l for a hold of alloc, for job, by requester, for a second.
func hold(l *Ledger, alloc types.AllocationID, job types.JobID, requester string, r types.Resources, now time.Time) ([]Hold, error) {
	return l.Hold(Hold{Allocation: alloc, JobID: job, Requester: requester, Resources: r, Until: now.Add(time.Second)}, now)
}

// holdLock holds r for alloc and locks it at once, for ttl.
func holdLock(t testing.TB, l *Ledger, alloc types.AllocationID, job types.JobID, requester string, r types.Resources, now time.Time, ttl time.Duration) Lock {
	t.Helper()
	if _, err := hold(l, alloc, job, requester, r, now); err != nil {
		t.Fatalf("Hold(%s): %v", alloc, err)
	}
	lk, err := l.Lock(alloc, now, ttl)
	if err != nil {
		t.Fatalf("Lock(%s): %v", alloc, err)
	}
	return lk
}

func mustLock(t *testing.T, l *Ledger, alloc types.AllocationID, job types.JobID, r types.Resources, now time.Time) Lock {
	t.Helper()
	return holdLock(t, l, alloc, job, "peer", r, now, time.Minute)
}

func TestLedgerHold(t *testing.T) {
	l := newTestLedger()
	if _, err := hold(l, "a1", "a", "p", res(2, 4*gib), t0); err != nil {
		t.Fatal(err)
	}
	_, err := hold(l, "b1", "b", "p", res(3, 1*gib), t0)
	if !errors.Is(err, ErrInsufficientCapability) || !strings.Contains(err.Error(), "cpu: need 3 cores, available 2 cores") {
		t.Fatalf("second hold: %v", err)
	}
	// A new bid of the same requester for the same job replaces its hold:
	// growing it counts the old one as free.
	if _, err := hold(l, "a2", "a", "p", res(4, 8*gib), t0); err != nil {
		t.Fatalf("re-hold: %v", err)
	}
	if _, ok := l.HoldOf("a1"); ok {
		t.Fatal("the replaced hold is still there")
	}
	if got := l.Available(t0); !got.IsZero() {
		t.Fatalf("available after full hold = %v", got)
	}
	// The hold ends at Until, before Expire runs.
	if got := l.Available(t0.Add(time.Second)); got != l.Registered() {
		t.Fatalf("available after the hold ended = %v", got)
	}
	l.DropHold("a2")
	if got := l.Used(t0); !got.IsZero() {
		t.Fatalf("used after DropHold = %v", got)
	}
}

// Another requester naming the same job ID gets a hold of its own, or
// none: it never replaces nor drops the first requester's.
func TestLedgerOtherRequesterCannotTouchAHold(t *testing.T) {
	l := newTestLedger()
	if _, err := hold(l, "v1", "job", "victim", res(1, gib), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := hold(l, "x1", "job", "attacker", res(1, gib), t0); err != nil {
		t.Fatal(err)
	}
	if n := l.DropHolds("attacker", "job"); n != 1 {
		t.Fatalf("the attacker dropped %d holds, want its own 1", n)
	}
	if h, ok := l.HoldOf("v1"); !ok || h.Requester != "victim" {
		t.Fatalf("the victim's hold: %+v, %v", h, ok)
	}
	// Nor can it reuse the victim's allocation ID.
	if _, err := hold(l, "v1", "job", "attacker", res(1, gib), t0); !errors.Is(err, ErrDuplicateAllocation) {
		t.Fatalf("a hold under the victim's ID: %v", err)
	}
}

func TestLedgerFailedReholdKeepsOld(t *testing.T) {
	l := newTestLedger()
	if _, err := hold(l, "a1", "a", "p", res(1, gib), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := hold(l, "a2", "a", "p", res(5, gib), t0); !errors.Is(err, ErrInsufficientCapability) {
		t.Fatalf("oversized re-hold: %v", err)
	}
	if got := l.Used(t0); got != res(1, gib) {
		t.Fatalf("used = %v, want the old hold", got)
	}
}

func TestLedgerInvalidReservation(t *testing.T) {
	l := newTestLedger()
	neg := types.Resources{CPU: -1}
	_, holdNeg := hold(l, "x", "a", "p", neg, t0)
	_, holdNoJob := hold(l, "x", "", "p", res(1, 0), t0)
	_, holdNoID := hold(l, "", "a", "p", res(1, 0), t0)
	_, holdNoRequester := hold(l, "x", "a", "", res(1, 0), t0)
	_, holdEnds := l.Hold(Hold{Allocation: "x", JobID: "a", Requester: "p", Resources: res(1, 0), Until: t0}, t0)
	cases := map[string]error{
		"hold negative": holdNeg, "hold no job": holdNoJob, "hold no alloc": holdNoID,
		"hold no requester": holdNoRequester, "hold ends at now": holdEnds,
	}
	if _, err := hold(l, "x", "a", "p", res(1, 0), t0); err != nil {
		t.Fatal(err)
	}
	_, cases["lock zero ttl"] = l.Lock("x", t0, 0)
	for name, err := range cases {
		if !errors.Is(err, ErrInvalidReservation) {
			t.Errorf("%s: %v, want ErrInvalidReservation", name, err)
		}
	}
	if len(l.Locks()) != 0 || l.Used(t0) != res(1, 0) {
		t.Fatal("an invalid request changed the ledger")
	}
}

// There is no lock without a bid: Lock needs a live hold, and takes its
// job, requester and resources.
func TestLedgerLockNeedsAHold(t *testing.T) {
	l := newTestLedger()
	if _, err := l.Lock("never-bid", t0, time.Minute); !errors.Is(err, ErrNoHold) {
		t.Fatalf("lock without a hold: %v", err)
	}
	if _, err := hold(l, "a1", "a", "p", res(3, 4*gib), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Lock("a1", t0.Add(time.Second), time.Minute); !errors.Is(err, ErrNoHold) {
		t.Fatalf("lock after the hold ended: %v", err)
	}
	lk, err := l.Lock("a1", t0, time.Minute)
	if err != nil || lk.Epoch != 1 || lk.JobID != "a" || lk.Requester != "p" || lk.Resources != res(3, 4*gib) || !lk.Expiry.Equal(t0.Add(time.Minute)) {
		t.Fatalf("lock = %+v, %v", lk, err)
	}
	if got := l.Used(t0); got != res(3, 4*gib) {
		t.Fatalf("used = %v: the hold was not consumed", got)
	}
	if _, err := l.Lock("a1", t0, time.Minute); !errors.Is(err, ErrDuplicateAllocation) {
		t.Fatalf("duplicate: %v", err)
	}
	if lk2 := mustLock(t, l, "z", "b", res(1, 0), t0); lk2.Epoch != 2 || l.Epoch() != 2 {
		t.Fatalf("second epoch = %d, ledger epoch %d", lk2.Epoch, l.Epoch())
	}
	// Undo puts the hold back as it was; the epoch stays used.
	l.Undo(Hold{Allocation: "z", JobID: "b", Requester: "peer", Resources: res(1, 0), Until: t0.Add(time.Second)})
	if lk3, err := l.Lock("z", t0, time.Minute); err != nil || lk3.Epoch != 3 {
		t.Fatalf("lock after undo = %+v, %v", lk3, err)
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
	if _, ok := l.Penalized("peer", lk.Expiry); !ok {
		t.Fatal("a lock left to expire did not penalize its requester")
	}
}

func TestLedgerReleaseAndExpire(t *testing.T) {
	l := newTestLedger()
	mustLock(t, l, "b", "j1", res(1, gib), t0)
	mustLock(t, l, "a", "j2", res(1, gib), t0)
	mustLock(t, l, "c", "j3", res(1, gib), t0.Add(time.Hour))
	if _, err := hold(l, "d", "j4", "p", res(1, 0), t0); err != nil {
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
	// The penalty of the two expired locks ends, and is forgotten.
	l.Expire(t0.Add(time.Hour))
	if len(l.penalized) != 0 {
		t.Fatalf("penalties left: %v", l.penalized)
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
	_, err := hold(l, "b1", "b", "p", res(0, gib), t0)
	if !errors.Is(err, ErrInsufficientCapability) || !strings.Contains(err.Error(), "cpu: in use is over the offer by 1 core") {
		t.Fatalf("hold while over the offer: %v", err)
	}
	l.SetRegistered(res(4, 8*gib))
	if _, err := hold(l, "b1", "b", "p", res(1, gib), t0); err != nil {
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
	if _, err := hold(l, "d", "d", "p", res(1, 0), t0); err != nil {
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

// Holds are bounded in number: per requester, and in all, where the
// requester with the most holds gives one up to a requester with fewer.
func TestLedgerHoldCounts(t *testing.T) {
	l := NewLedger(res(1000, 1000*gib))
	l.SetPolicy(HoldPolicy{PerRequester: 3, Total: 5})
	small := res(0.001, 1)
	for i := range 3 {
		if _, err := hold(l, types.AllocationID(fmt.Sprint("f", i)), types.JobID(fmt.Sprint("j", i)), "flooder", small, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hold(l, "f3", "j3", "flooder", small, t0); !errors.Is(err, ErrTooManyHolds) {
		t.Fatalf("a 4th hold of one requester: %v", err)
	}
	for i := range 2 {
		if _, err := hold(l, types.AllocationID(fmt.Sprint("o", i)), "j", fmt.Sprint("other", i), small, t0); err != nil {
			t.Fatal(err)
		}
	}
	// Full: a newcomer takes the newest hold of the requester with the most.
	evicted, err := hold(l, "n", "j", "newcomer", small, t0)
	if err != nil || len(evicted) != 1 || evicted[0].Allocation != "f2" {
		t.Fatalf("a newcomer on a full node: evicted %+v, %v", evicted, err)
	}
	// Now every requester has at most 2: no one has more than one more.
	if _, err := hold(l, "o9", "j9", "other0", small, t0); !errors.Is(err, ErrTooManyHolds) {
		t.Fatalf("a hold when no requester has 2 more than the asker: %v", err)
	}
	if n, _ := l.Held(t0); n != 5 {
		t.Fatalf("%d holds, want the 5 the node keeps", n)
	}
}

// A flood of holds from one requester leaves room for another: within
// its share, the other requester's bid evicts the flooder's holds beyond
// the flooder's share, newest first.
func TestLedgerFairShareUnderFlood(t *testing.T) {
	l := NewLedger(res(16, 32*gib)) // default policy: a share of half
	per := res(1, 2*gib)
	held := 0
	for i := range 100 {
		_, err := hold(l, types.AllocationID(fmt.Sprint("f", i)), types.JobID(fmt.Sprint("j", i)), "flooder", per, t0)
		if err == nil {
			held++
		}
	}
	t.Logf("flooder: %d of 100 holds granted on an idle node of 16 cores", held)
	if held != 16 {
		t.Fatalf("work conserving: the flooder should fill the idle node, got %d", held)
	}
	granted := 0
	for i := range 10 {
		evicted, err := hold(l, types.AllocationID(fmt.Sprint("v", i)), types.JobID(fmt.Sprint("v", i)), "victim", per, t0)
		if err != nil {
			if i < 8 {
				t.Fatalf("victim's hold %d within its share refused: %v", i, err)
			}
			if !errors.Is(err, ErrOverShare) {
				t.Fatalf("victim's hold %d beyond its share: %v, want ErrOverShare", i, err)
			}
			continue
		}
		granted++
		if len(evicted) != 1 || evicted[0].Requester != "flooder" || evicted[0].Allocation != types.AllocationID(fmt.Sprint("f", 15-i)) {
			t.Fatalf("victim's hold %d evicted %+v, want the flooder's newest", i, evicted)
		}
	}
	claims := l.claims(t0, "")
	t.Logf("victim: %d of 10 holds granted; claims now flooder %s, victim %s", granted, claims["flooder"], claims["victim"])
	if granted != 8 || claims["flooder"] != res(8, 16*gib) {
		t.Fatalf("victim got %d, flooder keeps %s: want 8 and its share", granted, claims["flooder"])
	}
	// The flooder, at its share, can evict nothing back.
	if _, err := hold(l, "f100", "j100", "flooder", per, t0); !errors.Is(err, ErrOverShare) {
		t.Fatalf("the flooder beyond its share on a full node: %v", err)
	}
}

// Locks are never evicted, and a requester whose locks expired unused
// loses its room beyond its share, for a while.
func TestLedgerPenaltyAndLocksStay(t *testing.T) {
	l := NewLedger(res(4, 8*gib))
	lk := holdLock(t, l, "l1", "j1", "abuser", res(2, 4*gib), t0, time.Second)
	if _, err := hold(l, "v1", "v", "victim", res(3, gib), t0); !errors.Is(err, ErrInsufficientCapability) {
		t.Fatalf("a hold that only evicting a lock would fit: %v", err)
	}
	l.Expire(lk.Expiry)
	until, ok := l.Penalized("abuser", lk.Expiry)
	if !ok || !until.Equal(lk.Expiry.Add(time.Minute)) {
		t.Fatalf("penalty until %v, %v", until, ok)
	}
	// On an idle node, the abuser may not go beyond its share ...
	if _, err := hold(l, "a1", "j2", "abuser", res(3, gib), lk.Expiry); !errors.Is(err, ErrOverShare) || !strings.Contains(err.Error(), "let locks expire") {
		t.Fatalf("a penalized requester beyond its share: %v", err)
	}
	// ... within it, it may; and once the penalty ends, beyond it again.
	if _, err := hold(l, "a2", "j2", "abuser", res(2, gib), lk.Expiry); err != nil {
		t.Fatal(err)
	}
	if _, err := hold(l, "a3", "j2", "abuser", res(3, gib), until); err != nil {
		t.Fatalf("after the penalty: %v", err)
	}
}

// A request that does not fit and whose requester would go over its
// share is refused without evicting anything.
func TestLedgerNoEvictionForAnOverShareRequest(t *testing.T) {
	l := NewLedger(res(4, 8*gib))
	if _, err := hold(l, "f1", "j", "flooder", res(4, 2*gib), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := hold(l, "b1", "big", "other", res(3, gib), t0); !errors.Is(err, ErrOverShare) {
		t.Fatalf("a request over the share on a busy node: %v", err)
	}
	if _, ok := l.HoldOf("f1"); !ok {
		t.Fatal("a refused request evicted a hold")
	}
}

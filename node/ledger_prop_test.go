package node

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/opendms/dms/types"
)

// ledgerModel is a naive re-implementation of the Ledger: one flat list of
// holds and locks, scanned in full by every operation.
type ledgerModel struct {
	registered types.Resources
	entries    []modelEntry
	epoch      uint64
}

type modelEntry struct {
	isHold  bool
	job     types.JobID
	alloc   types.AllocationID
	r       types.Resources
	end     time.Time // a hold's until, a lock's expiry; zero once running
	running bool
	epoch   uint64
}

func (e modelEntry) counts(now time.Time) bool { return e.running || now.Before(e.end) }

func (m *ledgerModel) usage(now time.Time, skipHold types.AllocationID) types.Resources {
	var u types.Resources
	for _, e := range m.entries {
		if e.counts(now) && !(e.isHold && e.alloc == skipHold) {
			u = u.Add(e.r)
		}
	}
	return u
}

func (m *ledgerModel) available(now time.Time) types.Resources {
	a := m.registered.Sub(m.usage(now, ""))
	if a.CPU < 0 {
		a.CPU = 0
	}
	if a.Memory < 0 {
		a.Memory = 0
	}
	if a.Disk < 0 {
		a.Disk = 0
	}
	if a.GPUs < 0 {
		a.GPUs = 0
	}
	return a
}

func (m *ledgerModel) keep(pred func(modelEntry) bool) {
	m.entries = slices.DeleteFunc(m.entries, func(e modelEntry) bool { return !pred(e) })
}

func (m *ledgerModel) dropHoldOf(job types.JobID) {
	m.keep(func(e modelEntry) bool { return !e.isHold || e.job != job })
}

func (m *ledgerModel) dropHold(alloc types.AllocationID) {
	m.keep(func(e modelEntry) bool { return !e.isHold || e.alloc != alloc })
}

func (m *ledgerModel) lockIndex(alloc types.AllocationID) int {
	return slices.IndexFunc(m.entries, func(e modelEntry) bool { return !e.isHold && e.alloc == alloc })
}

func (m *ledgerModel) holdIndex(alloc types.AllocationID) int {
	return slices.IndexFunc(m.entries, func(e modelEntry) bool { return e.isHold && e.alloc == alloc })
}

// hold: one requester has one hold per job; a new one replaces it.
func (m *ledgerModel) hold(alloc types.AllocationID, job types.JobID, r types.Resources, now, until time.Time) error {
	if m.lockIndex(alloc) >= 0 || m.holdIndex(alloc) >= 0 {
		return ErrDuplicateAllocation
	}
	var old types.AllocationID
	if i := slices.IndexFunc(m.entries, func(e modelEntry) bool { return e.isHold && e.job == job }); i >= 0 {
		old = m.entries[i].alloc
	}
	if !m.usage(now, old).Add(r).Fits(m.registered) {
		return ErrInsufficientCapability
	}
	m.dropHoldOf(job)
	m.entries = append(m.entries, modelEntry{isHold: true, job: job, alloc: alloc, r: r, end: until})
	return nil
}

// lock turns the live hold of alloc into a lock.
func (m *ledgerModel) lock(alloc types.AllocationID, now time.Time, ttl time.Duration) error {
	if m.lockIndex(alloc) >= 0 {
		return ErrDuplicateAllocation
	}
	i := m.holdIndex(alloc)
	if i < 0 || !m.entries[i].counts(now) {
		return ErrNoHold
	}
	h := m.entries[i]
	if !m.usage(now, alloc).Add(h.r).Fits(m.registered) {
		return ErrInsufficientCapability
	}
	m.dropHold(alloc)
	m.epoch++
	m.entries = append(m.entries, modelEntry{job: h.job, alloc: alloc, r: h.r, end: now.Add(ttl), epoch: m.epoch})
	return nil
}

func (m *ledgerModel) start(alloc types.AllocationID, epoch uint64, now time.Time) error {
	i := m.lockIndex(alloc)
	switch {
	case i < 0:
		return ErrUnknownAllocation
	case m.entries[i].epoch != epoch:
		return ErrStaleEpoch
	case m.entries[i].running:
		return ErrAlreadyRunning
	case !now.Before(m.entries[i].end):
		m.entries = slices.Delete(m.entries, i, i+1)
		return ErrLockExpired
	}
	m.entries[i].running, m.entries[i].end = true, time.Time{}
	return nil
}

func (m *ledgerModel) release(alloc types.AllocationID) bool {
	i := m.lockIndex(alloc)
	if i >= 0 {
		m.entries = slices.Delete(m.entries, i, i+1)
	}
	return i >= 0
}

// expire returns the IDs of the dropped locks, sorted.
func (m *ledgerModel) expire(now time.Time) []types.AllocationID {
	var dropped []types.AllocationID
	for _, e := range m.entries {
		if !e.isHold && !e.counts(now) {
			dropped = append(dropped, e.alloc)
		}
	}
	m.keep(func(e modelEntry) bool { return e.counts(now) })
	slices.Sort(dropped)
	return dropped
}

// restart keeps what survives a restart: locks that still count.
func (m *ledgerModel) restart(now time.Time) {
	m.keep(func(e modelEntry) bool { return !e.isHold && e.counts(now) })
}

func (m *ledgerModel) locks() []Lock {
	var out []Lock
	for _, e := range m.entries {
		if !e.isHold {
			out = append(out, Lock{AllocationID: e.alloc, JobID: e.job, Requester: "req", Resources: e.r, Epoch: e.epoch, Expiry: e.end, Running: e.running})
		}
	}
	slices.SortFunc(out, func(a, b Lock) int { return strings.Compare(string(a.AllocationID), string(b.AllocationID)) })
	return out
}

// ledgerMachine drives a Ledger and the model through the same actions: many
// auctions for ten jobs at once, with a clock that only moves forward.
type ledgerMachine struct {
	l         *Ledger
	m         *ledgerModel
	now       time.Time
	overOffer bool            // the offer was lowered, and usage may not fit it yet
	issued    map[uint64]bool // every epoch handed out
	lastEpoch uint64
}

const tick = 100 * time.Millisecond

var (
	genJob = rapid.Custom(func(t *rapid.T) types.JobID {
		return types.JobID(fmt.Sprintf("job-%d", rapid.IntRange(0, 9).Draw(t, "j")))
	})
	genAlloc = rapid.Custom(func(t *rapid.T) types.AllocationID {
		return types.AllocationID(fmt.Sprintf("alloc-%02d", rapid.IntRange(0, 14).Draw(t, "a")))
	})
	genNeed = rapid.Custom(func(t *rapid.T) types.Resources {
		return types.Resources{
			CPU:    types.MilliCPU(250 * rapid.IntRange(0, 16).Draw(t, "cpu")),
			Memory: types.Bytes(512<<20) * types.Bytes(rapid.IntRange(0, 8).Draw(t, "mem")),
			Disk:   types.Bytes(256<<20) * types.Bytes(rapid.IntRange(0, 4).Draw(t, "disk")),
			GPUs:   rapid.IntRange(0, 1).Draw(t, "gpus"),
		}
	})
	// Times move in steps of 100ms so that a Start often falls exactly on an expiry.
	genTicks = rapid.Custom(func(t *rapid.T) time.Duration {
		return time.Duration(rapid.IntRange(1, 30).Draw(t, "ticks")) * tick
	})
)

func sameErr(t *rapid.T, op string, got, want error) {
	t.Helper()
	if (got == nil) != (want == nil) || (want != nil && !errors.Is(got, want)) {
		t.Fatalf("%s: ledger says %v, model says %v", op, got, want)
	}
}

// grantFits checks that a hold or lock just granted left usage within the offer.
func (s *ledgerMachine) grantFits(t *rapid.T, op string) {
	if used := s.l.Used(s.now); !used.Fits(s.l.Registered()) {
		t.Fatalf("%s granted over the offer: used %v, registered %v", op, used, s.l.Registered())
	}
}

func (s *ledgerMachine) hold(t *rapid.T) {
	alloc, job, r, until := genAlloc.Draw(t, "alloc"), genJob.Draw(t, "job"), genNeed.Draw(t, "r"), s.now.Add(genTicks.Draw(t, "for"))
	_, err := s.l.Hold(Hold{Allocation: alloc, JobID: job, Requester: "req", Resources: r, Until: until}, s.now)
	sameErr(t, "Hold", err, s.m.hold(alloc, job, r, s.now, until))
	if err == nil {
		s.grantFits(t, "Hold")
	}
}

func (s *ledgerMachine) dropHold(t *rapid.T) {
	if rapid.Bool().Draw(t, "by job") {
		job := genJob.Draw(t, "job")
		s.l.DropHolds("req", job)
		s.m.dropHoldOf(job)
		return
	}
	alloc := genAlloc.Draw(t, "alloc")
	s.l.DropHold(alloc)
	s.m.dropHold(alloc)
}

// lock mostly names a hold the ledger has, so that many locks are taken
// right at or after a hold's end.
func (s *ledgerMachine) lock(t *rapid.T) {
	alloc, ttl := genAlloc.Draw(t, "alloc"), genTicks.Draw(t, "ttl")
	if ids := s.holdIDs(); len(ids) > 0 && rapid.IntRange(0, 3).Draw(t, "held") > 0 {
		alloc = rapid.SampledFrom(ids).Draw(t, "hold")
	}
	lk, err := s.l.Lock(alloc, s.now, ttl)
	sameErr(t, "Lock", err, s.m.lock(alloc, s.now, ttl))
	if err != nil {
		return
	}
	s.grantFits(t, "Lock")
	if s.issued[lk.Epoch] || lk.Epoch <= s.lastEpoch {
		t.Fatalf("epoch %d reused or not increasing (last %d)", lk.Epoch, s.lastEpoch)
	}
	s.issued[lk.Epoch], s.lastEpoch = true, lk.Epoch
}

// holdIDs returns the IDs of the ledger's holds, sorted.
func (s *ledgerMachine) holdIDs() []types.AllocationID {
	var ids []types.AllocationID
	for id := range s.l.holds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// start mostly names a lock the ledger holds, so that many locks are started
// right at or after their expiry.
func (s *ledgerMachine) start(t *rapid.T) {
	locks := s.l.Locks()
	alloc := genAlloc.Draw(t, "alloc")
	if len(locks) > 0 && rapid.IntRange(0, 3).Draw(t, "known") > 0 {
		alloc = rapid.SampledFrom(locks).Draw(t, "lock").AllocationID
	}
	var before Lock
	if i := slices.IndexFunc(locks, func(lk Lock) bool { return lk.AllocationID == alloc }); i >= 0 {
		before = locks[i]
	}
	epoch := before.Epoch
	if epoch == 0 || rapid.IntRange(0, 3).Draw(t, "other epoch") == 0 {
		epoch = rapid.Uint64Range(0, s.lastEpoch+1).Draw(t, "epoch")
	}
	_, err := s.l.Start(alloc, epoch, s.now)
	sameErr(t, "Start", err, s.m.start(alloc, epoch, s.now))
	if err == nil && !s.now.Before(before.Expiry) {
		t.Fatalf("started %s at %v, its lock expired at %v", alloc, s.now, before.Expiry)
	}
}

func (s *ledgerMachine) release(t *rapid.T) {
	alloc := genAlloc.Draw(t, "alloc")
	if _, ok := s.l.Release(alloc); ok != s.m.release(alloc) {
		t.Fatalf("Release(%s) = %v, model disagrees", alloc, ok)
	}
}

func (s *ledgerMachine) expire(t *rapid.T) {
	var got []types.AllocationID
	for _, lk := range s.l.Expire(s.now) {
		got = append(got, lk.AllocationID)
	}
	if want := s.m.expire(s.now); !slices.Equal(got, want) {
		t.Fatalf("Expire dropped %v, model %v", got, want)
	}
}

func (s *ledgerMachine) advance(t *rapid.T) {
	s.now = s.now.Add(time.Duration(rapid.IntRange(0, 5).Draw(t, "ticks")) * tick)
}

func (s *ledgerMachine) setRegistered(r types.Resources) {
	s.l.SetRegistered(r)
	s.m.registered = r
}

func (s *ledgerMachine) raiseOffer(t *rapid.T) {
	s.setRegistered(s.l.Registered().Add(genNeed.Draw(t, "more")))
}

func (s *ledgerMachine) lowerOffer(t *rapid.T) {
	s.setRegistered(floorZero(s.l.Registered().Sub(genNeed.Draw(t, "less"))))
	s.overOffer = true
}

// restart restores from the locks and an epoch counter that may lag behind
// them: the least a careful node persists is the highest epoch of a lock it no
// longer keeps.
func (s *ledgerMachine) restart(t *rapid.T) {
	saved, persisted := s.l.Locks(), s.l.Epoch()
	if rapid.Bool().Draw(t, "lagging epoch") {
		persisted = 0
		for e := range s.issued {
			if !slices.ContainsFunc(saved, func(lk Lock) bool { return lk.Epoch == e }) {
				persisted = max(persisted, e)
			}
		}
	}
	restored := NewLedger(s.l.Registered())
	restored.SetPolicy(s.l.Policy())
	restored.Restore(saved, persisted, s.now)
	s.l = restored
	s.m.restart(s.now)
}

// check runs after every action.
func (s *ledgerMachine) check(t *rapid.T) {
	// A requester has at most one hold per job.
	jobs := map[types.JobID]bool{}
	for _, h := range s.l.holds {
		if jobs[h.JobID] {
			t.Fatalf("two holds of one requester for job %s", h.JobID)
		}
		jobs[h.JobID] = true
	}
	if got, want := s.l.Available(s.now), s.m.available(s.now); got != want {
		t.Fatalf("Available = %v, model %v", got, want)
	}
	if got, want := s.l.Locks(), s.m.locks(); !slices.EqualFunc(got, want, sameLock) {
		t.Fatalf("Locks = %+v\nmodel   %+v", got, want)
	}
	if s.l.Epoch() != s.lastEpoch {
		t.Fatalf("Epoch = %d, last issued %d", s.l.Epoch(), s.lastEpoch)
	}
	// The invariant: held + locked + running <= registered. Only lowering the
	// offer may break it, and once usage fits again it keeps fitting.
	used := s.l.Used(s.now)
	switch {
	case used.Fits(s.l.Registered()):
		s.overOffer = false
	case !s.overOffer:
		t.Fatalf("used %v over registered %v", used, s.l.Registered())
	}
}

func sameLock(a, b Lock) bool {
	return a.AllocationID == b.AllocationID && a.JobID == b.JobID && a.Requester == b.Requester &&
		a.Resources == b.Resources && a.Epoch == b.Epoch && a.Expiry.Equal(b.Expiry) && a.Running == b.Running
}

func TestLedgerProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		registered := genNeed.Draw(t, "registered").Add(genNeed.Draw(t, "more"))
		s := &ledgerMachine{l: NewLedger(registered), m: &ledgerModel{registered: registered}, now: t0, issued: map[uint64]bool{}}
		// One requester, no eviction: the fair share has tests of its own.
		s.l.SetPolicy(HoldPolicy{Share: 1})
		actions := map[string]func(*rapid.T){
			"Hold": s.hold, "DropHold": s.dropHold, "Lock": s.lock, "Start": s.start,
			"Release": s.release, "Expire": s.expire, "Advance": s.advance, "Restart": s.restart,
			"RaiseOffer": s.raiseOffer, "LowerOffer": s.lowerOffer, "": s.check,
		}
		// Repeat runs about 30 actions by default; a few rounds make long
		// interleavings of many auctions.
		for range 5 {
			t.Repeat(actions)
		}
	})
}

package node

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opendms/dms/types"
)

// Lock is capability committed to one allocation: taken when the node accepts
// a job (the commit point), fenced by Epoch, and dropped at Expiry unless the
// allocation starts first. Once Running it has no expiry (Expiry is zero) and
// lasts until released.
type Lock struct {
	AllocationID types.AllocationID `json:"allocation_id"`
	JobID        types.JobID        `json:"job_id"`
	Requester    string             `json:"requester"`
	Resources    types.Resources    `json:"resources"`
	Epoch        uint64             `json:"epoch"`
	Expiry       time.Time          `json:"expiry"`
	Running      bool               `json:"running"`
}

// live reports whether the lock still counts against capability at now.
func (lk Lock) live(now time.Time) bool { return lk.Running || now.Before(lk.Expiry) }

// hold is the soft reservation behind a bid.
type hold struct {
	r     types.Resources
	until time.Time
}

// Ledger accounts for a node's capability: registered (what the provider
// offers), held (soft reservations behind bids), locked (accepted, waiting for
// the invocation) and running. It keeps held + locked + running <= registered
// in every dimension (see the package doc).
//
// The Ledger is a pure data structure: it does no I/O and never reads the
// clock; every method that needs time takes now, which must not go backwards.
// A hold or lock stops counting at its end (now >= until, now >= Expiry) even
// before Expire removes it. It is not safe for concurrent use: the Node actor
// owns it.
type Ledger struct {
	registered types.Resources
	holds      map[types.JobID]hold
	locks      map[types.AllocationID]Lock
	epoch      uint64
}

// NewLedger returns an empty ledger offering registered.
func NewLedger(registered types.Resources) *Ledger {
	return &Ledger{
		registered: registered,
		holds:      map[types.JobID]hold{},
		locks:      map[types.AllocationID]Lock{},
	}
}

// Registered returns what the provider offers.
func (l *Ledger) Registered() types.Resources { return l.registered }

// SetRegistered changes what the provider offers. Existing holds and locks
// stay; if they no longer fit, Available reports zero in the dimensions over
// the offer and no new hold or lock is granted until usage fits again.
func (l *Ledger) SetRegistered(r types.Resources) { l.registered = r }

// Available returns registered minus everything held, locked or running at
// now, floored at zero in each dimension.
func (l *Ledger) Available(now time.Time) types.Resources {
	return floorZero(l.registered.Sub(l.Used(now)))
}

// Used returns everything held, locked or running at now.
func (l *Ledger) Used(now time.Time) types.Resources { return l.usedExcept(now, "") }

// Locked returns everything locked or running at now: Used without the
// holds behind bids.
func (l *Ledger) Locked(now time.Time) types.Resources {
	var sum types.Resources
	for _, lk := range l.locks {
		if lk.live(now) {
			sum = sum.Add(lk.Resources)
		}
	}
	return sum
}

// usedExcept is Used without the hold of job (no hold has the empty job ID).
func (l *Ledger) usedExcept(now time.Time, job types.JobID) types.Resources {
	var sum types.Resources
	for j, h := range l.holds {
		if j != job && now.Before(h.until) {
			sum = sum.Add(h.r)
		}
	}
	for _, lk := range l.locks {
		if lk.live(now) {
			sum = sum.Add(lk.Resources)
		}
	}
	return sum
}

// fits returns an ErrInsufficientCapability error, naming each dimension that
// falls short, unless r fits beside everything in use except job's own hold.
func (l *Ledger) fits(r types.Resources, now time.Time, job types.JobID) error {
	free := l.registered.Sub(l.usedExcept(now, job))
	if r.Fits(free) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInsufficientCapability, strings.Join(shortfall(r, free), "; "))
}

// Hold places the soft reservation behind a bid for job until until. A new
// hold for the same job replaces the old one; if it does not fit, the old one
// stays and the error wraps ErrInsufficientCapability.
func (l *Ledger) Hold(job types.JobID, r types.Resources, now, until time.Time) error {
	if job == "" || r.Negative() || !now.Before(until) {
		return fmt.Errorf("%w: hold for job %q of %s until %s", ErrInvalidReservation, job, r, until.Format(time.RFC3339Nano))
	}
	if err := l.fits(r, now, job); err != nil {
		return err
	}
	l.holds[job] = hold{r: r, until: until}
	return nil
}

// DropHold removes job's hold, if any.
func (l *Ledger) DropHold(job types.JobID) { delete(l.holds, job) }

// Lock is the commit point of an auction: it re-checks that r fits (counting
// everything in use except job's own hold, which it consumes), and locks r for
// alloc until now+ttl under a fresh epoch. Epochs start at 1 and are never
// reused. On error the ledger is unchanged.
func (l *Ledger) Lock(alloc types.AllocationID, job types.JobID, requester string, r types.Resources, now time.Time, ttl time.Duration) (Lock, error) {
	if alloc == "" || job == "" || r.Negative() || ttl <= 0 {
		return Lock{}, fmt.Errorf("%w: lock %q for job %q of %s for %s", ErrInvalidReservation, alloc, job, r, ttl)
	}
	if _, dup := l.locks[alloc]; dup {
		return Lock{}, fmt.Errorf("%w: %s", ErrDuplicateAllocation, alloc)
	}
	if err := l.fits(r, now, job); err != nil {
		return Lock{}, err
	}
	delete(l.holds, job)
	l.epoch++
	lk := Lock{AllocationID: alloc, JobID: job, Requester: requester, Resources: r, Epoch: l.epoch, Expiry: now.Add(ttl)}
	l.locks[alloc] = lk
	return lk, nil
}

// Start turns alloc's lock into a running allocation. epoch must be the
// lock's. A lock whose expiry has passed (now >= Expiry) can never start: it
// is dropped and Start returns ErrLockExpired.
func (l *Ledger) Start(alloc types.AllocationID, epoch uint64, now time.Time) (Lock, error) {
	lk, ok := l.locks[alloc]
	switch {
	case !ok:
		return Lock{}, fmt.Errorf("%w: %s", ErrUnknownAllocation, alloc)
	case lk.Epoch != epoch:
		return Lock{}, fmt.Errorf("%w: %s is locked under epoch %d, not %d", ErrStaleEpoch, alloc, lk.Epoch, epoch)
	case lk.Running:
		return Lock{}, fmt.Errorf("%w: %s", ErrAlreadyRunning, alloc)
	case !now.Before(lk.Expiry):
		delete(l.locks, alloc)
		return Lock{}, fmt.Errorf("%w: %s expired at %s", ErrLockExpired, alloc, lk.Expiry.Format(time.RFC3339Nano))
	}
	lk.Running, lk.Expiry = true, time.Time{}
	l.locks[alloc] = lk
	return lk, nil
}

// Release drops alloc's lock, running or not, and returns it.
func (l *Ledger) Release(alloc types.AllocationID) (Lock, bool) {
	lk, ok := l.locks[alloc]
	delete(l.locks, alloc)
	return lk, ok
}

// Expire drops the holds and the locks (not the running ones) whose end has
// come by now, and returns the dropped locks sorted by AllocationID.
func (l *Ledger) Expire(now time.Time) []Lock {
	for j, h := range l.holds {
		if !now.Before(h.until) {
			delete(l.holds, j)
		}
	}
	var dropped []Lock
	for id, lk := range l.locks {
		if !lk.live(now) {
			dropped = append(dropped, lk)
			delete(l.locks, id)
		}
	}
	return sortLocks(dropped)
}

// Locks returns every lock, running or not, sorted by AllocationID, for
// persistence and status.
func (l *Ledger) Locks() []Lock {
	out := make([]Lock, 0, len(l.locks))
	for _, lk := range l.locks {
		out = append(out, lk)
	}
	return sortLocks(out)
}

// Epoch returns the last epoch issued (0 before the first lock).
func (l *Ledger) Epoch() uint64 { return l.epoch }

// Restore replaces the ledger's holds and locks after a restart: running
// locks and locks unexpired at now come back (even if they no longer fit the
// offer; they were promised), holds are gone. The next epoch issued is above
// both epoch and every epoch in locks, so none is reused as long as the caller
// persisted the epoch of every lock it confirmed.
func (l *Ledger) Restore(locks []Lock, epoch uint64, now time.Time) {
	l.holds = map[types.JobID]hold{}
	l.locks = map[types.AllocationID]Lock{}
	l.epoch = epoch
	for _, lk := range locks {
		l.epoch = max(l.epoch, lk.Epoch)
		if prev, dup := l.locks[lk.AllocationID]; lk.live(now) && (!dup || lk.Epoch > prev.Epoch) {
			l.locks[lk.AllocationID] = lk
		}
	}
}

func sortLocks(locks []Lock) []Lock {
	slices.SortFunc(locks, func(a, b Lock) int { return cmp.Compare(a.AllocationID, b.AllocationID) })
	return locks
}

// floorZero raises every negative field of r to zero.
func floorZero(r types.Resources) types.Resources {
	return types.Resources{CPU: max(r.CPU, 0), Memory: max(r.Memory, 0), Disk: max(r.Disk, 0), GPUs: max(r.GPUs, 0)}
}

// shortfall explains, one reason per dimension, why need does not fit in free
// ("memory: need 4 GiB, available 1 GiB"). A negative free means the provider
// lowered its offer below what is already in use.
func shortfall(need, free types.Resources) []string {
	dims := []struct {
		name       string
		need, free int64
		format     func(int64) string
	}{
		{"cpu", int64(need.CPU), int64(free.CPU), func(v int64) string { return types.MilliCPU(v).String() }},
		{"memory", int64(need.Memory), int64(free.Memory), func(v int64) string { return types.Bytes(v).String() }},
		{"disk", int64(need.Disk), int64(free.Disk), func(v int64) string { return types.Bytes(v).String() }},
		{"gpus", int64(need.GPUs), int64(free.GPUs), func(v int64) string { return strconv.FormatInt(v, 10) }},
	}
	var out []string
	for _, d := range dims {
		switch {
		case d.need <= d.free:
		case d.free < 0:
			out = append(out, fmt.Sprintf("%s: in use is over the offer by %s", d.name, d.format(-d.free)))
		default:
			out = append(out, fmt.Sprintf("%s: need %s, available %s", d.name, d.format(d.need), d.format(d.free)))
		}
	}
	return out
}

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
	Price        types.Credits      `json:"price"` // per core-hour, as bid
	Epoch        uint64             `json:"epoch"`
	Expiry       time.Time          `json:"expiry"`
	Running      bool               `json:"running"`
}

// live reports whether the lock still counts against capability at now.
func (lk Lock) live(now time.Time) bool { return lk.Running || now.Before(lk.Expiry) }

// Hold is the soft reservation behind a bid: the capability the node keeps
// for the allocation the bid names until the requester accepts, cancels, or
// Until comes. Only Requester may turn it into a lock, for JobID and exactly
// Resources.
type Hold struct {
	Allocation types.AllocationID `json:"allocation"`
	JobID      types.JobID        `json:"job_id"`
	Requester  string             `json:"requester"`
	Resources  types.Resources    `json:"resources"`
	Price      types.Credits      `json:"price"` // per core-hour: the bid's
	Until      time.Time          `json:"until"`
	seq        uint64             // order of grant: the newest is evicted first
}

// live reports whether the hold still counts against capability at now.
func (h Hold) live(now time.Time) bool { return now.Before(h.Until) }

// HoldPolicy shares a node's capability among the requesters that hold it.
// The zero value of a field takes its default (DefaultHoldPolicy).
type HoldPolicy struct {
	// Share is the part of the registered capability, in each dimension,
	// that one requester's claims (its holds and unstarted locks) may take
	// while others want room: a request that fits in free capacity is held
	// whatever its size, but only claims within the share are safe from
	// eviction and may evict others' claims beyond theirs. In (0, 1].
	Share float64
	// PerRequester and Total bound how many holds one requester, and all
	// of them, may have at once: a hold costs memory even when small.
	PerRequester int
	Total        int
	// Penalty is how long a requester loses the room beyond its share
	// for each lock of its that expires without an invocation; it adds up
	// to at most MaxPenaltyFactor times Penalty and decays as time passes.
	Penalty time.Duration
}

// MaxPenaltyFactor caps a requester's accumulated penalty (HoldPolicy.Penalty).
const MaxPenaltyFactor = 10

// DefaultHoldPolicy returns the policy of a node that sets none: half of
// every dimension per requester, 64 holds each and 4,096 in all, one
// minute of penalty per lock left to expire.
func DefaultHoldPolicy() HoldPolicy {
	return HoldPolicy{Share: 0.5, PerRequester: 64, Total: 4096, Penalty: time.Minute}
}

// withDefaults fills the fields left zero.
func (p HoldPolicy) withDefaults() HoldPolicy {
	def := DefaultHoldPolicy()
	setDefault(&p.Share, def.Share)
	setDefault(&p.PerRequester, def.PerRequester)
	setDefault(&p.Total, def.Total)
	setDefault(&p.Penalty, def.Penalty)
	return p
}

// Validate checks a policy whose zero fields take their defaults.
func (p HoldPolicy) Validate() error {
	if p.Share < 0 || p.Share > 1 || p.Share != p.Share || p.PerRequester < 0 || p.Total < 0 || p.Penalty < 0 {
		return fmt.Errorf("share %v must be in (0, 1], counts (%d, %d) and penalty %s not negative",
			p.Share, p.PerRequester, p.Total, p.Penalty)
	}
	return nil
}

// Ledger accounts for a node's capability: registered (what the provider
// offers), held (soft reservations behind bids), locked (accepted, waiting for
// the invocation) and running. It keeps held + locked + running <= registered
// in every dimension (see the package doc), shares what is held among
// requesters by its HoldPolicy, and turns a hold into a lock only: there is
// no lock without a bid.
//
// The Ledger is a pure data structure: it does no I/O and never reads the
// clock; every method that needs time takes now, which must not go backwards.
// A hold or lock stops counting at its end (now >= Until, now >= Expiry) even
// before Expire removes it. It is not safe for concurrent use: the Node actor
// owns it.
type Ledger struct {
	registered types.Resources
	policy     HoldPolicy
	holds      map[types.AllocationID]Hold
	locks      map[types.AllocationID]Lock
	penalized  map[string]time.Time // requesters without room beyond their share, until when
	epoch      uint64
	seq        uint64 // of the last hold granted
}

// NewLedger returns an empty ledger offering registered, under
// DefaultHoldPolicy.
func NewLedger(registered types.Resources) *Ledger {
	return &Ledger{
		registered: registered,
		policy:     DefaultHoldPolicy(),
		holds:      map[types.AllocationID]Hold{},
		locks:      map[types.AllocationID]Lock{},
		penalized:  map[string]time.Time{},
	}
}

// SetPolicy replaces the hold policy (its zero fields take their
// defaults). Holds granted stay; the new policy judges new ones.
func (l *Ledger) SetPolicy(p HoldPolicy) { l.policy = p.withDefaults() }

// Policy returns the hold policy in force.
func (l *Ledger) Policy() HoldPolicy { return l.policy }

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

// Held returns the number of holds live at now and what they hold.
func (l *Ledger) Held(now time.Time) (int, types.Resources) {
	n, sum := 0, types.Resources{}
	for _, h := range l.holds {
		if h.live(now) {
			n, sum = n+1, sum.Add(h.Resources)
		}
	}
	return n, sum
}

// HoldOf returns the hold behind the bid that named alloc, live or ended
// but not yet expired by Expire.
func (l *Ledger) HoldOf(alloc types.AllocationID) (Hold, bool) {
	h, ok := l.holds[alloc]
	return h, ok
}

// usedExcept is Used without the hold of alloc (no hold has the empty ID).
func (l *Ledger) usedExcept(now time.Time, alloc types.AllocationID) types.Resources {
	var sum types.Resources
	for id, h := range l.holds {
		if id != alloc && h.live(now) {
			sum = sum.Add(h.Resources)
		}
	}
	return sum.Add(l.Locked(now))
}

// claims returns what each requester claims at now: its live holds and
// unstarted live locks (a running allocation is work, not a claim),
// without the hold of except.
func (l *Ledger) claims(now time.Time, except types.AllocationID) map[string]types.Resources {
	out := map[string]types.Resources{}
	for id, h := range l.holds {
		if id != except && h.live(now) {
			out[h.Requester] = out[h.Requester].Add(h.Resources)
		}
	}
	for _, lk := range l.locks {
		if !lk.Running && lk.live(now) {
			out[lk.Requester] = out[lk.Requester].Add(lk.Resources)
		}
	}
	return out
}

// share is the most one requester may claim while others want room.
func (l *Ledger) share() types.Resources {
	s := l.policy.Share
	r := l.registered
	return types.Resources{
		CPU: types.MilliCPU(float64(r.CPU) * s), Memory: types.Bytes(float64(r.Memory) * s),
		Disk: types.Bytes(float64(r.Disk) * s), GPUs: int(float64(r.GPUs) * s),
	}
}

// Penalized reports until when requester has no room beyond its share
// (zero time and false if it has).
func (l *Ledger) Penalized(requester string, now time.Time) (time.Time, bool) {
	until, ok := l.penalized[requester]
	return until, ok && now.Before(until)
}

// fits returns an ErrInsufficientCapability error, naming each dimension that
// falls short, unless r fits beside everything in use except alloc's hold.
func (l *Ledger) fits(r types.Resources, now time.Time, alloc types.AllocationID) error {
	free := l.registered.Sub(l.usedExcept(now, alloc))
	if r.Fits(free) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInsufficientCapability, strings.Join(shortfall(r, free), "; "))
}

// Hold places the soft reservation behind a bid, and returns the holds of
// other requesters it evicted to make room. A requester has at most one
// hold per job: h replaces the requester's earlier hold for h.JobID, never
// another requester's. On error nothing changes; the error wraps
// ErrInvalidReservation, ErrDuplicateAllocation, ErrTooManyHolds,
// ErrOverShare or ErrInsufficientCapability.
//
// The rules, in order: the requester may have at most PerRequester holds,
// and the node Total (when full, the newest hold of the requester with
// the most holds goes, if it has more than this one would); a requester
// under penalty must stay within its share; a hold that fits in free
// capacity is granted; otherwise, if the requester's claims with h stay
// within its share, the holds of requesters over their share are evicted,
// newest first, while their requester stays over its share, until h fits.
// Locks are never evicted.
func (l *Ledger) Hold(h Hold, now time.Time) ([]Hold, error) {
	if h.Allocation == "" || h.JobID == "" || h.Requester == "" || h.Resources.Negative() || !now.Before(h.Until) {
		return nil, fmt.Errorf("%w: hold %q for job %q of %q, %s until %s", ErrInvalidReservation,
			h.Allocation, h.JobID, h.Requester, h.Resources, h.Until.Format(time.RFC3339Nano))
	}
	_, held := l.holds[h.Allocation]
	if _, locked := l.locks[h.Allocation]; held || locked {
		return nil, fmt.Errorf("%w: %s", ErrDuplicateAllocation, h.Allocation)
	}
	var old types.AllocationID // the requester's earlier hold for the job
	for id, o := range l.holds {
		if o.Requester == h.Requester && o.JobID == h.JobID {
			old = id
		}
	}
	evict, err := l.room(h, old, now)
	if err != nil {
		return nil, err
	}
	out := make([]Hold, 0, len(evict))
	for _, id := range evict {
		out = append(out, l.holds[id])
		delete(l.holds, id)
	}
	delete(l.holds, old)
	l.seq++
	h.seq = l.seq
	l.holds[h.Allocation] = h
	return out, nil
}

// room decides whether h may be held, replacing old, and which holds must
// go first (see Hold). It changes nothing.
func (l *Ledger) room(h Hold, old types.AllocationID, now time.Time) ([]types.AllocationID, error) {
	count := map[string]int{}
	total := 0
	for id, o := range l.holds {
		if id != old {
			count[o.Requester]++
			total++
		}
	}
	if count[h.Requester] >= l.policy.PerRequester {
		return nil, fmt.Errorf("%w: requester %s has %d bids held here, the most one requester may", ErrTooManyHolds, h.Requester, count[h.Requester])
	}
	var evict []types.AllocationID
	if total >= l.policy.Total {
		top := h.Requester
		for r, n := range count {
			if n > count[top] || n == count[top] && r < top {
				top = r
			}
		}
		if count[top] <= count[h.Requester]+1 {
			return nil, fmt.Errorf("%w: %d bids held here, the most this node keeps", ErrTooManyHolds, total)
		}
		evict = append(evict, l.newest(top, func(Hold) bool { return true }))
	}

	claims := l.claims(now, old)
	for _, id := range evict {
		claims[l.holds[id].Requester] = claims[l.holds[id].Requester].Sub(l.holds[id].Resources)
	}
	mine, share := claims[h.Requester].Add(h.Resources), l.share()
	until, penalized := l.Penalized(h.Requester, now)
	if penalized && !mine.Fits(share) {
		return nil, fmt.Errorf("%w: %s of claims with this bid, over the share %s this node keeps for one requester; "+
			"requester %s let locks expire unused and has no room beyond its share until %s",
			ErrOverShare, mine, share, h.Requester, until.Format(time.RFC3339))
	}
	free := l.registered.Sub(l.usedExcept(now, old))
	for _, id := range evict {
		if l.holds[id].live(now) {
			free = free.Add(l.holds[id].Resources)
		}
	}
	if h.Resources.Fits(free) {
		return evict, nil
	}
	if !mine.Fits(share) {
		return nil, fmt.Errorf("%w: %s (beyond the free capacity, a requester may claim its share %s; it would claim %s)",
			ErrOverShare, strings.Join(shortfall(h.Resources, free), "; "), share, mine)
	}
	// Evict holds of requesters over their share, newest first, each only
	// while its requester stays over, and only holds that free something
	// h lacks.
	for !h.Resources.Fits(free) {
		lacking := func(o Hold) bool {
			q := claims[o.Requester]
			return o.Requester != h.Requester && o.live(now) && o.Allocation != old && !slices.Contains(evict, o.Allocation) &&
				!q.Fits(share) && helps(o.Resources, h.Resources, free)
		}
		id := l.newest("", lacking)
		if id == "" {
			return nil, fmt.Errorf("%w: %s", ErrInsufficientCapability, strings.Join(shortfall(h.Resources, free), "; "))
		}
		o := l.holds[id]
		evict = append(evict, id)
		claims[o.Requester] = claims[o.Requester].Sub(o.Resources)
		free = free.Add(o.Resources)
	}
	return evict, nil
}

// newest returns the most recent hold of requester ("": of anyone) that
// keep accepts, or "" if none does.
func (l *Ledger) newest(requester string, keep func(Hold) bool) types.AllocationID {
	var best Hold
	for _, o := range l.holds {
		if (requester == "" || o.Requester == requester) && keep(o) && o.seq > best.seq {
			best = o
		}
	}
	return best.Allocation
}

// helps reports whether freeing have gives need something in a dimension
// where free falls short.
func helps(have, need, free types.Resources) bool {
	return have.CPU > 0 && need.CPU > free.CPU || have.Memory > 0 && need.Memory > free.Memory ||
		have.Disk > 0 && need.Disk > free.Disk || have.GPUs > 0 && need.GPUs > free.GPUs
}

// DropHold removes the hold behind the bid that named alloc, if any.
func (l *Ledger) DropHold(alloc types.AllocationID) { delete(l.holds, alloc) }

// DropHolds removes requester's holds for job and returns how many it removed.
func (l *Ledger) DropHolds(requester string, job types.JobID) int {
	n := 0
	for id, h := range l.holds {
		if h.Requester == requester && h.JobID == job {
			delete(l.holds, id)
			n++
		}
	}
	return n
}

// Lock is the commit point of an auction: it turns the hold behind the bid
// that named alloc into a lock of the same job, requester and resources,
// re-checking that they fit, until now+ttl under a fresh epoch. The hold
// must be live at now: there is no lock without a bid. Epochs start at 1
// and are never reused. On error the ledger is unchanged.
func (l *Ledger) Lock(alloc types.AllocationID, now time.Time, ttl time.Duration) (Lock, error) {
	if ttl <= 0 {
		return Lock{}, fmt.Errorf("%w: lock %q for %s", ErrInvalidReservation, alloc, ttl)
	}
	if _, dup := l.locks[alloc]; dup {
		return Lock{}, fmt.Errorf("%w: %s", ErrDuplicateAllocation, alloc)
	}
	h, ok := l.holds[alloc]
	if !ok || !h.live(now) {
		return Lock{}, fmt.Errorf("%w: no live hold for %q", ErrNoHold, alloc)
	}
	if err := l.fits(h.Resources, now, alloc); err != nil {
		return Lock{}, err
	}
	delete(l.holds, alloc)
	l.epoch++
	lk := Lock{AllocationID: alloc, JobID: h.JobID, Requester: h.Requester, Resources: h.Resources, Price: h.Price, Epoch: l.epoch, Expiry: now.Add(ttl)}
	l.locks[alloc] = lk
	return lk, nil
}

// Undo takes back a Lock made from h, as when its record could not be
// written: the lock goes and h comes back as it was. The epoch stays used.
func (l *Ledger) Undo(h Hold) {
	delete(l.locks, h.Allocation)
	l.holds[h.Allocation] = h
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
		l.penalize(lk.Requester, now)
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
// come by now, and returns the dropped locks sorted by AllocationID. The
// requester of each dropped lock is penalized (HoldPolicy.Penalty); ended
// penalties are forgotten.
func (l *Ledger) Expire(now time.Time) []Lock {
	for id, h := range l.holds {
		if !h.live(now) {
			delete(l.holds, id)
		}
	}
	for r, until := range l.penalized {
		if !now.Before(until) {
			delete(l.penalized, r)
		}
	}
	var dropped []Lock
	for id, lk := range l.locks {
		if !lk.live(now) {
			dropped = append(dropped, lk)
			delete(l.locks, id)
			l.penalize(lk.Requester, now)
		}
	}
	return sortLocks(dropped)
}

// penalize takes from requester, one of whose locks expired unused, its
// room beyond its share for one more Penalty (at most MaxPenaltyFactor
// Penalties from now).
func (l *Ledger) penalize(requester string, now time.Time) {
	from := now
	if prev := l.penalized[requester]; prev.After(now) {
		from = prev
	}
	until, most := from.Add(l.policy.Penalty), now.Add(MaxPenaltyFactor*l.policy.Penalty)
	if until.After(most) {
		until = most
	}
	l.penalized[requester] = until
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
// offer; they were promised), holds and penalties are gone. The next epoch issued is above
// both epoch and every epoch in locks, so none is reused as long as the caller
// persisted the epoch of every lock it confirmed.
func (l *Ledger) Restore(locks []Lock, epoch uint64, now time.Time) {
	l.holds = map[types.AllocationID]Hold{}
	l.locks = map[types.AllocationID]Lock{}
	l.penalized = map[string]time.Time{}
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

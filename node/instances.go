package node

import (
	"cmp"
	"slices"
	"time"

	"github.com/opendms/dms/types"
)

// InstanceInfo is a provider's view of one of its warm instances.
type InstanceInfo struct {
	Allocation  types.AllocationID
	Job         types.JobID
	Requester   string
	Resources   types.Resources
	Concurrency int
	InFlight    int
	Calls       uint64    // calls that got a slot
	Failed      uint64    // of them, those that did not end CallOK
	LastCall    time.Time // the end of the last call; Started before any
	Started     time.Time
}

// Instances returns a snapshot of the warm instances taking calls, oldest
// first. Safe for concurrent use; it does not go through the actor.
func (n *Node) Instances() []InstanceInfo {
	var out []InstanceInfo
	n.eachInstance(func(w *instance) {
		t := w.snapshot()
		out = append(out, InstanceInfo{
			Allocation: w.alloc, Job: w.job, Requester: w.requester, Resources: w.res,
			Concurrency: int(w.limit), InFlight: w.inFlight(), Calls: t.calls, Failed: t.failed,
			LastCall: t.last, Started: w.started,
		})
	})
	slices.SortFunc(out, func(a, b InstanceInfo) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.Allocation, b.Allocation))
	})
	return out
}

func (n *Node) eachInstance(fn func(w *instance)) {
	n.warm.Range(func(_, v any) bool {
		fn(v.(*instance))
		return true
	})
}

// warmInfo counts the instances taking calls, and the calls served by all
// since the node started.
func (n *Node) warmInfo() (count int, calls uint64) {
	calls = n.warmCalls.Load()
	n.eachInstance(func(w *instance) {
		count++
		calls += w.snapshot().calls
	})
	return count, calls
}

// reclaimCandidate is a warm allocation the provider may release to take
// its capability back.
type reclaimCandidate struct {
	id       types.AllocationID
	res      types.Resources
	inFlight int
	last     time.Time
}

// reclaimOrder sorts candidates in the order they are released: those
// with no call in flight first, then the longest idle.
func reclaimOrder(c []reclaimCandidate) {
	slices.SortFunc(c, func(a, b reclaimCandidate) int {
		return cmp.Or(cmp.Compare(min(a.inFlight, 1), min(b.inFlight, 1)), a.last.Compare(b.last), cmp.Compare(a.id, b.id))
	})
}

// reclaimable picks, in order, the candidates to release until committed
// fits in registered, skipping those whose release would not help. It is
// pure: the shell gives it what is committed and the candidates.
func reclaimable(committed, registered types.Resources, cands []reclaimCandidate) []types.AllocationID {
	var out []types.AllocationID
	for _, c := range cands {
		if committed.Fits(registered) {
			break
		}
		if helps(c.res, committed, registered) {
			out = append(out, c.id)
			committed = committed.Sub(c.res)
		}
	}
	return out
}

// reclaimFor releases idle warm instances (no call in flight, none for
// ReclaimIdle), longest idle first, until need fits in what the ledger
// has free: a bid request declined only for want of room they hold finds
// it when its requester asks again (a busy node is asked again within
// the job's queue timeout). OpenWhisk evicts idle containers the same way
// when an invoker needs memory for a new one.
func (a *nodeActor) reclaimFor(need types.Resources) {
	now := a.now()
	registered := a.m.Ledger().Registered()
	committed := registered.Sub(a.m.Ledger().Available(now)).Add(need)
	var cands []reclaimCandidate
	for id, h := range a.runs {
		switch w := h.warm.Load(); {
		case w == nil:
		case w.leaving():
			committed = committed.Sub(w.res)
		case w.inFlight() == 0 && now.Sub(w.snapshot().last) >= a.n.cfg.ReclaimIdle:
			cands = append(cands, reclaimCandidate{id: id, res: w.res, last: w.snapshot().last})
		}
	}
	reclaimOrder(cands)
	for _, id := range reclaimable(committed, registered, cands) {
		h := a.runs[id]
		h.warm.Load().reclaimed.Store(true)
		h.cancel(errReleased{reason: releasedDemand})
	}
}

// reclaim releases warm instances while what is locked and running
// exceeds what the provider offers (it lowered its offer). An instance on
// its way out (closed, or reclaimed already) no longer counts as
// committed: its capability is coming back. A warm run still preparing
// its program cannot be released yet; it counts.
func (a *nodeActor) reclaim() {
	committed := a.m.Ledger().Locked(a.now())
	registered := a.m.Ledger().Registered()
	if committed.Fits(registered) {
		return
	}
	var cands []reclaimCandidate
	for id, h := range a.runs {
		switch w := h.warm.Load(); {
		case w == nil:
		case w.leaving():
			committed = committed.Sub(w.res)
		default:
			cands = append(cands, reclaimCandidate{id: id, res: w.res, inFlight: w.inFlight(), last: w.snapshot().last})
		}
	}
	reclaimOrder(cands)
	for _, id := range reclaimable(committed, registered, cands) {
		h := a.runs[id]
		h.warm.Load().reclaimed.Store(true)
		h.cancel(errReleased{reason: releasedReclaim})
	}
}

package store

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Policy bounds the blobs of a store.
type Policy struct {
	// Budget is the bytes the blobs may take: over it, a collection
	// removes blobs until they fit Target.
	Budget int64
	// Target, at most Budget, is where a collection stops: a margin under
	// the budget, so that the blobs do not cross it again with the next
	// one stored (each crossing is a collection) and the rest of the
	// store has room. 0 or over Budget: Budget.
	Target int64
	// MinAge keeps a blob used more recently than this, referenced or not:
	// a module uploaded a moment before its job is submitted, a result
	// its requester is about to fetch.
	MinAge time.Duration
}

// Plan is what a collection removes, and why it stops where it does.
type Plan struct {
	Remove []BlobUse // least recently used first
	Freed  int64     // their bytes
	Before int64     // the blobs' bytes when planned
	After  int64     // what is left once Remove is removed
	// Referenced and Recent count the blobs passed over, within the
	// collection, because keep reported them, or because they were used
	// within MinAge.
	Referenced, Recent int
	// RetryAt is, when the plan leaves the blobs over budget with blobs it
	// passed over for their age, when the first of those becomes old
	// enough to remove; zero otherwise.
	RetryAt time.Time
}

// PlanCollection chooses, when the blobs are over p.Budget, the blobs to
// remove so that the rest fit p.Target: the least recently used first,
// skipping those keep reports (referenced, pinned) and those used within
// p.MinAge of now. It stops as soon as the rest fit; when they cannot fit,
// it removes every blob it may. Under the budget it removes nothing. It
// does no I/O.
func PlanCollection(blobs []BlobUse, p Policy, keep func(cid string) bool, now time.Time) Plan {
	var plan Plan
	for _, b := range blobs {
		plan.Before += b.Size
	}
	plan.After = plan.Before
	if plan.Before <= p.Budget {
		return plan
	}
	goal := p.goal()
	lru := slices.SortedFunc(slices.Values(blobs), func(a, b BlobUse) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, b := range lru {
		if plan.After <= goal {
			break
		}
		switch {
		case keep(b.CID):
			plan.Referenced++
		case now.Sub(b.Used) < p.MinAge:
			plan.Recent++
			if at := b.Used.Add(p.MinAge); plan.RetryAt.IsZero() || at.Before(plan.RetryAt) {
				plan.RetryAt = at
			}
		default:
			plan.Remove = append(plan.Remove, b)
			plan.Freed += b.Size
			plan.After -= b.Size
		}
	}
	if plan.After <= p.Budget {
		plan.RetryAt = time.Time{}
	}
	return plan
}

// goal is where a collection stops: Target, or Budget when Target is not
// under it.
func (p Policy) goal() int64 {
	if p.Target > 0 && p.Target < p.Budget {
		return p.Target
	}
	return p.Budget
}

// Uses returns every blob's size and last use: the snapshot a collection
// is planned on.
func (b *Blobs) Uses() []BlobUse {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	out := make([]BlobUse, 0, len(b.s.index))
	for c, e := range b.s.index {
		out = append(out, BlobUse{CID: c, Size: e.size, Used: e.used, Seq: e.seq})
	}
	return out
}

// Collect plans a collection under p (PlanCollection, now from the
// store's clock) and carries it out. keep is called without the store's
// lock held.
func (b *Blobs) Collect(p Policy, keep func(cid string) bool) (Plan, Removed, error) {
	plan := PlanCollection(b.Uses(), p, keep, b.s.clock())
	removed, err := b.Remove(plan.Remove)
	return plan, removed, err
}

// Removed is what Remove removed.
type Removed struct {
	Blobs int
	Bytes int64
}

// Remove removes the blobs of a plan, except those used since it was
// planned (their use numbers changed): a job that names a blob, a requester
// that fetches one, uses it first. It stops at the first blob it cannot
// remove, and returns what it removed until then.
func (b *Blobs) Remove(plan []BlobUse) (Removed, error) {
	var r Removed
	for _, u := range plan {
		ok, err := b.s.remove(u)
		if err != nil {
			return r, err
		}
		if ok {
			r.Blobs++
			r.Bytes += u.Size
		}
	}
	return r, nil
}

// remove removes blob u.CID unless it was used since u; the file and the
// index entry go together, under the lock.
func (s *blobStore) remove(u BlobUse) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.index[u.CID]
	if !ok || e.seq != u.Seq {
		return false, nil
	}
	if err := s.fs.remove(u.CID); err != nil {
		return false, fmt.Errorf("store: removing blob %s: %w", u.CID, err)
	}
	delete(s.index, u.CID)
	s.bytes -= e.size
	return true, nil
}

package node

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/opendms/dms/types"
)

// LedgerView is the ledger at one instant, for its provider to read: the
// totals in every dimension, and each live hold (behind a bid) and lock
// (accepted, waiting for its invocation, or running) with its job,
// requester, resources, price, expiry and epoch.
type LedgerView struct {
	At         time.Time       `json:"at"`
	Registered types.Resources `json:"registered"`
	Available  types.Resources `json:"available"`
	Held       types.Resources `json:"held"`    // behind bids
	Locked     types.Resources `json:"locked"`  // accepted, not started
	Running    types.Resources `json:"running"` // started
	Epoch      uint64          `json:"epoch"`   // the last issued
	Holds      []Hold          `json:"holds"`   // soonest to end first
	Locks      []Lock          `json:"locks"`   // unstarted, soonest to expire first, then running ones by ID
}

// View returns the ledger at now: what ends before now is left out, as it
// no longer counts.
func (l *Ledger) View(now time.Time) LedgerView {
	v := LedgerView{At: now, Registered: l.registered, Available: l.Available(now), Epoch: l.epoch, Holds: []Hold{}, Locks: []Lock{}}
	for _, h := range l.holds {
		if h.live(now) {
			v.Held = v.Held.Add(h.Resources)
			v.Holds = append(v.Holds, h)
		}
	}
	for _, lk := range l.locks {
		switch {
		case lk.Running:
			v.Running = v.Running.Add(lk.Resources)
		case lk.live(now):
			v.Locked = v.Locked.Add(lk.Resources)
		default:
			continue
		}
		v.Locks = append(v.Locks, lk)
	}
	slices.SortFunc(v.Holds, func(a, b Hold) int {
		return cmp.Or(a.Until.Compare(b.Until), cmp.Compare(a.Allocation, b.Allocation))
	})
	slices.SortFunc(v.Locks, func(a, b Lock) int {
		if a.Running != b.Running {
			if a.Running {
				return 1
			}
			return -1
		}
		return cmp.Or(a.Expiry.Compare(b.Expiry), cmp.Compare(a.AllocationID, b.AllocationID))
	})
	return v
}

// viewRequest asks the actor for its ledger's view.
type viewRequest struct{ reply chan<- LedgerView }

// Ledger returns the node's ledger as it is now.
func (n *Node) Ledger(ctx context.Context) (LedgerView, error) {
	reply := make(chan LedgerView, 1)
	if err := n.send(ctx, viewRequest{reply: reply}); err != nil {
		return LedgerView{}, err
	}
	select {
	case v := <-reply:
		return v, nil
	case <-ctx.Done():
		return LedgerView{}, fmt.Errorf("node: ledger: %w", ctx.Err())
	case <-n.ctx.Done():
		return LedgerView{}, fmt.Errorf("node: ledger: %w", ErrClosed)
	}
}

// FlushBids writes the bid records still in memory, so that a listing that
// follows shows every bid request answered before: a listing reads the
// store, where they are otherwise written a batch at a time.
func (n *Node) FlushBids() { n.bids.Flush() }

// BidsLost returns how many answers to bid requests were not recorded
// since the start (too many waiting for the store, or their write failed).
func (n *Node) BidsLost() uint64 { return n.bids.Lost() }

package dms

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
)

// A provider's own view (docs/observability.md): its allocations and bid
// records, read from its database a page at a time through the node's
// indices, and its ledger, from the Node actor.

// bidExpiryChunk is how many bid records past retention one write deletes.
const bidExpiryChunk = 256

// NodeAllocations returns a page of the allocations this node runs and
// ran, newest first.
func (d *DMS) NodeAllocations(ctx context.Context, q api.PageQuery) (api.AllocationPage, error) {
	if err := d.running(); err != nil {
		return api.AllocationPage{}, err
	}
	recs, next, err := node.ListAllocations(d.db, node.Query(q))
	if err != nil {
		return api.AllocationPage{}, badQuery(err)
	}
	now := d.opts.clock()
	out := api.AllocationPage{Allocations: make([]api.Allocation, len(recs)), Next: next}
	for i, r := range recs {
		out.Allocations[i] = apiAllocation(r, now)
	}
	return out, nil
}

func apiAllocation(r node.Allocation, now time.Time) api.Allocation {
	a := api.Allocation{
		ID: string(r.AllocationID), JobID: string(r.JobID), Requester: r.Requester, State: r.State, Reason: r.Reason, Fault: r.Fault,
		Resources: r.Resources, Price: r.Price, Epoch: r.Epoch, LockedAt: r.LockedAt, StartedAt: r.StartedAt, EndedAt: r.EndedAt,
	}
	if r.Task != nil {
		a.Executor = r.Task.Executor
	}
	switch {
	case r.StartedAt.IsZero():
	case !r.EndedAt.IsZero():
		a.DurationMillis = r.EndedAt.Sub(r.StartedAt).Milliseconds()
	case r.State == types.AllocRunning:
		a.DurationMillis = now.Sub(r.StartedAt).Milliseconds()
	}
	return a
}

// NodeLocks returns the node's ledger now.
func (d *DMS) NodeLocks(ctx context.Context) (api.Ledger, error) {
	if err := d.running(); err != nil {
		return api.Ledger{}, err
	}
	if d.node == nil {
		return api.Ledger{}, fmt.Errorf("%w: %w: it holds no capability (compute: false)", api.ErrConflict, errNoCompute)
	}
	v, err := d.node.Ledger(ctx)
	if err != nil {
		return api.Ledger{}, err
	}
	out := api.Ledger{At: v.At, Registered: v.Registered, Available: v.Available, Held: v.Held, Locked: v.Locked, Running: v.Running, Epoch: v.Epoch,
		Holds: make([]api.Hold, len(v.Holds)), Locks: make([]api.Lock, len(v.Locks))}
	for i, h := range v.Holds {
		out.Holds[i] = api.Hold{AllocationID: string(h.Allocation), JobID: string(h.JobID), Requester: h.Requester, Resources: h.Resources, Price: h.Price, Until: h.Until}
	}
	for i, l := range v.Locks {
		out.Locks[i] = api.Lock{AllocationID: string(l.AllocationID), JobID: string(l.JobID), Requester: l.Requester, Resources: l.Resources,
			Price: l.Price, Epoch: l.Epoch, Expiry: l.Expiry, Running: l.Running}
	}
	return out, nil
}

// NodeBids returns a page of the bid requests this node answered, newest
// first: every answer given before the call (the node writes them in
// batches; this writes those waiting first).
func (d *DMS) NodeBids(ctx context.Context, q api.PageQuery) (api.BidPage, error) {
	if err := d.running(); err != nil {
		return api.BidPage{}, err
	}
	var lost uint64
	if d.node != nil {
		d.node.FlushBids()
		lost = d.node.BidsLost()
	}
	recs, next, err := node.ListBids(d.db, node.Query(q))
	if err != nil {
		return api.BidPage{}, badQuery(err)
	}
	out := api.BidPage{Bids: make([]api.BidRecord, len(recs)), Next: next, Lost: lost}
	for i, r := range recs {
		out.Bids[i] = api.BidRecord{
			ID: r.ID, ReceivedAt: r.ReceivedAt, JobID: string(r.JobID), Requester: r.Requester, Executor: r.Executor, Resources: r.Resources,
			MaxPrice: r.MaxPrice, Labels: r.Labels, Renewable: r.Renewable, Network: r.Network,
			Outcome: r.Outcome, Price: r.Price, Allocation: string(r.Allocation), Reasons: r.Reasons, Busy: r.Busy,
		}
	}
	return out, nil
}

// badQuery makes the node's refusal of a query a bad request.
func badQuery(err error) error {
	if errors.Is(err, node.ErrBadQuery) {
		return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	return err
}

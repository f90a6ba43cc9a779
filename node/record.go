package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opendms/dms/types"
)

// Errors of the Node actor (the ledger's and checks' are in errors.go).
var (
	// ErrNoExecutor means the invocation names an executor this node lacks.
	ErrNoExecutor = errors.New("node: executor not available")
	// ErrNoNetwork means the task asks for a network and the node gives
	// jobs none.
	ErrNoNetwork = errors.New("node: no network for jobs")
	// ErrNotYours means a requester named another requester's allocation.
	ErrNotYours = errors.New("node: not the allocation's requester")
	// ErrBadInputs means a job's input archive is malformed or unsafe.
	ErrBadInputs = errors.New("node: bad input archive")
	// ErrOutputsTooLarge means a job left too much in /outputs.
	ErrOutputsTooLarge = errors.New("node: outputs too large")
)

const (
	allocPrefix = "alloc/"
	epochKey    = "node/epoch"
)

// allocRecord is what the node's database keeps of every allocation it ever
// locked, from the lock to its outcome.
type allocRecord struct {
	AllocationID types.AllocationID    `json:"allocation_id"`
	JobID        types.JobID           `json:"job_id"`
	Requester    string                `json:"requester"`
	Resources    types.Resources       `json:"resources"`
	Epoch        uint64                `json:"epoch"`
	LockExpiry   time.Time             `json:"lock_expiry"`
	State        types.AllocationState `json:"state"`
	Reason       string                `json:"reason,omitempty"`
	Task         *types.Task           `json:"task,omitempty"`
	Result       *types.Result         `json:"result,omitempty"`
	LockedAt     time.Time             `json:"locked_at"`
	StartedAt    time.Time             `json:"started_at,omitzero"`
	EndedAt      time.Time             `json:"ended_at,omitzero"`
}

func newAllocRecord(l Lock, now time.Time) allocRecord {
	return allocRecord{
		AllocationID: l.AllocationID, JobID: l.JobID, Requester: l.Requester,
		Resources: l.Resources, Epoch: l.Epoch, LockExpiry: l.Expiry,
		State: types.AllocLocked, LockedAt: now,
	}
}

func (r *allocRecord) start(inv *types.Invocation, now time.Time) {
	task := inv.Task
	r.State, r.Task, r.StartedAt = types.AllocRunning, &task, now
}

func (r *allocRecord) end(state types.AllocationState, reason string, res *types.Result, now time.Time) {
	r.State, r.Reason, r.Result, r.EndedAt = state, reason, res, now
}

func (r *allocRecord) lock() Lock {
	return Lock{
		AllocationID: r.AllocationID, JobID: r.JobID, Requester: r.Requester,
		Resources: r.Resources, Epoch: r.Epoch, Expiry: r.LockExpiry,
		Running: r.State == types.AllocRunning,
	}
}

func (r *allocRecord) confirm() *types.Confirm {
	return &types.Confirm{JobID: r.JobID, AllocationID: r.AllocationID, Epoch: r.Epoch, LockExpiry: r.LockExpiry}
}

func (r *allocRecord) status() *types.Status {
	return &types.Status{JobID: r.JobID, AllocationID: r.AllocationID, State: r.State, Reason: r.Reason, Result: r.Result}
}

func (a *nodeActor) persist(r allocRecord) error {
	if err := a.store.Put(allocPrefix+string(r.AllocationID), r); err != nil {
		return fmt.Errorf("node: recording allocation %s: %w", r.AllocationID, err)
	}
	return nil
}

// persistLogged persists a state change that has already happened (an
// allocation started or ended): a failed write is logged, not undone.
func (a *nodeActor) persistLogged(r allocRecord) {
	if err := a.persist(r); err != nil {
		a.log.Error("persisting allocation", "allocation", r.AllocationID, "err", err)
	}
}

func (a *nodeActor) stored(id types.AllocationID) (allocRecord, bool) {
	var r allocRecord
	found, err := a.store.Lookup(allocPrefix+string(id), &r)
	if err != nil {
		a.log.Error("reading allocation record", "allocation", id, "err", err)
	}
	return r, found
}

// restore rebuilds the actor's state from the database after a start or a
// crash: unexpired locks are held again; an allocation that was running when
// the node stopped is recorded as failed (its process is gone).
func restore(n *Node, st Store, blobs Blobs) (*nodeActor, error) {
	a := &nodeActor{
		n: n, store: st, blobs: blobs, log: n.cfg.Logger.With("component", "node"),
		record: n.cfg.Record, ledger: NewLedger(n.cfg.Record.Offered),
		checks: DefaultChecks(), live: map[types.AllocationID]*allocation{},
		holds: map[types.JobID]holdOwner{},
	}
	var epoch uint64 // the highest of node/epoch (written by earlier versions) and every record's
	if _, err := st.Lookup(epochKey, &epoch); err != nil {
		return nil, fmt.Errorf("node: reading lock epoch: %w", err)
	}
	now := n.cfg.Clock()
	var locks []Lock
	err := st.Scan(allocPrefix, func(_ string, v []byte) error {
		var r allocRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("node: decoding allocation record: %w", err)
		}
		epoch = max(epoch, r.Epoch)
		switch {
		case r.State == types.AllocLocked && now.Before(r.LockExpiry):
			locks = append(locks, r.lock())
			a.live[r.AllocationID] = &allocation{rec: r}
		case !r.State.Terminal():
			r.end(types.AllocFailed, "node restarted while the allocation was "+string(r.State), nil, now)
			return a.persist(r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.ledger.Restore(locks, epoch, now)
	return a, nil
}

// sendBid delivers a bid or decline; a bid that cannot be delivered releases
// its soft reservation at once.
func (n *Node) sendBid(ctx context.Context, req *types.BidRequest, msg types.Message) {
	ctx, cancel := context.WithDeadline(ctx, req.Deadline)
	defer cancel()
	if err := n.net.SendBid(ctx, req.Requester, req.ReplyAddrs, msg); err != nil {
		n.cfg.Logger.Debug("sending bid", "job", req.JobID, "requester", req.Requester, "err", err)
		if _, isBid := msg.(*types.Bid); isBid {
			n.root.Send(n.pid, dropHoldMsg{job: req.JobID})
		}
	}
}

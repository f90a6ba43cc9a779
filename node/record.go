package node

import (
	"errors"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Errors of the provider's protocol (the ledger's and checks' are in errors.go).
var (
	// ErrNoExecutor means the invocation names an executor this node lacks.
	ErrNoExecutor = errors.New("node: executor not available")
	// ErrNoNetwork means the task asks for a network and the node gives
	// jobs none.
	ErrNoNetwork = errors.New("node: no network for jobs")
	// ErrNotYours means a requester named another requester's allocation.
	ErrNotYours = errors.New("node: not the allocation's requester")
	// ErrBadInputs means a job's input archive or input files are
	// malformed, unsafe, too large, or collide.
	ErrBadInputs = errors.New("node: bad inputs")
	// ErrOutputsTooLarge means a job left too much in /outputs.
	ErrOutputsTooLarge = errors.New("node: outputs too large")
	// ErrNotRecorded means a state change could not be written to the
	// node's database, so the node did not promise it.
	ErrNotRecorded = errors.New("node: not recorded")
)

// Keys of the node's records in its Store.
const (
	AllocationPrefix = "alloc/"
	// AuditPrefix keys the audit log of locks that ended unused, one
	// entry (their last Allocation record) per key, AuditPrefix + a
	// sequence number of 20 digits; the node keeps the last AuditSize.
	AuditPrefix = "audit/"
	// AuditSize is how many audit entries the node keeps.
	AuditSize = 1024
	epochKey  = "node/epoch"
)

// Allocation is what the node's database keeps of every allocation it ever
// started, from the lock to its outcome, under AllocationPrefix + its ID;
// the record of a lock that ends unused is deleted (see Discard).
// Machine changes it only through jobs.Transition.
type Allocation struct {
	AllocationID types.AllocationID    `json:"allocation_id"`
	JobID        types.JobID           `json:"job_id"`
	Requester    string                `json:"requester"`
	Resources    types.Resources       `json:"resources"`
	Price        types.Credits         `json:"price"` // per core-hour: the bid's, which its receipts bill
	Epoch        uint64                `json:"epoch"`
	LockExpiry   time.Time             `json:"lock_expiry"`
	State        types.AllocationState `json:"state"`
	Reason       string                `json:"reason,omitempty"`
	Fault        types.Fault           `json:"fault,omitempty"`
	Task         *types.Task           `json:"task,omitempty"`
	Result       *types.Result         `json:"result,omitempty"`
	LockedAt     time.Time             `json:"locked_at"`
	StartedAt    time.Time             `json:"started_at,omitzero"`
	EndedAt      time.Time             `json:"ended_at,omitzero"`
}

// Key is the allocation's key in the node's Store.
func (r *Allocation) Key() string { return AllocationPrefix + string(r.AllocationID) }

// Discard reports whether the allocation ended without ever starting: a
// lock that expired, was cancelled, or was found at a restart. Such a
// record is not kept: the shell deletes it, leaving an entry in the
// node's bounded audit log (AuditPrefix), so that Accepts cannot fill the
// node's database.
func (r *Allocation) Discard() bool { return r.State.Terminal() && r.StartedAt.IsZero() }

func newAllocation(l Lock, now time.Time) Allocation {
	return Allocation{
		AllocationID: l.AllocationID, JobID: l.JobID, Requester: l.Requester,
		Resources: l.Resources, Price: l.Price, Epoch: l.Epoch, LockExpiry: l.Expiry,
		State: types.AllocLocked, LockedAt: now,
	}
}

func (r *Allocation) start(task types.Task, now time.Time) error {
	if err := jobs.Transition(r.State, types.AllocRunning); err != nil {
		return err
	}
	r.State, r.Task, r.StartedAt = types.AllocRunning, &task, now
	return nil
}

// end moves the allocation to a terminal state; a fault is kept only for a
// failure.
func (r *Allocation) end(st types.Status, now time.Time) error {
	if err := jobs.Transition(r.State, st.State); err != nil {
		return err
	}
	r.State, r.Reason, r.Result, r.EndedAt = st.State, st.Reason, st.Result, now
	r.Fault = ""
	if st.State == types.AllocFailed {
		r.Fault = st.Fault
	}
	return nil
}

func (r *Allocation) lock() Lock {
	return Lock{
		AllocationID: r.AllocationID, JobID: r.JobID, Requester: r.Requester,
		Resources: r.Resources, Price: r.Price, Epoch: r.Epoch, Expiry: r.LockExpiry,
		Running: r.State == types.AllocRunning,
	}
}

func (r *Allocation) confirm() *types.Confirm {
	return &types.Confirm{JobID: r.JobID, AllocationID: r.AllocationID, Epoch: r.Epoch, LockExpiry: r.LockExpiry}
}

func (r *Allocation) status() types.Status {
	return types.Status{JobID: r.JobID, AllocationID: r.AllocationID, State: r.State, Reason: r.Reason, Fault: r.Fault, Result: r.Result}
}

// History is where the machine reads the records of allocations that are no
// longer live (they ended, or the node restarted): a requester may ask for
// them, re-attach to them or cancel them later. Lookup must be safe to call
// from the machine's owner; it reports read errors itself.
type History interface {
	Lookup(id types.AllocationID) (Allocation, bool)
}

package orchestrator

import (
	"maps"
	"slices"
	"time"

	"github.com/opendms/dms/types"
)

// Outcome is how one attempt of a job ended.
type Outcome string

// Attempt outcomes. Active is the only non-final one.
const (
	OutcomeActive    Outcome = "active"    // bidding, placed or running
	OutcomeCompleted Outcome = "completed" // ran to the end; the job's Result is its
	OutcomeFailed    Outcome = "failed"    // no placement, or the node failed or was lost
	OutcomeCancelled Outcome = "cancelled" // the job was cancelled during this attempt
)

// Attempt is one auction of a job and, if it placed the job, the run on the
// winning node.
type Attempt struct {
	Number       int                `json:"number"`
	AllocationID types.AllocationID `json:"allocation_id,omitempty"` // set once a node confirmed
	Node         string             `json:"node,omitempty"`          // PeerID of that node
	Addrs        []string           `json:"addrs,omitempty"`         // that node's addresses, from its bid
	Epoch        uint64             `json:"epoch,omitempty"`         // the epoch of the node's lock: a restarted requester re-invokes with it
	Price        types.Credits      `json:"price,omitempty"`         // per core-hour: the winning bid's, which the node's receipts must bill
	PlacedAt     time.Time          `json:"placed_at,omitzero"`      // when the node confirmed and the job was invoked: its run, as the requester sees it, spans PlacedAt to EndedAt
	Outcome      Outcome            `json:"outcome"`
	Reason       string             `json:"reason,omitempty"`
	StartedAt    time.Time          `json:"started_at"`
	EndedAt      time.Time          `json:"ended_at,omitzero"`
	Notes        []string           `json:"notes,omitempty"` // late statuses and releases, for the record
	// Unconfirmed lists the nodes offered the job in this attempt that
	// did not confirm (rejected, timed out, unanswered): later attempts
	// exclude them (AuctionConfig.Exclude).
	Unconfirmed []string `json:"unconfirmed,omitempty"`
	// Charge is the budget a failed attempt was charged to; none for an
	// attempt active, completed or cancelled, or Interrupted.
	Charge Charge `json:"charge,omitempty"`
	// Interrupted marks an auction cut short by a restart of the requester:
	// it is charged to no budget.
	Interrupted bool `json:"interrupted,omitempty"`
	// Late marks an attempt opened by a node's late bid: the node had
	// declined the job as busy and offered itself once capacity freed
	// (Job.Bid). A late attempt that fails is charged to no budget.
	Late bool `json:"late,omitempty"`
	// Usage is what the attempt's allocation used, from its node's final
	// status (completed, or failed after it ran); nil without one.
	Usage *types.Usage `json:"usage,omitempty"`
}

// Charge names the budget of a job's spec that a failed attempt used up.
type Charge string

// Charges.
const (
	// ChargeRetry: the program failed (FaultProgram, or no fault named) or
	// exited non-zero, or no node bid: JobSpec.Retries.
	ChargeRetry Charge = "retry"
	// ChargeReschedule: a fault that is not the program's: the node lost or
	// unable to run it, an invocation refused or not sent, an auction in
	// which no bidder confirmed: JobSpec.Reschedule.
	ChargeReschedule Charge = "reschedule"
)

// JobInfo is a read-only snapshot of a job, ready to persist or serve as is.
// Revision grows by one with every change, so a reader can tell snapshots
// apart and order them.
type JobInfo struct {
	ID        types.JobID    `json:"id"`
	Name      string         `json:"name,omitempty"`
	State     types.JobState `json:"state"`
	Reason    string         `json:"reason,omitempty"` // why the job is in State; set in every terminal state
	Node      string         `json:"node,omitempty"`   // PeerID of the node holding or that ran the job
	Attempts  []Attempt      `json:"attempts"`
	Result    *types.Result  `json:"result,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	Revision  uint64         `json:"revision"`
}

// clone copies i deeply, so a snapshot shares nothing with the job.
func (i JobInfo) clone() JobInfo {
	i.Attempts = slices.Clone(i.Attempts)
	for k := range i.Attempts {
		i.Attempts[k].Notes = slices.Clone(i.Attempts[k].Notes)
		i.Attempts[k].Addrs = slices.Clone(i.Attempts[k].Addrs)
		i.Attempts[k].Unconfirmed = slices.Clone(i.Attempts[k].Unconfirmed)
		if u := i.Attempts[k].Usage; u != nil {
			c := *u
			i.Attempts[k].Usage = &c
		}
	}
	if i.Result != nil {
		r := *i.Result
		r.Files = maps.Clone(r.Files)
		r.Sizes = maps.Clone(r.Sizes)
		if r.Usage != nil {
			u := *r.Usage
			r.Usage = &u
		}
		i.Result = &r
	}
	return i
}

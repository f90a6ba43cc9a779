package types

// JobState is where a job stands, as its requester sees it.
type JobState string

// Job states. Completed, Failed and Cancelled are terminal.
const (
	JobPending   JobState = "pending"   // accepted by the requester, not yet auctioned
	JobBidding   JobState = "bidding"   // bid request out, collecting bids
	JobPlaced    JobState = "placed"    // a node locked capability and confirmed
	JobRunning   JobState = "running"   // the allocation started
	JobCompleted JobState = "completed" // ran to the end (the exit code may be non-zero)
	JobFailed    JobState = "failed"    // could not be placed or run; Reason says why
	JobCancelled JobState = "cancelled" // cancelled by its submitter
)

// Terminal reports whether no further transition can happen.
func (s JobState) Terminal() bool {
	return s == JobCompleted || s == JobFailed || s == JobCancelled
}

// AllocationState is where one allocation on one node stands.
type AllocationState string

// Allocation states. Completed, Failed and Cancelled are terminal.
const (
	AllocLocked    AllocationState = "locked"    // capability locked, waiting for the invocation
	AllocRunning   AllocationState = "running"   // executor running
	AllocCompleted AllocationState = "completed" // executor returned; Result holds the outputs
	AllocFailed    AllocationState = "failed"    // could not run; Reason says why
	AllocCancelled AllocationState = "cancelled" // stopped on request
)

// Terminal reports whether no further transition can happen.
func (s AllocationState) Terminal() bool {
	return s == AllocCompleted || s == AllocFailed || s == AllocCancelled
}

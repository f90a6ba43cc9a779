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

// Fault says whose failure ended a failed allocation, so that its requester
// can tell an infrastructure fault, which it reschedules by default, from a
// program that failed, which it retries only when the job asks for retries.
type Fault string

// Faults. The empty Fault on a failed status is read as FaultProgram: a
// requester never runs a job again on a guess.
const (
	// FaultProgram: the program ran and failed (a trap, its timeout, its
	// memory limit) or can never run (a module that does not compile).
	FaultProgram Fault = "program"
	// FaultNode: the node could not run the program to its end through no
	// fault of the program: a fetch failed, the executor was missing or its
	// engine failed, the lock expired, the node restarted or shut down, the
	// node itself panicked.
	FaultNode Fault = "node"
)

package bench

import "errors"

var (
	// ErrBadConfig reports a NetworkConfig or Options that cannot work.
	ErrBadConfig = errors.New("bench: bad configuration")
	// ErrNotReady reports a network whose nodes did not find each other in time.
	ErrNotReady = errors.New("bench: network not ready")
	// ErrNoRepo reports that the examples a scenario reads were not found:
	// run it from inside the repository.
	ErrNoRepo = errors.New("bench: not inside the github.com/opendms/dms repository")
	// ErrJob reports a job that did not complete with the output it should have.
	ErrJob = errors.New("bench: job failed")
	// ErrFlow reports a flow that did not complete as it should have.
	ErrFlow = errors.New("bench: flow failed")
	// ErrBatch reports a batch that did not complete as it should have.
	ErrBatch = errors.New("bench: batch failed")
	// ErrOverBudget reports a node whose home outgrew its store budget.
	ErrOverBudget = errors.New("bench: over the store budget")
)

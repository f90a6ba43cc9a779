package orchestrator

import "errors"

var (
	// ErrInvalidConfig means an auction, job or orchestrator configuration is unusable.
	ErrInvalidConfig = errors.New("orchestrator: invalid config")
	// ErrInvalidSpec means a job spec or bid request is incomplete or out of range.
	ErrInvalidSpec = errors.New("orchestrator: invalid job spec")
	// ErrUnknownJob means no job has the given ID.
	ErrUnknownJob = errors.New("orchestrator: unknown job")
	// ErrJobExists means a job with the given ID was already submitted.
	ErrJobExists = errors.New("orchestrator: job already exists")
	// ErrJobDone means the job already reached a terminal state.
	ErrJobDone = errors.New("orchestrator: job already finished")
	// ErrNotSaved means the Store failed to save a submitted job, which was
	// therefore cancelled.
	ErrNotSaved = errors.New("orchestrator: job not saved")
	// ErrClosed means the orchestrator was closed.
	ErrClosed = errors.New("orchestrator: closed")
)

package jobs

import "errors"

var (
	// ErrInvalidSpec matches every error Parse, ParseFile and Validate return
	// for a bad spec; errors.As gives the *SpecError with each problem.
	ErrInvalidSpec = errors.New("jobs: invalid job spec")
	// ErrBadDuration means a duration could not be parsed.
	ErrBadDuration = errors.New("jobs: bad duration")
	// ErrBadReschedule means a reschedule count could not be parsed.
	ErrBadReschedule = errors.New("jobs: bad reschedule")
	// ErrBadTransition means an allocation state change the lifecycle forbids.
	ErrBadTransition = errors.New("jobs: bad allocation state transition")
	// ErrTimeout means a task was stopped because its timeout passed.
	ErrTimeout = errors.New("jobs: timeout")
	// ErrMemoryLimit means a task needed more memory than its limit.
	ErrMemoryLimit = errors.New("jobs: memory limit exceeded")
	// ErrBadModule means a program could not be loaded: it is not a valid
	// module, or it lacks what the executor needs to start it.
	ErrBadModule = errors.New("jobs: bad module")
	// ErrTrap means a program stopped abnormally (a Wasm trap such as
	// unreachable or an out-of-bounds access) instead of exiting.
	ErrTrap = errors.New("jobs: program trapped")
	// ErrInstanceBroken means a warm Instance can serve no more calls: its
	// program is gone or cannot be trusted to answer (a container that
	// exited, or a call that ran over its timeout). The error wraps why
	// (ErrTrap, ErrMemoryLimit, ErrTimeout) too. Its holder should close
	// it and warm another.
	ErrInstanceBroken = errors.New("jobs: warm instance broken")
)

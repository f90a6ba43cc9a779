package gateway

// CallError is how a call that made a task fails: Err wraps the dms/api
// sentinel that gives the HTTP status (errors.Is and api.StatusOf see
// through CallError), and Task names the task, for the DMS-Task header.
// Invoke, CallEndpoint and TaskResult return one for every failure that
// comes after the task was saved; errors before it (an unknown function, a
// body too large, a policy's refusal) are plain.
type CallError struct {
	Task string
	Err  error
}

func (e *CallError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *CallError) Unwrap() error { return e.Err }

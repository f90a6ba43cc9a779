package wasm

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/opendms/dms/jobs"
)

var _ jobs.Warmer = (*Executor)(nil)

// Warm implements jobs.Warmer: it compiles in's module (or takes it from
// the cache) and holds it until the instance closes. Each call then
// instantiates the compiled module afresh, runs its _start and drops it:
// a WASI command's state ends with its main, and a fresh instance is what
// keeps calls from seeing each other's memory. From the compiled module
// that costs tens of microseconds for a small module. A warm instance
// gives its calls no /inputs and no /outputs: a call's answer is its
// stdout.
func (e *Executor) Warm(ctx context.Context, in jobs.Input) (jobs.Instance, error) {
	if !e.enter() {
		return nil, ErrClosed
	}
	defer e.runs.Done()
	in = in.WithDefaults()
	in.InputDir, in.OutputDir, in.Stdin = "", "", nil
	if err := checkStrings(in); err != nil {
		return nil, err
	}
	prog, release, err := e.program(ctx, in)
	if err != nil {
		return nil, err
	}
	in.Module, in.Load = nil, nil
	i := &instance{e: e, prog: prog, release: release, in: in}
	i.stop, i.cancel = context.WithCancel(context.Background())
	return i, nil
}

// instance is a warm module: compiled, held in the cache until Close.
type instance struct {
	e       *Executor
	prog    *program
	release func()
	in      jobs.Input // every call's args, env and limits

	stop   context.Context // cancelled by Close: ends the calls in flight
	cancel context.CancelFunc
	mu     sync.Mutex // orders calls.Add against Close
	closed bool
	calls  sync.WaitGroup
	once   sync.Once
}

// Call implements jobs.Instance.
func (i *instance) Call(ctx context.Context, c jobs.CallInput) (*jobs.Output, error) {
	if !i.enter() {
		return nil, fmt.Errorf("%w: the instance is closed", ErrClosed)
	}
	defer i.calls.Done()
	if !i.e.enter() {
		return nil, ErrClosed
	}
	defer i.e.runs.Done()
	in := i.in
	if len(c.Env) > 0 {
		in.Env = make(map[string]string, len(i.in.Env)+len(c.Env))
		maps.Copy(in.Env, i.in.Env)
		maps.Copy(in.Env, c.Env)
		if err := checkStrings(in); err != nil {
			return nil, err
		}
	}
	in.Stdin = c.Stdin
	if c.Timeout > 0 && c.Timeout < in.Timeout {
		in.Timeout = c.Timeout
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(i.stop, func() { cancel(fmt.Errorf("%w: the instance closed", ErrClosed)) })()
	return i.e.run(ctx, i.prog, in)
}

func (i *instance) enter() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return false
	}
	i.calls.Add(1)
	return true
}

// Close implements jobs.Instance: calls in flight are stopped and waited
// for, and the module goes back to the cache.
func (i *instance) Close() error {
	i.mu.Lock()
	i.closed = true
	i.mu.Unlock()
	i.cancel()
	i.calls.Wait()
	i.once.Do(i.release)
	return nil
}

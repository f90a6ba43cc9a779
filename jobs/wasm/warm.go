package wasm

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
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
	began := time.Now()
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
	i := &instance{e: e, prog: prog, release: release, in: in, began: began}
	i.stop, i.cancel = context.WithCancel(context.Background())
	return i, nil
}

// instance is a warm module: compiled, held in the cache until Close.
type instance struct {
	e       *Executor
	prog    *program
	release func()
	in      jobs.Input // every call's args, env and limits
	began   time.Time  // when Warm was called
	used    gauge      // the linear memory of the calls in flight

	stop   context.Context // cancelled by Close: ends the calls in flight
	cancel context.CancelFunc
	mu     sync.Mutex // orders calls.Add against Close; guards what follows
	closed bool
	ended  time.Time   // when Close had waited for the calls; zero before
	total  types.Usage // the calls' usage, summed
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
	out, err := i.e.run(ctx, i.prog, in, &i.used)
	if out != nil {
		out.Usage.Calls = 1
		i.mu.Lock()
		i.total = i.total.Add(out.Usage)
		i.mu.Unlock()
	}
	return out, err
}

// Usage implements jobs.Instance: the calls' CPU time, output and count
// summed, the most linear memory its calls held at once, and its wall
// time since Warm. Each call is a fresh instance of the module, so what
// the calls used is all the instance used; compiling the module, which
// Warm may do, is not counted.
func (i *instance) Usage() types.Usage {
	i.mu.Lock()
	defer i.mu.Unlock()
	u, end := i.total, i.ended
	if end.IsZero() {
		end = time.Now()
	}
	u.Wall = end.Sub(i.began)
	u.MemoryPeak, u.MemoryLimit = types.Bytes(i.used.peak.Load()), i.in.Memory
	return u.WithMemoryTime()
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
	i.once.Do(func() {
		i.mu.Lock()
		i.ended = time.Now()
		i.mu.Unlock()
		i.release()
	})
	return nil
}

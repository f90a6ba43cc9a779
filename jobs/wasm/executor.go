package wasm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// DefaultMaxCachedModules is the cache bound when Config leaves it 0.
const DefaultMaxCachedModules = 64

// Config configures an Executor.
type Config struct {
	// CacheDir, if set, keeps compiled code on disk there, so a restarted
	// node does not compile its modules again.
	CacheDir string
	// MaxCachedModules bounds the compiled modules held in memory; 0 means
	// DefaultMaxCachedModules.
	MaxCachedModules int
}

// Executor runs Wasm modules with wazero. It is safe for concurrent use.
type Executor struct {
	runtime wazero.Runtime
	disk    wazero.CompilationCache // nil without Config.CacheDir
	modules *cache
	// meter runs a guest and returns the CPU time it took: onThread
	// (benchmarks swap it to weigh what metering costs).
	meter func(run func()) time.Duration

	stop      context.Context // cancelled by Close, which ends every run
	cancel    context.CancelFunc
	mu        sync.Mutex     // orders runs.Add against Close
	runs      sync.WaitGroup // runs in flight; Close waits for them
	closed    atomic.Bool
	closeOnce sync.Once
}

var _ jobs.Executor = (*Executor)(nil)

// New returns an Executor. Close it when done.
func New(cfg Config) (*Executor, error) {
	if cfg.MaxCachedModules < 0 {
		return nil, fmt.Errorf("wasm: MaxCachedModules %d is negative", cfg.MaxCachedModules)
	}
	if cfg.MaxCachedModules == 0 {
		cfg.MaxCachedModules = DefaultMaxCachedModules
	}
	// Interrupting busy loops at the deadline needs CloseOnContextDone.
	rc := wazero.NewRuntimeConfig().WithCloseOnContextDone(true)
	e := &Executor{meter: onThread}
	e.stop, e.cancel = context.WithCancel(context.Background())
	if cfg.CacheDir != "" {
		disk, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm: compilation cache in %s: %w", cfg.CacheDir, err)
		}
		e.disk, rc = disk, rc.WithCompilationCache(disk)
	}
	ctx := context.Background()
	e.runtime = wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e.runtime); err != nil {
		return nil, errors.Join(fmt.Errorf("wasm: WASI: %w", err), e.Close(ctx))
	}
	e.modules = newCache(cfg.MaxCachedModules, e.compile)
	return e, nil
}

// Name is the executor's name in job specs and capability records.
const Name = "wasm"

// Name implements jobs.Executor.
func (*Executor) Name() string { return Name }

// Stats reports the compiled-module cache's counters.
func (e *Executor) Stats() Stats { return e.modules.snapshot() }

// Close ends every run, waits for them to return (or for ctx to end), then
// frees all compiled code. Runs cut short return ErrClosed, as do later ones.
func (e *Executor) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed.Store(true)
	e.mu.Unlock()
	e.cancel()
	// Closing the runtime under a running guest races with it: wait first.
	done := make(chan struct{})
	go func() {
		e.runs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("wasm: closing: runs still in flight: %w", ctx.Err())
	}
	var err error
	e.closeOnce.Do(func() {
		err = e.runtime.Close(ctx)
		if e.disk != nil {
			err = errors.Join(err, e.disk.Close(ctx))
		}
	})
	return err
}

// enter counts a run in, unless the executor is closed.
func (e *Executor) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return false
	}
	e.runs.Add(1)
	return true
}

// Run implements jobs.Executor. ModuleID is trusted to name Module; when it
// is empty the module's CID is computed.
func (e *Executor) Run(ctx context.Context, in jobs.Input) (*jobs.Output, error) {
	if !e.enter() {
		return nil, ErrClosed
	}
	defer e.runs.Done()
	in = in.WithDefaults()
	prog, release, err := e.program(ctx, in)
	if err != nil {
		return nil, err
	}
	defer release()
	return e.run(ctx, prog, in, &gauge{})
}

// program returns in's module compiled (from the cache, or compiled and
// cached), held until release is called; ErrMemoryLimit when the module
// starts with more memory than in allows. in has its defaults.
func (e *Executor) program(ctx context.Context, in jobs.Input) (*program, func(), error) {
	id := in.ModuleID
	if id == "" {
		id = types.CIDOf(in.Module).String()
	}
	load := func() ([]byte, error) { return in.Module, nil }
	if in.Module == nil && in.Load != nil {
		load = in.Load
	}
	prog, release, err := e.modules.get(ctx, id, load)
	if err != nil {
		return nil, nil, err
	}
	if prog.minMemory > uint64(in.Memory) {
		release()
		return nil, nil, fmt.Errorf("%w: the module starts with %s of memory; the limit is %s",
			jobs.ErrMemoryLimit, types.Bytes(prog.minMemory), in.Memory)
	}
	return prog, release, nil
}

// run instantiates the program and calls its _start under the run's
// limits, and measures it: the CPU time of the thread it ran on, its
// linear memory at the end (counted in used while it runs), its wall time
// and its output.
func (e *Executor) run(ctx context.Context, prog *program, in jobs.Input, used *gauge) (*jobs.Output, error) {
	runCtx, cancel := context.WithTimeout(ctx, in.Timeout)
	defer cancel()
	defer context.AfterFunc(e.stop, cancel)()
	mem := &memory{limit: uint64(in.Memory), used: used}
	defer mem.done()
	stdout := &jobs.LimitedBuffer{Limit: in.OutputLimit}
	stderr := &jobs.LimitedBuffer{Limit: in.OutputLimit}
	cfg, cleanup, err := moduleConfig(runCtx, in, stdout, stderr)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	began := time.Now()
	var started bool
	cpu := e.meter(func() { started, err = e.start(experimental.WithMemoryAllocator(runCtx, mem), prog, cfg) })
	took := time.Since(began)
	out := &jobs.Output{
		Stdout: stdout.Bytes(), StdoutTruncated: stdout.Truncated(),
		Stderr: stderr.Bytes(), StderrTruncated: stderr.Truncated(),
		Duration: took,
		Usage: types.Usage{
			CPU: cpu, Wall: took, MemoryPeak: types.Bytes(mem.size), MemoryLimit: in.Memory,
			OutputBytes: int64(len(stdout.Bytes()) + len(stderr.Bytes())),
		}.WithMemoryTime(),
	}
	if !started {
		return nil, err
	}
	return e.result(ctx, runCtx, in, out, mem, err)
}

// start instantiates prog and calls _start. started is false when the guest
// never ran; err is then the reason.
func (e *Executor) start(ctx context.Context, prog *program, cfg wazero.ModuleConfig) (started bool, err error) {
	mod, err := e.runtime.InstantiateModule(ctx, prog.compiled, cfg)
	switch {
	case err != nil && (ctx.Err() != nil || e.closed.Load()):
		return true, err // stopped in the module's start section, or before
	case err != nil:
		return false, fmt.Errorf("%w: instantiating: %s", jobs.ErrBadModule, firstLine(err))
	}
	defer mod.Close(ctx)
	_, err = mod.ExportedFunction("_start").Call(ctx)
	return true, err
}

// result turns how the guest ended into an Output or an error.
func (e *Executor) result(ctx, runCtx context.Context, in jobs.Input, out *jobs.Output, mem *memory, err error) (*jobs.Output, error) {
	// A stop is checked first: a guest whose sleep the stop cut short may
	// then return normally, and it did not finish its work.
	switch {
	case e.closed.Load():
		return out, ErrClosed
	case ctx.Err() != nil:
		return out, fmt.Errorf("wasm: run stopped: %w", context.Cause(ctx))
	case runCtx.Err() != nil:
		return out, fmt.Errorf("%w: stopped after %s", jobs.ErrTimeout, in.Timeout)
	case err == nil:
		return out, nil
	}
	var exit *sys.ExitError
	isExit := errors.As(err, &exit)
	switch {
	case isExit && exit.ExitCode() == 0:
		return out, nil
	case mem.refused > 0:
		return out, fmt.Errorf("%w: the program asked for %s of memory, over its limit of %s, and then %s",
			jobs.ErrMemoryLimit, types.Bytes(mem.refused), in.Memory, ending(exit, err))
	case isExit:
		out.ExitCode = int(exit.ExitCode())
		return out, nil
	}
	return out, fmt.Errorf("%w: %s", jobs.ErrTrap, firstLine(err))
}

// ending describes how a guest that ran out of memory ended.
func ending(exit *sys.ExitError, err error) string {
	if exit != nil {
		return fmt.Sprintf("exited with code %d", exit.ExitCode())
	}
	return "trapped: " + firstLine(err)
}

// firstLine keeps the first line of a wazero error, whose next lines are a
// Wasm stack trace.
func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

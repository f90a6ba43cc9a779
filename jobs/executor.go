package jobs

import (
	"context"
	"time"

	"github.com/opendms/dms/types"
)

// DefaultOutputLimit caps stdout and, separately, stderr when Input.OutputLimit is 0.
const DefaultOutputLimit = 1 << 20

// Executor runs one task. Implementations are safe for concurrent use.
type Executor interface {
	// Name is the executor name a task asks for ("wasm", "docker").
	Name() string
	// Run runs the program to its exit. It returns an error only when the
	// program could not run to an exit: ErrBadModule, ErrTimeout,
	// ErrMemoryLimit, ErrTrap (wrapped with detail), or the context's error
	// when ctx ends first. A non-zero exit is not an error: Output.ExitCode
	// carries it. Once the program has started, the Output so far comes back
	// with the error.
	Run(ctx context.Context, in Input) (*Output, error)
}

// Input is one run of a program. Zero limits mean the defaults (WithDefaults).
type Input struct {
	ModuleID string // CID of Module: the compile-cache key
	Module   []byte // verified program bytes: a Wasm module, or a `docker save` archive ("" for a named image)
	// Load, when Module is nil, reads the program's bytes (named by
	// ModuleID) for an executor that does not hold the program prepared
	// under ModuleID already (compiled, loaded): a cached program is then
	// never read. Its error says what failed, for the run's reason.
	Load        func() ([]byte, error)
	Args        []string          // argv[1:]
	Env         map[string]string // the whole environment
	Stdin       []byte
	InputDir    string        // host directory given read-only at /inputs; "" for none
	OutputDir   string        // host directory that receives /outputs; "" for none
	Memory      types.Bytes   // hard memory limit; 0 = DefaultMemory
	Timeout     time.Duration // 0 = DefaultTimeout
	OutputLimit int64         // cap on stdout and on stderr each; 0 = DefaultOutputLimit

	// Job names the run (its job and allocation, say) on what an executor
	// creates for it, so leftovers can be traced; "" for none.
	Job string
	// For docker. The wasm executor ignores these.
	Image        string         // image reference; may be "" when Module is an archive of one image
	CPU          types.MilliCPU // CPU limit; 0 = none
	Network      bool           // give the program a network; default none
	WritableRoot bool           // a writable root file system; default read-only
	Pids         int            // process (and thread) limit; 0 = DefaultPids
}

// WithDefaults returns in with every zero or negative limit replaced by its default.
func (in Input) WithDefaults() Input {
	if in.Memory <= 0 {
		in.Memory = DefaultMemory
	}
	if in.Timeout <= 0 {
		in.Timeout = DefaultTimeout
	}
	if in.OutputLimit <= 0 {
		in.OutputLimit = DefaultOutputLimit
	}
	if in.Pids <= 0 {
		in.Pids = DefaultPids
	}
	return in
}

// Output is what a run produced, and what it used.
type Output struct {
	ExitCode                         int
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool
	Duration                         time.Duration
	// Usage is what the run, or the call, used as the executor measured
	// it. Its OutputBytes counts Stdout and Stderr as kept; the output
	// files are the caller's to add, as it stores them. A call's Usage has
	// Calls 1, and what the executor cannot tell apart from the other
	// calls of its instance left 0 (Instance.Usage has it).
	Usage types.Usage
}

// LimitedBuffer is an io.Writer that keeps the first Limit bytes written to
// it and counts, then discards, the rest. Writes never fail, so a program
// that prints too much runs on. Not safe for concurrent use.
type LimitedBuffer struct {
	Limit   int64
	buf     []byte
	written int64
}

// Write keeps what fits under the limit and reports all of p as written.
func (b *LimitedBuffer) Write(p []byte) (int, error) {
	if room := b.Limit - int64(len(b.buf)); room > 0 {
		b.buf = append(b.buf, p[:min(int64(len(p)), room)]...)
	}
	b.written += int64(len(p))
	return len(p), nil
}

// Bytes returns what was kept.
func (b *LimitedBuffer) Bytes() []byte { return b.buf }

// Truncated reports whether anything was discarded.
func (b *LimitedBuffer) Truncated() bool { return b.written > int64(len(b.buf)) }

// Warmer is an Executor that can keep a program warm: ready to serve
// calls, each a run of the program with its own environment and stdin,
// without preparing it again. Implementations are safe for concurrent use.
type Warmer interface {
	Executor
	// Warm prepares in's program (compiled, or its container started) and
	// returns the instance that serves its calls. in's Args, Env and limits
	// are every call's; its Timeout bounds each call. Warm returns the same
	// errors as Run's for a program that cannot be prepared (ErrBadModule,
	// ErrMemoryLimit), and ctx's when ctx ends first.
	Warm(ctx context.Context, in Input) (Instance, error)
}

// Instance is a warm program. Its methods are safe for concurrent use.
type Instance interface {
	// Call runs one call: the program with c's environment added to the
	// instance's and c.Stdin as its stdin, under the instance's limits and
	// c.Timeout when shorter. Its errors are Run's; one matching
	// ErrInstanceBroken also means that no later call will succeed.
	Call(ctx context.Context, c CallInput) (*Output, error)
	// Usage returns what the instance has used since Warm was called, as
	// last measured: CPU time, memory peak, output and calls so far, wall
	// time since Warm (until Close), and memory × time for that span. It
	// never waits for a measurement, and stops changing once Close returns.
	Usage() types.Usage
	// Close ends the instance: calls in flight are stopped, later ones
	// fail. It waits for what the instance started to end.
	Close() error
}

// CallInput is one call of a warm Instance.
type CallInput struct {
	Env     map[string]string // added to the instance's environment, winning over it
	Stdin   []byte
	Timeout time.Duration // 0: the instance's
}

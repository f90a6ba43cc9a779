package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Defaults of Config.
const (
	DefaultMaxOutputFiles = 1000
	DefaultMaxOutputBytes = types.Bytes(256 << 20)
	DefaultMeterEvery     = 250 * time.Millisecond
)

// How long cleanup may take: killing a container, and removing one. Both run
// on contexts of their own, so they happen even when the run's has ended.
const (
	killTimeout   = 10 * time.Second
	removeTimeout = 30 * time.Second
)

// Labels on every container a run creates.
const (
	labelManaged  = "dms.managed"  // "true"
	labelJob      = "dms.job"      // Input.Job
	labelNode     = "dms.node"     // Config.Node
	labelExecutor = "dms.executor" // the Executor's instance: RemoveLeftovers spares its own
)

// Config configures an Executor.
type Config struct {
	// Host is the engine's address (unix:///var/run/docker.sock,
	// tcp://host:2376); "" reads DOCKER_HOST and the other DOCKER_*
	// variables, as the docker CLI does.
	Host string
	// Node names the node in its containers' labels, so RemoveLeftovers
	// removes only this node's when several share an engine; "" for none.
	Node string
	// MaxOutputFiles and MaxOutputBytes bound what a run may leave in
	// /outputs; 0 means DefaultMaxOutputFiles, DefaultMaxOutputBytes.
	MaxOutputFiles int
	MaxOutputBytes types.Bytes
	// MeterEvery is how often a running container's CPU time and memory
	// are sampled from the engine's stats, once the first samples (from
	// 25ms, doubling) have been taken; 0 means DefaultMeterEvery. Each
	// sample costs the engine a read of the container's cgroup; what the
	// container uses after its last sample is not counted.
	MeterEvery time.Duration
}

func (c *Config) validate() error {
	if c.MaxOutputFiles < 0 || c.MaxOutputBytes < 0 {
		return fmt.Errorf("%w: negative output bounds %d files, %d bytes", ErrBadInput, c.MaxOutputFiles, c.MaxOutputBytes)
	}
	if c.MeterEvery < 0 {
		return fmt.Errorf("%w: negative MeterEvery %s", ErrBadInput, c.MeterEvery)
	}
	if c.MeterEvery == 0 {
		c.MeterEvery = DefaultMeterEvery
	}
	if c.MaxOutputFiles == 0 {
		c.MaxOutputFiles = DefaultMaxOutputFiles
	}
	if c.MaxOutputBytes == 0 {
		c.MaxOutputBytes = DefaultMaxOutputBytes
	}
	return nil
}

// Stats counts what an Executor did.
type Stats struct {
	// ArchiveLoads counts image archives loaded into the engine.
	ArchiveLoads int64
	// RemoveFailures counts containers that could not be removed after a
	// run; RemoveLeftovers removes them later.
	RemoveFailures int64
}

// Executor runs containers on a Docker Engine. It is safe for concurrent use.
type Executor struct {
	cli      *client.Client
	cfg      Config
	instance string // labels this Executor's containers
	archives archives
	ncpu     atomic.Int64 // the engine's CPUs; 0 until known
	loads    atomic.Int64
	failures atomic.Int64

	// beforeRemove, if set (by tests), sees every container just before
	// its removal.
	beforeRemove func(container.InspectResponse)

	stop      context.Context // cancelled by Close, which ends every run
	cancel    context.CancelFunc
	mu        sync.Mutex     // orders runs.Add against Close
	runs      sync.WaitGroup // runs in flight and warm instances; Close waits for them
	closed    bool
	closeOnce sync.Once
}

var _ jobs.Executor = (*Executor)(nil)

// New returns an Executor for the engine cfg names. It does not contact the
// engine: Ping tells whether it answers. Close it when done.
func New(cfg Config) (*Executor, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker: engine client: %w", err)
	}
	id := make([]byte, 8)
	rand.Read(id)
	e := &Executor{cli: cli, cfg: cfg, instance: hex.EncodeToString(id)}
	e.stop, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Name is the executor's name in job specs and capability records.
const Name = "docker"

// Name implements jobs.Executor.
func (*Executor) Name() string { return Name }

// Ping reports whether the engine answers; the error wraps ErrEngine when
// it does not.
func (e *Executor) Ping(ctx context.Context) error {
	if _, err := e.cli.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrEngine, err)
	}
	return nil
}

// Stats reports the executor's counters.
func (e *Executor) Stats() Stats {
	return Stats{ArchiveLoads: e.loads.Load(), RemoveFailures: e.failures.Load()}
}

// Close ends every run and closes every warm instance, waits until each
// has removed its containers, and closes the connection to the engine.
// Runs and calls cut short return an error matching ErrClosed, as do later
// ones.
func (e *Executor) Close() error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.runs.Wait()
	var err error
	e.closeOnce.Do(func() { err = e.cli.Close() })
	return err
}

// enter counts a run in, unless the executor is closed.
func (e *Executor) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.runs.Add(1)
	return true
}

// Run implements jobs.Executor. ModuleID is trusted to name Module; when it
// is empty the archive's CID is computed.
func (e *Executor) Run(ctx context.Context, in jobs.Input) (*jobs.Output, error) {
	if !e.enter() {
		return nil, ErrClosed
	}
	defer e.runs.Done()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(e.stop, func() { cancel(ErrClosed) })()
	in = in.WithDefaults()
	if err := checkInput(in); err != nil {
		return nil, err
	}
	image, err := e.image(ctx, in)
	if err != nil {
		return nil, e.stopped(ctx, err)
	}
	r := &run{e: e, in: in, image: image}
	defer r.remove()
	if err := r.create(ctx); err != nil {
		return nil, e.stopped(ctx, err)
	}
	return r.run(ctx)
}

// stopped returns the reason ctx ended, when it did, instead of err (an
// engine call failing because of it).
func (e *Executor) stopped(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("docker: run stopped: %w", context.Cause(ctx))
	}
	return err
}

// nanoCPUs turns a CPU limit into the engine's unit, at most the engine's
// CPUs (it refuses more). 0 is no limit.
func (e *Executor) nanoCPUs(ctx context.Context, cpu types.MilliCPU) int64 {
	if cpu <= 0 {
		return 0
	}
	if e.ncpu.Load() == 0 {
		if info, err := e.cli.Info(ctx); err == nil && info.NCPU > 0 {
			e.ncpu.Store(int64(info.NCPU))
		}
	}
	milli := int64(cpu)
	if n := e.ncpu.Load(); n > 0 {
		milli = min(milli, n*1000)
	}
	return milli * 1_000_000
}

// RemoveLeftovers removes the containers (and their volumes) that runs of
// an earlier Executor for this node left behind, such as after a crash,
// and says how many it removed. Runs in flight are not touched.
func (e *Executor) RemoveLeftovers(ctx context.Context) (int, error) {
	f := filters.NewArgs(filters.Arg("label", labelManaged+"=true"))
	if e.cfg.Node != "" {
		f.Add("label", labelNode+"="+e.cfg.Node)
	}
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return 0, engineError("listing containers", err)
	}
	removed := 0
	var errs []error
	for _, c := range list {
		if c.Labels[labelExecutor] == e.instance {
			continue
		}
		err := e.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		switch {
		case err == nil:
			removed++
		case !cerrdefs.IsNotFound(err):
			errs = append(errs, engineError("removing container "+c.ID, err))
		}
	}
	return removed, errors.Join(errs...)
}

// engineError wraps an engine call's error, marking a failure to reach the
// engine with ErrEngine.
func engineError(doing string, err error) error {
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("%w: %s: %w", ErrEngine, doing, err)
	}
	return fmt.Errorf("docker: %s: %w", doing, err)
}

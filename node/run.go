package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// errCancelled is the cause of an allocation's context when its requester cancels it.
type errCancelled struct{ reason string }

func (e errCancelled) Error() string { return "cancelled by requester: " + e.reason }

// errStopped is the cause of an allocation's context when the node stops
// it on its own (Stop with ByNode): reason says why.
type errStopped struct{ reason string }

func (e errStopped) Error() string { return e.reason }

// allocRun is one running allocation: fetching, executing, storing
// outputs, in a goroutine owned by the Node that reports the end to the
// Node actor. It is not an actor of its own: each actor spawned puts a key
// in protoactor's process registry, 32,768 maps that keep their buckets for
// good once used (docs/architecture.md has the figures).
type allocRun struct {
	n      *Node
	rec    Allocation
	exec   jobs.Executor
	blobs  Blobs
	handle *runHandle // the actor's; a warm run sets its instance there
}

// run executes the task, or keeps a warm task's program serving calls
// (warm.go), and says how it ended. A panic in the executor (or
// in this node's own code on the way) is contained here: it fails the
// allocation, the node's fault, and the node goes on.
func (x *allocRun) run(ctx context.Context) (st types.Status) {
	defer func() {
		if r := recover(); r != nil {
			x.n.cfg.Logger.Error("allocation run panicked", "allocation", x.rec.AllocationID,
				"executor", x.exec.Name(), "panic", r, "stack", string(debug.Stack()))
			st = x.status(types.AllocFailed, fmt.Sprintf("node: the %s executor panicked: %v", x.exec.Name(), r), types.FaultNode, nil)
		}
	}()
	var res *types.Result
	var err error
	var released string // why a warm instance was released
	if x.rec.Task.Warm != nil {
		res, released, err = x.warm(ctx)
	} else {
		res, err = x.execute(ctx)
	}
	var cancelled errCancelled
	var stopped errStopped
	switch {
	case errors.As(context.Cause(ctx), &cancelled):
		return x.status(types.AllocCancelled, cancelled.Error(), "", nil)
	case errors.As(context.Cause(ctx), &stopped):
		return x.status(types.AllocFailed, stopped.reason, types.FaultNode, nil)
	case released != "":
		return x.status(types.AllocCompleted, released, "", res)
	case ctx.Err() != nil:
		return x.status(types.AllocFailed, "node shutting down", types.FaultNode, nil)
	case err != nil:
		return x.status(types.AllocFailed, err.Error(), faultOf(err), res)
	}
	return x.status(types.AllocCompleted, "", "", res)
}

func (x *allocRun) status(state types.AllocationState, reason string, fault types.Fault, res *types.Result) types.Status {
	return types.Status{JobID: x.rec.JobID, AllocationID: x.rec.AllocationID, State: state, Reason: reason, Fault: fault, Result: res}
}

// faultOf says whose fault a failed run was. The program's: it trapped, ran
// out of time or memory, cannot be loaded, wrote too much, or came with a
// bad input archive or bad input files; running it elsewhere would fail the
// same way. Anything
// else (a fetch from the requester, the container engine, the node's disk)
// is the node's: another node may well run it.
func faultOf(err error) types.Fault {
	for _, program := range []error{jobs.ErrTrap, jobs.ErrTimeout, jobs.ErrMemoryLimit, jobs.ErrBadModule, ErrOutputsTooLarge, ErrBadInputs} {
		if errors.Is(err, program) {
			return types.FaultProgram
		}
	}
	return types.FaultNode
}

// execute fetches the task's program and inputs, runs it in a scratch
// directory and stores its outputs as blobs. A run that failed after
// producing output (a timeout, the memory limit) returns both.
func (x *allocRun) execute(ctx context.Context) (*types.Result, error) {
	dir := filepath.Join(x.n.cfg.WorkDir, string(x.rec.AllocationID))
	defer os.RemoveAll(dir)
	began := x.n.cfg.Clock()
	in, err := x.prepare(ctx, dir)
	began = x.phase(PhaseFetch, began, err)
	if err != nil {
		return nil, err
	}
	out, runErr := x.exec.Run(ctx, in)
	began = x.phase(PhaseExecute, began, runErr)
	if out == nil {
		return nil, runErr
	}
	res, err := x.storeOutputs(ctx, out, in.OutputDir)
	x.phase(PhaseStore, began, err)
	if err != nil {
		return nil, err
	}
	res.Usage = usageOf(out, res)
	return res, runErr
}

// phase tells Config.Phase that a phase that began then ended now, and
// returns now: when the next one begins.
func (x *allocRun) phase(name string, began time.Time, err error) time.Time {
	now := x.n.cfg.Clock()
	if f := x.n.cfg.Phase; f != nil {
		f(x.rec.AllocationID, name, began, err)
	}
	return now
}

// usageOf is what a run used: its executor's measure, with the output
// files it left added to its output.
func usageOf(out *jobs.Output, res *types.Result) *types.Usage {
	u := out.Usage
	for _, c := range res.Files {
		u.OutputBytes += res.Sizes[c]
	}
	return &u
}

func (x *allocRun) prepare(ctx context.Context, dir string) (jobs.Input, error) {
	t := x.rec.Task
	in := jobs.Input{
		ModuleID: t.Module, Args: t.Args, Env: t.Env, Memory: t.Resources.Memory,
		Timeout: t.Timeout, OutputLimit: x.n.cfg.OutputLimit, OutputDir: filepath.Join(dir, "outputs"),
		Job:   fmt.Sprintf("%s/%s", x.rec.JobID, x.rec.AllocationID),
		Image: t.Image, CPU: t.Resources.CPU, Network: t.Network, WritableRoot: t.WritableRoot, Pids: t.Pids,
	}
	var err error
	if t.Module != "" { // a docker task may name its image only
		// Read only if the executor has not prepared this program already:
		// re-reading and re-hashing a 2.5 MB module cost ~2 ms a run.
		in.Load = func() ([]byte, error) {
			bin, err := x.fetch(ctx, t.Module)
			if err != nil {
				return nil, fmt.Errorf("fetching module: %w", err)
			}
			return bin, nil
		}
	}
	if t.Stdin != "" {
		if in.Stdin, err = x.fetch(ctx, t.Stdin); err != nil {
			return in, fmt.Errorf("fetching stdin: %w", err)
		}
	}
	if err := os.MkdirAll(in.OutputDir, 0o700); err != nil {
		return in, fmt.Errorf("node: scratch directory: %w", err)
	}
	if t.Inputs != "" || len(t.Files) > 0 {
		in.InputDir = filepath.Join(dir, "inputs")
	}
	if t.Inputs != "" {
		archive, err := x.fetch(ctx, t.Inputs)
		if err != nil {
			return in, fmt.Errorf("fetching inputs: %w", err)
		}
		if err := untar(archive, in.InputDir, x.n.cfg.MaxBlob); err != nil {
			return in, err
		}
	}
	if len(t.Files) > 0 {
		if err := x.placeFiles(ctx, in.InputDir, t.Files); err != nil {
			return in, err
		}
	}
	return in, nil
}

// Fetching a task's blob from its requester is tried again after a failure
// (fetchRetryBase, doubling, at most fetchRetryCap apart) for up to
// fetchPatience: long enough to ride out a restart of the requester.
const (
	fetchPatience  = 15 * time.Second
	fetchRetryBase = 100 * time.Millisecond
	fetchRetryCap  = 2 * time.Second
)

// fetch returns a blob from the local store, or fetches it from the requester
// and keeps it (a module used again is not fetched again).
func (x *allocRun) fetch(ctx context.Context, cid string) ([]byte, error) {
	if x.blobs.Has(cid) {
		return x.blobs.Get(cid)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchPatience)
	defer cancel()
	wait := fetchRetryBase
	for {
		data, err := x.n.net.FetchBlob(ctx, x.rec.Requester, cid)
		if err == nil {
			if _, err := x.blobs.Put(data); err != nil {
				return nil, err
			}
			return data, nil
		}
		select {
		case <-ctx.Done():
			return nil, err // the last failure says why
		case <-time.After(wait):
		}
		x.n.cfg.Logger.Debug("fetching a blob again", "cid", cid, "err", err)
		wait = min(2*wait, fetchRetryCap)
	}
}

// Limits on what one allocation may leave in /outputs.
const (
	maxOutputFiles = 1000
	maxOutputBytes = 256 << 20
)

func (x *allocRun) storeOutputs(ctx context.Context, out *jobs.Output, outDir string) (*types.Result, error) {
	res := &types.Result{
		ExitCode: out.ExitCode, StdoutTruncated: out.StdoutTruncated, StderrTruncated: out.StderrTruncated,
		DurationMillis: out.Duration.Milliseconds(), Sizes: map[string]int64{},
	}
	var err error
	if res.Stdout, err = x.put(ctx, out.Stdout, res.Sizes); err != nil {
		return nil, err
	}
	if res.Stderr, err = x.put(ctx, out.Stderr, res.Sizes); err != nil {
		return nil, err
	}
	res.Files, err = x.storeFiles(ctx, outDir, res.Sizes)
	return res, err
}

// storeFiles stores the files under outDir as result blobs, and returns
// them by path; sizes gets the size of each.
func (x *allocRun) storeFiles(ctx context.Context, outDir string, sizes map[string]int64) (map[string]string, error) {
	files := map[string]string{}
	var total int64
	err := filepath.WalkDir(outDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if total += info.Size(); total > maxOutputBytes || len(files) >= maxOutputFiles {
			return fmt.Errorf("%w: outputs over %d files or %s", ErrOutputsTooLarge, maxOutputFiles, types.Bytes(maxOutputBytes))
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(outDir, path)
		files[filepath.ToSlash(rel)], err = x.put(ctx, data, sizes)
		return err
	})
	if len(files) == 0 {
		files = nil
	}
	return files, err
}

// put stores a result blob, notes its size in sizes and queues its
// announcement in the DHT.
func (x *allocRun) put(ctx context.Context, data []byte, sizes map[string]int64) (string, error) {
	c, err := x.blobs.Put(data)
	if err != nil {
		return "", fmt.Errorf("node: storing result: %w", err)
	}
	sizes[c] = int64(len(data))
	x.n.announce(c)
	return c, nil
}

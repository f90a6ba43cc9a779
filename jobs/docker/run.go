package docker

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dockertypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// minMemory is the least memory limit the engine accepts.
const minMemory = types.Bytes(6 << 20)

const (
	// drainTimeout bounds the wait for the rest of stdout and stderr once
	// the program has exited.
	drainTimeout = 5 * time.Second
	// createTimeout bounds creating a container.
	createTimeout = time.Minute
)

// run is one Run: the containers it created, which it removes.
type run struct {
	e      *Executor
	in     jobs.Input
	image  string // image ID
	holder string // the container holding /inputs and /outputs; "" for none
	id     string // the job's container
}

// checkInput refuses what the engine would refuse less clearly, or not at all.
func checkInput(in jobs.Input) error {
	if in.Image == "" && len(in.Module) == 0 && in.Load == nil {
		return fmt.Errorf("%w: no image named and no image archive given", ErrBadInput)
	}
	if in.Memory < minMemory {
		return fmt.Errorf("%w: a memory limit of %s is under the engine's minimum of %s", ErrBadInput, in.Memory, minMemory)
	}
	for _, a := range in.Args {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("%w: an argument contains a NUL byte", ErrBadInput)
		}
	}
	for k, v := range in.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return fmt.Errorf("%w: environment variable %q: bad name or NUL byte", ErrBadInput, k)
		}
	}
	for _, dir := range []string{in.InputDir, in.OutputDir} {
		if fi, err := os.Stat(dir); dir != "" && (err != nil || !fi.IsDir()) {
			return fmt.Errorf("%w: %s is not a directory", ErrBadInput, dir)
		}
	}
	return nil
}

// labels marks a container of this run; role tells the job's from the holder.
func (r *run) labels(role string) map[string]string {
	return map[string]string{
		labelManaged: "true", labelJob: r.in.Job, labelNode: r.e.cfg.Node,
		labelExecutor: r.e.instance, "dms.role": role,
	}
}

// create creates the holder, when the run has inputs or outputs, copies the
// inputs into it, and creates the job's container.
func (r *run) create(ctx context.Context) error {
	if r.in.InputDir != "" || r.in.OutputDir != "" {
		cfg, host := r.holderConfig()
		if err := r.createContainer(ctx, "the volume holder", cfg, host, &r.holder); err != nil {
			return err
		}
		if err := r.copyIn(ctx); err != nil {
			return err
		}
	}
	cfg, host := r.config(r.e.nanoCPUs(ctx, r.in.CPU))
	return r.createContainer(ctx, "the container", cfg, host, &r.id)
}

// createContainer creates a container and sets *id, for remove. The call is
// not cut short when ctx ends: the engine might create a container whose ID
// it could not tell, and which nothing would remove.
func (r *run) createContainer(ctx context.Context, what string, cfg *container.Config, host *container.HostConfig, id *string) error {
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	c, err := r.e.cli.ContainerCreate(callCtx, cfg, host, nil, nil, "")
	if err != nil {
		return createError(what, err)
	}
	*id = c.ID
	return ctx.Err()
}

func createError(what string, err error) error {
	switch {
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%w: creating %s: %w", ErrNoImage, what, err)
	case cerrdefs.IsInvalidArgument(err):
		return fmt.Errorf("%w: creating %s: %w", ErrBadInput, what, err)
	}
	return engineError("creating "+what, err)
}

// config is the job's container: the image's program with the run's
// arguments, environment, limits and sandbox.
func (r *run) config(nanoCPUs int64) (*container.Config, *container.HostConfig) {
	in := r.in
	cfg := &container.Config{
		Image:        r.image,
		Env:          environ(in.Env),
		Labels:       r.labels("job"),
		AttachStdout: true,
		AttachStderr: true,
	}
	if len(in.Args) > 0 {
		cfg.Cmd = in.Args // after the image's entrypoint, instead of its command
	}
	if len(in.Stdin) > 0 {
		cfg.AttachStdin, cfg.OpenStdin, cfg.StdinOnce = true, true, true
	}
	pids := int64(in.Pids)
	host := &container.HostConfig{
		NetworkMode:    "none",
		ReadonlyRootfs: !in.WritableRoot,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		IpcMode:        container.IPCModePrivate,
		LogConfig:      container.LogConfig{Type: "none"}, // output comes through the attach only
		Resources: container.Resources{
			Memory:     int64(in.Memory),
			MemorySwap: int64(in.Memory), // memory and swap together: no swap
			NanoCPUs:   nanoCPUs,
			PidsLimit:  &pids,
		},
	}
	if in.Network {
		host.NetworkMode = "default"
	}
	if !in.WritableRoot {
		host.Tmpfs = map[string]string{"/tmp": fmt.Sprintf("rw,nosuid,nodev,size=%d", in.Memory)}
	}
	if r.holder != "" {
		host.VolumesFrom = []string{r.holder}
	}
	return cfg, host
}

// holderConfig is a container that is never started: it owns the volumes
// at /inputs and /outputs, and, its root being writable, lets the engine
// copy into them (it refuses to copy into a read-only container) and make
// /outputs writable by any user.
func (r *run) holderConfig() (*container.Config, *container.HostConfig) {
	vols := map[string]struct{}{}
	if r.in.InputDir != "" {
		vols["/inputs"] = struct{}{}
	}
	if r.in.OutputDir != "" {
		vols["/outputs"] = struct{}{}
	}
	cfg := &container.Config{
		Image:      r.image,
		Entrypoint: []string{"/dms-volume-holder"}, // never run; the engine wants a command
		Volumes:    vols,
		Labels:     r.labels("volumes"),
	}
	host := &container.HostConfig{NetworkMode: "none", LogConfig: container.LogConfig{Type: "none"}}
	return cfg, host
}

func environ(env map[string]string) []string {
	var list []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		list = append(list, k+"="+env[k])
	}
	return list
}

// run starts the container, collects its output until it exits or is
// stopped, and judges how it ended.
func (r *run) run(ctx context.Context) (*jobs.Output, error) {
	std, err := r.attach(ctx)
	if err != nil {
		return nil, r.e.stopped(ctx, engineError("attaching to the container", err))
	}
	defer std.close(0)
	// Waiting outlives ctx: a stopped container is waited for after the kill.
	waitCtx, stopWaiting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWaiting()
	exited, failed := r.e.cli.ContainerWait(waitCtx, r.id, container.WaitConditionNextExit)
	if err := r.e.cli.ContainerStart(ctx, r.id, container.StartOptions{}); err != nil {
		return nil, r.e.stopped(ctx, startError(err))
	}
	began := time.Now()
	var m meter
	meterCtx, stopMeter := context.WithCancel(ctx)
	var metering sync.WaitGroup
	metering.Go(func() { m.watch(meterCtx, r.e.cli, r.id, r.e.cfg.MeterEvery) })
	std.feed(r.in.Stdin)
	code, err := r.wait(ctx, exited, failed)
	took := time.Since(began)
	stopMeter()
	metering.Wait()
	std.close(drainTimeout)
	out := &jobs.Output{
		ExitCode: code,
		Stdout:   std.stdout.Bytes(), StdoutTruncated: std.stdout.Truncated(),
		Stderr: std.stderr.Bytes(), StderrTruncated: std.stderr.Truncated(),
		Duration: took,
	}
	cpu, peak := m.read()
	out.Usage = types.Usage{
		CPU: cpu, Wall: took, MemoryPeak: peak, MemoryLimit: r.in.Memory,
		OutputBytes: int64(len(out.Stdout) + len(out.Stderr)),
	}.WithMemoryTime()
	if err != nil {
		return out, err
	}
	return out, r.outcome(ctx)
}

// stdio carries a container's stdin, stdout and stderr over its attach
// connection, with a goroutine for each direction.
type stdio struct {
	att            dockertypes.HijackedResponse
	stdout, stderr *jobs.LimitedBuffer
	ended          chan struct{} // closed when stdout and stderr end
	wg             sync.WaitGroup
	closed         sync.Once
}

// attach connects to the container's stdio; it must come before the start,
// so no output is missed.
func (r *run) attach(ctx context.Context) (*stdio, error) {
	att, err := r.e.cli.ContainerAttach(ctx, r.id, container.AttachOptions{
		Stream: true, Stdin: len(r.in.Stdin) > 0, Stdout: true, Stderr: true,
	})
	if err != nil {
		return nil, err
	}
	s := &stdio{
		att:    att,
		stdout: &jobs.LimitedBuffer{Limit: r.in.OutputLimit},
		stderr: &jobs.LimitedBuffer{Limit: r.in.OutputLimit},
		ended:  make(chan struct{}),
	}
	s.wg.Go(func() {
		defer close(s.ended)
		stdcopy.StdCopy(s.stdout, s.stderr, att.Reader)
	})
	return s, nil
}

// feed writes stdin, if any, then closes it.
func (s *stdio) feed(stdin []byte) {
	if len(stdin) == 0 {
		return
	}
	s.wg.Go(func() {
		s.att.Conn.Write(stdin)
		s.att.CloseWrite()
	})
}

// close waits up to drain for the output to end, then closes the
// connection, which ends both goroutines, and waits for them. Only then may
// stdout and stderr be read.
func (s *stdio) close(drain time.Duration) {
	s.closed.Do(func() {
		select {
		case <-s.ended:
		case <-time.After(drain):
		}
		s.att.Close()
		s.wg.Wait()
	})
}

// startError says why a container did not start: most often, its image's
// program could not be run.
func startError(err error) error {
	if client.IsErrConnectionFailed(err) {
		return engineError("starting the container", err)
	}
	return fmt.Errorf("%w: starting the container: %w", jobs.ErrBadModule, err)
}

// wait waits for the container to exit, and kills it when the run's
// timeout passes or ctx ends first.
func (r *run) wait(ctx context.Context, exited <-chan container.WaitResponse, failed <-chan error) (int, error) {
	runCtx, cancel := context.WithTimeoutCause(ctx, r.in.Timeout, jobs.ErrTimeout)
	defer cancel()
	select {
	case res := <-exited:
		return exitCode(res)
	case err := <-failed:
		return 0, r.e.stopped(ctx, engineError("waiting for the container", err))
	case <-runCtx.Done():
	}
	r.kill()
	code := 0
	select {
	case res := <-exited:
		code = int(res.StatusCode)
	case <-failed:
	case <-time.After(killTimeout):
	}
	if ctx.Err() != nil {
		return code, fmt.Errorf("docker: run stopped: %w", context.Cause(ctx))
	}
	return code, fmt.Errorf("%w: stopped after %s", jobs.ErrTimeout, r.in.Timeout)
}

func exitCode(res container.WaitResponse) (int, error) {
	if res.Error != nil && res.Error.Message != "" {
		return 0, fmt.Errorf("docker: waiting for the container: %s", res.Error.Message)
	}
	return int(res.StatusCode), nil
}

// kill stops the container now, on a context of its own.
func (r *run) kill() {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	r.e.cli.ContainerKill(ctx, r.id, "KILL") // fails only if it is already gone
}

// outcome judges a container that exited: killed at its memory limit, or
// done, with its outputs copied out.
func (r *run) outcome(ctx context.Context) error {
	info, err := r.e.cli.ContainerInspect(ctx, r.id)
	if err != nil {
		return r.e.stopped(ctx, engineError("inspecting the container", err))
	}
	if memoryKilled(info.State) {
		return fmt.Errorf("%w: the container was killed at its memory limit of %s", jobs.ErrMemoryLimit, r.in.Memory)
	}
	if r.in.OutputDir == "" {
		return nil
	}
	return r.e.stopped(ctx, r.copyOut(ctx))
}

// memoryKilled reports whether a container that exited was killed at its
// memory limit. Docker does not always say so: a container the kernel's
// OOM killer stopped sometimes reads OOMKilled=false. Every run has a
// memory limit, and the OOM killer's signal is SIGKILL, so exit code 137
// counts too (a program that exits with 137 of itself is taken for killed).
func memoryKilled(s *container.State) bool {
	return s != nil && (s.OOMKilled || s.ExitCode == 128+int(syscall.SIGKILL))
}

// remove removes the run's containers and their volumes, on a context of
// its own: it runs however the run ended. The job's goes first, as the
// holder's volumes are in use until it is gone.
func (r *run) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	for _, id := range []string{r.id, r.holder} {
		if id == "" {
			continue
		}
		if hook := r.e.beforeRemove; hook != nil {
			if info, err := r.e.cli.ContainerInspect(ctx, id); err == nil {
				hook(info)
			}
		}
		err := r.e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			r.e.failures.Add(1)
		}
	}
}

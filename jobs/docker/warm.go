package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	dockertypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

var _ jobs.Warmer = (*Executor)(nil)

// EnvWarm is set to "1" in a warm container's environment, so a program
// can tell that it serves calls as lines of JSON (doc.go) rather than one
// call as its whole stdin.
const EnvWarm = "DMS_WARM"

// exitGrace is how long an instance whose stdout or stdin broke waits for
// the container's exit, which says better why.
const exitGrace = 2 * time.Second

// Warm implements jobs.Warmer: it starts in's program as one long-running
// container, which serves calls under the contract doc.go describes. The
// container has Run's limits and sandbox; in.InputDir, in.OutputDir and
// in.Stdin are ignored (a call brings its own stdin). Close the instance
// to remove its container; Executor.Close closes every instance.
func (e *Executor) Warm(ctx context.Context, in jobs.Input) (jobs.Instance, error) {
	began := time.Now()
	if !e.enter() {
		return nil, ErrClosed
	}
	i, err := e.warm(ctx, in.WithDefaults())
	if err != nil {
		e.runs.Done()
		return nil, err
	}
	i.began = began
	// Counted in runs until closed, so Executor.Close waits for its removal.
	i.stopAfter = context.AfterFunc(e.stop, func() { i.close(ErrClosed) })
	return i, nil
}

// warm creates, attaches to and starts the instance's container; on an
// error, it removes what it created.
func (e *Executor) warm(ctx context.Context, in jobs.Input) (_ *instance, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(e.stop, func() { cancel(ErrClosed) })()
	in.InputDir, in.OutputDir, in.Stdin = "", "", nil // a call brings its stdin; nothing else goes in or out
	if err := checkInput(in); err != nil {
		return nil, err
	}
	image, err := e.image(ctx, in)
	if err != nil {
		return nil, e.stopped(ctx, err)
	}
	r := &run{e: e, in: in, image: image}
	defer func() {
		if err != nil {
			r.remove()
		}
	}()
	cfg, host := r.config(e.nanoCPUs(ctx, in.CPU))
	env := maps.Clone(in.Env)
	if env == nil {
		env = map[string]string{}
	}
	env[EnvWarm] = "1"
	cfg.Env, cfg.Labels = environ(env), r.labels("warm")
	cfg.AttachStdin, cfg.OpenStdin, cfg.StdinOnce = true, true, false
	if err := r.createContainer(ctx, "the container", cfg, host, &r.id); err != nil {
		return nil, e.stopped(ctx, err)
	}
	att, err := e.cli.ContainerAttach(ctx, r.id, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		return nil, e.stopped(ctx, engineError("attaching to the container", err))
	}
	i := newInstance(r, att)
	if err := e.cli.ContainerStart(ctx, r.id, container.StartOptions{}); err != nil {
		i.shut(ErrInstanceClosed)
		return nil, e.stopped(ctx, startError(err))
	}
	return i, nil
}

// instance is a warm container and the calls in flight on it.
//
// Three goroutines serve it: read demultiplexes the attach into answers
// (stdout) and the stderr tail; write writes request lines on stdin, one
// at a time; watch waits for the container's exit, and kills it once the
// instance is broken. The first failure breaks the instance (fail): every
// call in flight and later fails with its error.
type instance struct {
	r      *run
	att    dockertypes.HijackedResponse
	stderr tail
	reqs   chan []byte   // request lines, to write
	ended  chan struct{} // closed when the attach's output ends

	mu      sync.Mutex
	calls   map[uint64]chan callAnswer // in flight, by id; buffered 1
	next    uint64                     // the last id given
	broken  error                      // why calls fail, once they do
	done    chan struct{}              // closed when broken is set
	started time.Time                  // the container's start
	began   time.Time                  // when Warm was called
	closed  time.Time                  // when Close removed the container; zero before
	total   types.Usage                // the answered calls' usage, summed
	meter   meter                      // the container's CPU time and memory

	stopWatch context.CancelFunc
	stopAfter func() bool // unregisters the executor's close of it
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newInstance(r *run, att dockertypes.HijackedResponse) *instance {
	i := &instance{
		r: r, att: att, stderr: tail{max: stderrTail},
		reqs: make(chan []byte), ended: make(chan struct{}),
		calls: map[uint64]chan callAnswer{}, done: make(chan struct{}),
		started: time.Now(),
	}
	// Waiting outlives Warm's ctx: it ends with the instance.
	watchCtx, stop := context.WithCancel(context.Background())
	i.stopWatch = stop
	exited, failed := r.e.cli.ContainerWait(watchCtx, r.id, container.WaitConditionNextExit)
	i.wg.Go(i.read)
	i.wg.Go(i.write)
	i.wg.Go(func() { i.watch(exited, failed) })
	i.wg.Go(func() { i.meter.watch(watchCtx, r.e.cli, r.id, r.e.cfg.MeterEvery) })
	return i
}

// Call implements jobs.Instance.
func (i *instance) Call(ctx context.Context, c jobs.CallInput) (*jobs.Output, error) {
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("%w: environment variable %q: bad name or NUL byte", ErrBadInput, k)
		}
	}
	timeout := i.r.in.Timeout
	if c.Timeout > 0 && c.Timeout < timeout {
		timeout = c.Timeout
	}
	id, answer, err := i.enter()
	if err != nil {
		return nil, err
	}
	defer i.leave(id)
	env := maps.Clone(i.r.in.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, c.Env)
	line, err := encodeRequest(id, env, c.Stdin)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	began := time.Now()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	out := func() *jobs.Output { return &jobs.Output{Duration: time.Since(began)} }
	for sent := false; ; {
		reqs := i.reqs
		if sent {
			reqs = nil
		}
		select {
		case reqs <- line:
			sent = true
		case a := <-answer:
			return i.answered(a, time.Since(began)), nil
		case <-i.done:
			select { // an answer given before the instance broke counts
			case a := <-answer:
				return i.answered(a, time.Since(began)), nil
			default:
			}
			return out(), i.err()
		case <-ctx.Done():
			// The program may still answer; its answer is dropped.
			return out(), fmt.Errorf("docker: call stopped: %w", context.Cause(ctx))
		case <-timer.C:
			i.fail(fmt.Errorf("%w: %w: a call ran over its timeout of %s, and the program may be stuck", jobs.ErrInstanceBroken, jobs.ErrTrap, timeout))
			return out(), fmt.Errorf("%w: %w: stopped after %s", jobs.ErrInstanceBroken, jobs.ErrTimeout, timeout)
		}
	}
}

// answered is a call's Output: its answer, kept within the output limit,
// and what can be told of its usage alone (its wall time and output; the
// CPU time and memory are the container's, shared by the calls), which
// it adds to the instance's.
func (i *instance) answered(a callAnswer, took time.Duration) *jobs.Output {
	limit := i.r.in.OutputLimit
	out := &jobs.Output{ExitCode: a.ExitCode, Stdout: a.Stdout, Stderr: a.Stderr, Duration: took}
	if int64(len(out.Stdout)) > limit {
		out.Stdout, out.StdoutTruncated = out.Stdout[:limit], true
	}
	if int64(len(out.Stderr)) > limit {
		out.Stderr, out.StderrTruncated = out.Stderr[:limit], true
	}
	out.Usage = types.Usage{
		Wall: took, MemoryLimit: i.r.in.Memory, OutputBytes: int64(len(out.Stdout) + len(out.Stderr)), Calls: 1,
	}.WithMemoryTime()
	i.mu.Lock()
	i.total = i.total.Add(out.Usage)
	i.mu.Unlock()
	return out
}

// Usage implements jobs.Instance: the container's CPU time and memory
// peak at its last sample (every Config.MeterEvery; none after Close), the
// answered calls' output and count, and the wall time since Warm.
func (i *instance) Usage() types.Usage {
	i.mu.Lock()
	defer i.mu.Unlock()
	u, end := i.total, i.closed
	if end.IsZero() {
		end = time.Now()
	}
	u.Wall, u.MemoryLimit = end.Sub(i.began), i.r.in.Memory
	u.CPU, u.MemoryPeak = i.meter.read()
	return u.WithMemoryTime()
}

// enter gives a call its id and the channel of its answer, unless the
// instance is broken.
func (i *instance) enter() (uint64, chan callAnswer, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.broken != nil {
		return 0, nil, i.broken
	}
	i.next++
	ch := make(chan callAnswer, 1)
	i.calls[i.next] = ch
	return i.next, ch, nil
}

func (i *instance) leave(id uint64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.calls, id)
}

// answer hands an answer line to its call. An answer to a call that has
// returned (stopped by its context) is dropped; one to an id never given
// is the program's error.
func (i *instance) answer(line []byte) error {
	id, a, err := decodeAnswer(line)
	if err != nil {
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if id == 0 || id > i.next {
		return fmt.Errorf("%w: an answer to call %d, which was never made", errBadAnswer, id)
	}
	if ch := i.calls[id]; ch != nil {
		delete(i.calls, id) // a second answer is dropped
		ch <- a
	}
	return nil
}

// fail breaks the instance with err, unless it is broken already.
func (i *instance) fail(err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.broken == nil {
		i.broken = err
		close(i.done)
	}
}

func (i *instance) err() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.broken
}

// lost breaks the instance with err, after a moment in which the
// container's exit may break it with a better reason.
func (i *instance) lost(err error) {
	select {
	case <-i.done:
	case <-time.After(exitGrace):
		i.fail(err)
	}
}

// read copies the attach's stdout into answers and its stderr into the
// tail, until it ends.
func (i *instance) read() {
	stdout := &lines{max: maxAnswerLine(i.r.in.OutputLimit), answer: i.answer}
	_, err := stdcopy.StdCopy(stdout, &i.stderr, i.att.Reader)
	close(i.ended)
	switch {
	case errors.Is(err, errBadAnswer):
		i.fail(fmt.Errorf("%w: %w: the program's stdout: %w%s", jobs.ErrInstanceBroken, jobs.ErrTrap, err, i.stderrNote()))
	case err != nil:
		i.lost(fmt.Errorf("%w: %w: reading the container's output: %w%s", jobs.ErrInstanceBroken, jobs.ErrTrap, err, i.stderrNote()))
	default:
		i.lost(fmt.Errorf("%w: %w: the container's output ended%s", jobs.ErrInstanceBroken, jobs.ErrTrap, i.stderrNote()))
	}
}

// write writes request lines on the program's stdin, until it breaks.
func (i *instance) write() {
	for {
		select {
		case line := <-i.reqs:
			if _, err := i.att.Conn.Write(line); err != nil {
				i.lost(fmt.Errorf("%w: %w: writing to the program's stdin: %w%s", jobs.ErrInstanceBroken, jobs.ErrTrap, err, i.stderrNote()))
				return
			}
		case <-i.done:
			return
		}
	}
}

// watch waits for the container to exit, then breaks the instance with
// how it ended; or, once the instance is broken otherwise, kills it.
func (i *instance) watch(exited <-chan container.WaitResponse, failed <-chan error) {
	select {
	case res := <-exited:
		select { // the answers the program gave before it exited count
		case <-i.ended:
		case <-time.After(drainTimeout):
		}
		i.fail(i.exitError(res))
	case err := <-failed:
		i.fail(fmt.Errorf("%w: %w", jobs.ErrInstanceBroken, engineError("waiting for the container", err)))
	case <-i.done:
		i.r.kill()
	}
}

// exitError says why the container exited: its memory limit, or the
// program's exit.
func (i *instance) exitError(res container.WaitResponse) error {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	after := time.Since(i.started).Round(time.Millisecond)
	if info, err := i.r.e.cli.ContainerInspect(ctx, i.r.id); err == nil && memoryKilled(info.State) {
		return fmt.Errorf("%w: %w: the container was killed at its memory limit of %s after %s%s", jobs.ErrInstanceBroken, jobs.ErrMemoryLimit, i.r.in.Memory, after, i.stderrNote())
	}
	if res.Error != nil && res.Error.Message != "" {
		return fmt.Errorf("%w: %w: waiting for the container: %s", jobs.ErrInstanceBroken, jobs.ErrTrap, res.Error.Message)
	}
	return fmt.Errorf("%w: %w: the program exited with code %d after %s%s", jobs.ErrInstanceBroken, jobs.ErrTrap, res.StatusCode, after, i.stderrNote())
}

// stderrNote quotes the tail of the container's stderr, for an error.
func (i *instance) stderrNote() string {
	s := i.stderr.String()
	if s == "" {
		return "; its stderr is empty"
	}
	return fmt.Sprintf("; its stderr ends: %q", s)
}

// Close implements jobs.Instance: calls in flight fail with
// ErrInstanceClosed, and the container is removed. It is idempotent.
func (i *instance) Close() error {
	i.close(ErrInstanceClosed)
	return nil
}

// close shuts the instance down with reason and counts it out of its
// executor's runs.
func (i *instance) close(reason error) {
	i.closeOnce.Do(func() {
		i.stopAfter()
		i.shut(reason)
		i.r.remove()
		i.mu.Lock()
		i.closed = time.Now()
		i.mu.Unlock()
		i.r.e.runs.Done()
	})
}

// shut breaks the instance with reason and ends its goroutines.
func (i *instance) shut(reason error) {
	i.fail(reason)
	i.stopWatch()
	i.att.Close()
	i.wg.Wait()
}

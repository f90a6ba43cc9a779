package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/cgi"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// How a call's job is placed. A call takes the first node that bids
// (enough bids: 1): on this cold path the caller waits for the auction,
// and the first bid in comes from a node with room that answers fast; a
// better-ranked bid later would cost every call the wait. An auction ends
// as soon as every node it waits for has bid or declined, so the window
// only bounds the wait for nodes that stay silent: long enough for a bid
// across a wide-area network, short enough that a call no node can run
// fails (503) in well under a second. When the nodes that could run it
// are only busy, a call waits for one to free up, briefly.
const (
	callBidWindow    = 500 * time.Millisecond
	callEnoughBids   = 1
	callQueueTimeout = 2 * time.Second
)

// Invoke runs a call of the account's function and waits for its answer.
func (s *scope) Invoke(ctx context.Context, name string, c Call) (Response, error) {
	t, spec, err := s.g.plan(s.account, name, c, "/v1/functions/"+name+"/invoke", "")
	if err != nil {
		return Response{}, err
	}
	if err := s.g.enter(s.account); err != nil {
		return Response{}, err
	}
	defer s.g.leave(s.account)
	return s.g.run(ctx, t, spec)
}

// InvokeAsync accepts a call and returns its task, saved and scheduled;
// the call runs on in the gateway, whatever becomes of ctx.
func (s *scope) InvokeAsync(ctx context.Context, name string, c Call) (Task, error) {
	t, spec, err := s.g.plan(s.account, name, c, "/v1/functions/"+name+"/invoke", "")
	if err != nil {
		return Task{}, err
	}
	t.Async = true
	if err := s.g.enter(s.account); err != nil {
		return Task{}, err
	}
	if err := s.g.begin(t); err != nil {
		s.g.leave(s.account)
		return Task{}, err
	}
	go func() {
		defer s.g.leave(s.account)
		s.g.execute(s.g.ctx, t, spec)
	}()
	return t, nil
}

// CallEndpoint runs a call through a published endpoint, with key the
// caller's API key ("" for none). In order: the endpoint (ErrNotFound);
// its auth: with "key", no key is 401, and a key that is not one of the
// endpoint's account's is ErrNotFound, as if the endpoint did not exist;
// the call itself (its revision, body and headers, as Invoke); then the
// endpoint's policy from call.ClientIP at this time, which counts the
// call against the daily quota before it runs (a call refused is not
// counted); then the run, as the endpoint's account, at the endpoint's
// revision (0: the function's default at this call).
func (g *Gateway) CallEndpoint(ctx context.Context, name string, c Call, key string) (Response, error) {
	ep, err := g.published(ctx, name, key)
	if err != nil {
		return Response{}, err
	}
	pol, err := policyOf(ep.EndpointSpec)
	if err != nil {
		return Response{}, err
	}
	c.Revision = ep.Revision
	t, spec, err := g.plan(ep.Account, ep.Function, c, "/e/"+name, name)
	if err != nil {
		return Response{}, err
	}
	if err := g.enter(ep.Account); err != nil {
		return Response{}, err
	}
	defer g.leave(ep.Account)
	ip, _ := netip.ParseAddr(c.ClientIP) // an address that does not parse is in no allowlist
	if err := g.admit(name, pol, ip); err != nil {
		return Response{}, err
	}
	return g.run(ctx, t, spec)
}

// published finds an endpoint for a caller with key.
func (g *Gateway) published(ctx context.Context, name, key string) (Endpoint, error) {
	ep, err := g.anyEndpoint(name)
	switch {
	case err != nil || ep.Auth != AuthKey:
		return ep, err
	case key == "":
		return ep, fmt.Errorf("%w: endpoint %q needs an API key of its account", api.ErrUnauthorized, name)
	}
	acct, err := g.Authenticate(ctx, key)
	if errors.Is(err, api.ErrUnauthorized) || err == nil && acct != ep.Account {
		return ep, notFound("endpoint", name)
	}
	return ep, err
}

// plan makes a call of an account's function ready to run: it resolves
// the revision, reads the body, builds the environment and the job's
// spec, and the task the call will be (scheduled, not saved yet). script
// is the path prefix the call came through, endpoint its endpoint if any.
func (g *Gateway) plan(acct, name string, c Call, script, endpoint string) (Task, *jobs.Spec, error) {
	rev, err := g.revision(acct, name, c.Revision)
	if err != nil {
		return Task{}, nil, err
	}
	body, err := readBody(c.Body, rev.MaxBody)
	if err != nil {
		return Task{}, nil, err
	}
	env, err := callEnv(rev, c, script, len(body))
	if err != nil {
		return Task{}, nil, err
	}
	spec := jobSpec(rev)
	spec.Name = fmt.Sprintf("fn:%s/%s@%d", acct, name, rev.Number)
	spec.Stdin = string(body)
	if spec.Env == nil {
		spec.Env = make(map[string]string, len(env))
	}
	maps.Copy(spec.Env, env) // the call's CGI variables win over the revision's env
	now := g.now()
	t := Task{
		ID: newTaskID(now), Account: acct, Function: name, Revision: rev.Number, Endpoint: endpoint,
		State: TaskScheduled, CreatedAt: now,
	}
	return t, spec, nil
}

// readBody reads a call's body, up to limit bytes.
func readBody(r io.Reader, limit types.Bytes) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: reading the body: %w", api.ErrBadRequest, err)
	case len(body) > int(limit):
		return nil, fmt.Errorf("%w: the body is over the function's limit of %s", api.ErrTooLarge, limit)
	}
	return body, nil
}

// callEnv is a call's CGI environment, within what the revision's own args
// and env leave of jobs.MaxArgsEnv.
func callEnv(rev Revision, c Call, script string, size int) (map[string]string, error) {
	env, err := cgi.Env(cgi.Request{
		Method: cmp.Or(c.Method, http.MethodGet), ScriptName: script, PathInfo: c.Path, RawQuery: c.RawQuery,
		Host: c.Host, Scheme: c.Scheme, Proto: c.Proto, RemoteAddr: c.ClientIP, Header: c.Header,
		ContentLength: int64(size),
	}, jobs.MaxArgsEnv-argsEnvSize(rev))
	switch {
	case errors.Is(err, cgi.ErrTooLarge):
		return nil, fmt.Errorf("%w: %w", api.ErrHeadersTooLarge, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	return env, nil
}

// jobSpec is the job that runs a revision: its program and limits, and
// how it is placed. A call adds its name, stdin and environment.
func jobSpec(rev Revision) *jobs.Spec {
	s := &jobs.Spec{
		Executor: rev.Executor, Image: rev.Image, Args: slices.Clone(rev.Args), Env: maps.Clone(rev.Env),
		Resources: rev.Resources, Timeout: rev.Timeout,
		BidWindow: jobs.Duration(callBidWindow), EnoughBids: callEnoughBids,
		QueueTimeout: jobs.Duration(callQueueTimeout), Reschedule: jobs.DefaultReschedule,
	}
	if rev.Executor == "docker" {
		s.ImageArchive, s.Pids = rev.Module, jobs.DefaultPids
	} else {
		s.Module = rev.Module
	}
	return s
}

// run saves a call's task, runs it and waits for its end. The caller
// has entered (g.enter).
func (g *Gateway) run(ctx context.Context, t Task, spec *jobs.Spec) (Response, error) {
	if err := g.begin(t); err != nil {
		return Response{}, err
	}
	return g.execute(ctx, t, spec)
}

// begin saves a call's task, scheduled, and counts the call of its
// function, in one write, before anything runs.
func (g *Gateway) begin(t Task) error {
	key := callsKey(t.Account, t.Function)
	mu := g.stripe("fn:" + key)
	mu.Lock()
	defer mu.Unlock()
	var calls int64
	if _, err := g.db.Lookup(key, &calls); err != nil {
		return err
	}
	return g.db.Write(map[string]any{taskKey(t.Account, t.ID): t, key: calls + 1}, nil)
}

// execute places a saved task's job and follows it to its end. ctx is the
// caller's, or the gateway's for an async call; the run also detaches
// when the gateway closes.
func (g *Gateway) execute(ctx context.Context, t Task, spec *jobs.Spec) (Response, error) {
	ctx, cancel := g.bind(ctx)
	defer cancel()
	job, err := g.runner.SubmitJob(ctx, spec)
	if err != nil {
		return g.unplaced(ctx, t, err)
	}
	placed, err := g.updateTask(t.Account, t.ID, func(t *Task) error {
		if t.State.Terminal() {
			return fmt.Errorf("%w: task %s is %s", api.ErrConflict, t.ID, t.State)
		}
		t.Job = job.ID
		return nil
	})
	if err != nil { // stopped while it was placed, or not saved
		g.cancelJob(g.ctx, job.ID)
		if placed.State.Terminal() {
			err = failure(placed)
		}
		return Response{}, &CallError{Task: t.ID, Err: err}
	}
	return g.track(ctx, placed)
}

// bind returns ctx, also cancelled when the gateway closes.
func (g *Gateway) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(g.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// track follows a placed task's job to its end and records how it ended.
func (g *Gateway) track(ctx context.Context, t Task) (Response, error) {
	t, job, err := g.follow(ctx, t)
	if err != nil {
		return g.interrupted(ctx, t, err)
	}
	e := g.outputs(job)
	if e.ReadErr != nil && g.ctx.Err() != nil {
		return g.interrupted(ctx, t, e.ReadErr)
	}
	return g.end(t, classify(e))
}

// follow watches a task's job until it ends, moving the task to running
// when the job runs.
func (g *Gateway) follow(ctx context.Context, t Task) (Task, api.Job, error) {
	updates, err := g.runner.WatchJob(ctx, t.Job)
	if err != nil {
		return t, api.Job{}, err
	}
	for j := range updates {
		if j.State.Terminal() {
			return t, j, nil
		}
		if j.State == types.JobRunning && t.State == TaskScheduled {
			t = g.running(t, j)
		}
	}
	if err := ctx.Err(); err != nil {
		return t, api.Job{}, err
	}
	j, err := g.runner.GetJob(ctx, t.Job) // the watch ended early: ask once
	if err == nil && !j.State.Terminal() {
		err = fmt.Errorf("the watch of job %s ended while it was %s", t.Job, j.State)
	}
	return t, j, err
}

// running records that a task's job runs, on which node. A task stopped
// meanwhile is returned as stored.
func (g *Gateway) running(t Task, j api.Job) Task {
	moved, err := g.updateTask(t.Account, t.ID, func(t *Task) error {
		t.Node = j.Node
		return t.move(TaskRunning, g.now())
	})
	if err != nil && !moved.State.Terminal() {
		g.log.Warn("recording a running task", "task", t.ID, "err", err)
		return t
	}
	return moved
}

// outputs reads what classify needs of a finished job: its stdout when it
// exited 0, its stderr when it exited otherwise. It reads with the
// gateway's context: a caller that left does not keep the task from its
// record.
func (g *Gateway) outputs(j api.Job) ending {
	e := ending{Job: j}
	switch r := j.Result; {
	case j.State != types.JobCompleted || r == nil:
	case r.ExitCode == 0:
		e.Stdout, e.ReadErr = g.blob(r.Stdout)
	default:
		e.Stderr, _ = g.blob(r.Stderr) // the exit code says enough without it
	}
	return e
}

func (g *Gateway) blob(c string) ([]byte, error) {
	if c == "" {
		return nil, nil
	}
	return g.runner.GetBlob(g.ctx, c)
}

// unplaced ends a task whose job could not be submitted.
func (g *Gateway) unplaced(ctx context.Context, t Task, err error) (Response, error) {
	v := verdict{State: TaskFailed, Err: api.ErrUnavailable, Reason: "placing the call: " + err.Error()}
	switch {
	case g.ctx.Err() != nil:
		v.Reason = "the gateway closed before the call was placed"
	case ctx.Err() != nil:
		v = verdict{State: TaskStopped, Reason: "the caller left before the call was placed"}
	}
	return g.end(t, v)
}

// interrupted ends a run whose job could not be followed to its end. The
// gateway closing detaches it: the task stays as it is and is taken up at
// the next Start. The caller leaving stops it and cancels its job.
// Anything else fails it.
func (g *Gateway) interrupted(ctx context.Context, t Task, err error) (Response, error) {
	switch {
	case g.ctx.Err() != nil:
		return Response{}, &CallError{Task: t.ID, Err: fmt.Errorf("%w: the gateway is closing; task %s goes on when it starts again", api.ErrUnavailable, t.ID)}
	case ctx.Err() != nil:
		g.cancelJob(g.ctx, t.Job)
		g.end(t, verdict{State: TaskStopped, Reason: "the caller left"})
		return Response{}, &CallError{Task: t.ID, Err: ctx.Err()}
	}
	return g.end(t, verdict{State: TaskFailed, Err: api.ErrBadGateway, Reason: fmt.Sprintf("lost job %s: %s", t.Job, err.Error())})
}

// end records how a task ended and answers its call. A task that ended
// before (stopped while it ran) keeps its end, and the call gets it.
func (g *Gateway) end(t Task, v verdict) (Response, error) {
	ended, err := g.updateTask(t.Account, t.ID, func(t *Task) error { return v.apply(t, g.now()) })
	if err != nil && !ended.State.Terminal() {
		g.log.Error("recording the end of a task", "task", t.ID, "err", err)
		return Response{}, &CallError{Task: t.ID, Err: err}
	}
	if ended.State == TaskCompleted {
		res := v.Response
		return Response{Status: res.Status, Header: res.Header, Body: res.Body, Task: t.ID}, nil
	}
	return Response{}, &CallError{Task: t.ID, Err: failure(ended)}
}

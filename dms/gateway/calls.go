package gateway

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/cgi"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Caller sends calls to warm instances on providers: *dms.DMS implements
// it over one long-lived libp2p stream per provider. An error means the
// call's fate is unknown (the stream broke, the provider is gone): the
// gateway sends it to another instance. Implementations are safe for
// concurrent use.
type Caller interface {
	Call(ctx context.Context, peer string, req *types.CallRequest) (*types.CallReply, error)
}

// How an instance's job is placed. It takes the first node that bids
// (enough bids: 1): the calls that wait for it wait for the auction, and
// the first bid in comes from a node with room that answers fast. An
// auction ends as soon as every node it waits for has bid or declined,
// so the window only bounds the wait for nodes that stay silent. When the
// nodes that could run it are only busy, it waits for one to free up,
// briefly.
const (
	callBidWindow    = 500 * time.Millisecond
	callEnoughBids   = 1
	callQueueTimeout = 2 * time.Second
)

// Bounds of one call. A call waits at most queueWait for an instance
// (beyond its own timeout), and is sent to at most maxAttempts instances:
// calls are at-least-once, so one whose instance was lost with it in
// flight (the stream broke: the call may have run) is sent again.
const (
	queueWait   = 5 * time.Second
	maxAttempts = 3
)

// callInput is what a call hands its function: its CGI environment and
// its body.
type callInput struct {
	Env   map[string]string `json:"env"`
	Stdin []byte            `json:"stdin,omitempty"`
}

// Invoke runs a call of the account's function and waits for its answer.
func (s *scope) Invoke(ctx context.Context, name string, c Call) (Response, error) {
	p, t, in, err := s.g.plan(s.account, name, c, "/v1/functions/"+name+"/invoke", "")
	if err != nil {
		return Response{}, err
	}
	if err := s.g.enter(s.account); err != nil {
		return Response{}, err
	}
	defer s.g.leave(s.account)
	return s.g.run(ctx, p, t, in)
}

// InvokeAsync accepts a call and returns its task, saved with its input
// and scheduled; the call runs on in the gateway, whatever becomes of
// ctx, and after a restart of the gateway if need be.
func (s *scope) InvokeAsync(ctx context.Context, name string, c Call) (Task, error) {
	p, t, in, err := s.g.plan(s.account, name, c, "/v1/functions/"+name+"/invoke", "")
	if err != nil {
		return Task{}, err
	}
	t.Async = true
	if err := s.g.enter(s.account); err != nil {
		return Task{}, err
	}
	if err := s.g.begin(t, &in); err != nil {
		s.g.leave(s.account)
		if dup, ok := asDuplicate(err); ok {
			return s.g.task(s.account, dup.task)
		}
		return Task{}, err
	}
	go func() {
		defer s.g.leave(s.account)
		s.g.execute(s.g.ctx, p, t, in)
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
	p, t, in, err := g.plan(ep.Account, ep.Function, c, "/e/"+name, name)
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
	return g.run(ctx, p, t, in)
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

// plan makes a call of an account's function ready to run: it finds the
// revision's pool, reads the body, builds the environment, and the task
// the call will be (scheduled, not saved yet). script is the path prefix
// the call came through, endpoint its endpoint if any.
func (g *Gateway) plan(acct, name string, c Call, script, endpoint string) (*pool, Task, callInput, error) {
	p, err := g.pool(acct, name, c.Revision)
	if err != nil {
		return nil, Task{}, callInput{}, err
	}
	rev := p.rev
	body, err := readBody(c.Body, rev.MaxBody)
	if err != nil {
		return nil, Task{}, callInput{}, err
	}
	env, err := callEnv(rev, c, script, len(body))
	if err != nil {
		return nil, Task{}, callInput{}, err
	}
	if err := checkIdempotencyKey(c.IdempotencyKey); err != nil {
		return nil, Task{}, callInput{}, err
	}
	now := g.now()
	t := Task{
		ID: newTaskID(now), Account: acct, Function: name, Revision: rev.Number, Endpoint: endpoint,
		Idempotency: c.IdempotencyKey, State: TaskScheduled, CreatedAt: now,
	}
	return p, t, callInput{Env: env, Stdin: body}, nil
}

// pool returns the pool of revision n of a function (0: its default).
func (g *Gateway) pool(acct, name string, n int) (*pool, error) {
	fn, err := g.function(acct, name)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		n = fn.DefaultRevision
	}
	if n < 1 || n > fn.LatestRevision {
		return nil, noRevision(fn, n)
	}
	if p := g.pools.lookup(poolKey{acct, name, n}); p != nil {
		return p, nil
	}
	rev, err := g.revision(acct, name, n)
	if err != nil {
		return nil, err
	}
	p := g.pools.get(acct, fn, rev)
	if p == nil {
		return nil, fmt.Errorf("%w: the gateway is closing", api.ErrUnavailable)
	}
	return p, nil
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

// jobSpec is the job of a warm instance of a revision: its program and
// limits, and how it is placed. The pool adds its name and Warm.
func jobSpec(rev Revision) *jobs.Spec {
	s := &jobs.Spec{
		Executor: rev.Executor, Image: rev.Image, Args: slices.Clone(rev.Args), Env: maps.Clone(rev.Env),
		Resources: rev.Resources, Timeout: rev.Timeout,
		BidWindow: jobs.Duration(callBidWindow), EnoughBids: callEnoughBids,
		QueueTimeout: jobs.Duration(callQueueTimeout),
		// An instance whose node is lost is not placed again: its pool
		// starts another when the load wants one.
		Reschedule: 0,
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
func (g *Gateway) run(ctx context.Context, p *pool, t Task, in callInput) (Response, error) {
	if err := g.begin(t, nil); err != nil {
		if dup, ok := asDuplicate(err); ok {
			return g.replay(ctx, t.Account, dup)
		}
		return Response{}, err
	}
	return g.execute(ctx, p, t, in)
}

// begin saves a call's task, scheduled, and counts the call of its
// function, in one write, before anything runs; with in (an async call)
// also the call's input, so a restart of the gateway can run it.
// A call with an Idempotency-Key also writes the key's record, unless
// an earlier call used the key: then it writes nothing, and returns
// errDuplicate.
func (g *Gateway) begin(t Task, in *callInput) error {
	put := map[string]any{taskKey(t.Account, t.ID): t}
	if in != nil {
		put[inputKey(t.Account, t.ID)] = in
	}
	if t.Idempotency != "" {
		g.idemMu.Lock()
		defer g.idemMu.Unlock()
		if err := g.claim(t, put); err != nil {
			return err
		}
	}
	key := callsKey(t.Account, t.Function)
	mu := g.stripe("fn:" + key)
	mu.Lock()
	defer mu.Unlock()
	var calls int64
	if _, err := g.db.Lookup(key, &calls); err != nil {
		return err
	}
	put[key] = calls + 1
	return g.db.Write(put, nil)
}

// execute runs a saved task's call on the pool's instances and records
// how it ended. ctx is the caller's, or the gateway's for an async call;
// a StopTask of the task ends it too.
func (g *Gateway) execute(ctx context.Context, p *pool, t Task, in callInput) (Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	live := &liveCall{cancel: cancel}
	g.calls.Store(t.ID, live)
	defer g.calls.Delete(t.ID)
	defer context.AfterFunc(g.ctx, func() { cancel(errGatewayClosing) })()
	ctx, stop := context.WithTimeout(ctx, queueWait+time.Duration(p.rev.Timeout))
	defer stop()
	reply, inst, err := g.dispatch(ctx, p, t, in, live)
	for t.Async && errors.Is(err, api.ErrUnavailable) && ctx.Err() == nil {
		// No caller waits for an async call: rather than fail it as soon
		// as no instance can start (the network is only coming up after
		// a restart, say), it waits and tries again within its deadline.
		select {
		case <-ctx.Done():
		case <-time.After(failBackoff):
			reply, inst, err = g.dispatch(ctx, p, t, in, live)
		}
	}
	if err != nil {
		return g.interrupted(ctx, t, err)
	}
	v := classifyCall(reply, inst)
	if v.State == TaskCompleted && (t.Async || t.Idempotency != "") {
		if v.Output, err = g.runner.PutBlob(g.ctx, bytes.NewReader(reply.Stdout)); err != nil {
			v = verdict{State: TaskFailed, Err: api.ErrBadGateway, Reason: "keeping the function's output: " + err.Error()}
		}
	}
	return g.end(t, v)
}

// liveCall is a call in flight, in g.calls by task ID: StopTask cancels
// it, and a task's readers see it running on its instance (a task is
// written when it is accepted and when it ends, not in between).
type liveCall struct {
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	node   string
	job    string
	at     time.Time
}

// sent records the instance a call was sent to, at now.
func (l *liveCall) sent(in *instance, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.node, l.job = in.peer, in.job
	if l.at.IsZero() {
		l.at = now
	}
}

// overlay shows t as running when its call is on an instance.
func (g *Gateway) overlay(t Task) Task {
	v, ok := g.calls.Load(t.ID)
	if !ok || t.State != TaskScheduled {
		return t
	}
	l := v.(*liveCall)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.node != "" {
		at := l.at
		t.State, t.Node, t.Job, t.StartedAt = TaskRunning, l.node, l.job, &at
	}
	return t
}

// errGatewayClosing is the cause of a call's end when the gateway closes.
var errGatewayClosing = errors.New("gateway: closing")

// dispatch sends a call to the pool's instances until one answers: a
// call whose instance was busy, gone or lost (the stream broke) goes to
// another, at most maxAttempts in all.
func (g *Gateway) dispatch(ctx context.Context, p *pool, t Task, in callInput, live *liveCall) (*types.CallReply, *instance, error) {
	req := types.CallRequest{Env: in.Env, Stdin: in.Stdin}
	var last error
	var tried []*instance
	for range maxAttempts {
		inst, err := p.acquire(ctx, tried)
		if err != nil {
			return nil, nil, err
		}
		tried = append(tried, inst)
		if deadline, ok := ctx.Deadline(); ok {
			req.Timeout = time.Until(deadline)
		}
		req.Allocation = inst.alloc
		live.sent(inst, g.now())
		began := time.Now()
		reply, err := inst.call(ctx, g.caller, &req)
		switch {
		case err != nil && ctx.Err() != nil:
			p.release(inst, 0)
			return nil, nil, context.Cause(ctx)
		case err != nil:
			p.lose(inst, "lost: "+err.Error()) // before its slot frees: no queued call gets it
			p.release(inst, 0)
			last = fmt.Errorf("%w: the instance on %s was lost: %w", api.ErrBadGateway, inst.peer, err)
			continue
		case reply.Status == types.CallBusy:
			p.release(inst, 0)
			last = fmt.Errorf("%w: the instance on %s was busy", api.ErrUnavailable, inst.peer)
			continue
		case reply.Status.Retryable():
			// Unknown too is released: the node no longer serves it, and
			// its job may still hold capability.
			p.drop(inst, reply.Status.String()+": "+reply.Error, true)
			p.release(inst, 0)
			last = fmt.Errorf("%w: the instance on %s could not run the call: %s %s", api.ErrBadGateway, inst.peer, reply.Status, redact(reply.Error))
			continue
		}
		p.release(inst, time.Since(began))
		return reply, inst, nil
	}
	return nil, nil, fmt.Errorf("%w (tried %d instances)", last, maxAttempts)
}

// interrupted ends a call that got no answer. The gateway closing
// detaches it: the task stays as it is, and an async one runs again at
// the next Start. A StopTask has ended the task already. The caller
// leaving stops it, and gets its context's error. Anything else fails it.
func (g *Gateway) interrupted(ctx context.Context, t Task, err error) (Response, error) {
	switch cause := context.Cause(ctx); {
	case g.ctx.Err() != nil || errors.Is(cause, errGatewayClosing):
		return Response{}, &CallError{Task: t.ID, Err: fmt.Errorf("%w: the gateway is closing; task %s goes on when it starts again", api.ErrUnavailable, t.ID)}
	case errors.Is(cause, errStopped):
		stopped, _ := g.task(t.Account, t.ID)
		return Response{}, &CallError{Task: t.ID, Err: failure(stopped)}
	case errors.Is(cause, context.Canceled):
		if _, err := g.end(t, verdict{State: TaskStopped, Reason: "the caller left"}); !errors.Is(err, api.ErrConflict) {
			return Response{}, err // the end could not be recorded
		}
		return Response{}, &CallError{Task: t.ID, Err: cause}
	case errors.Is(cause, context.DeadlineExceeded) && !errors.Is(err, api.ErrTooManyRequests) && !errors.Is(err, api.ErrUnavailable):
		return g.end(t, verdict{State: TaskFailed, Err: api.ErrGatewayTimeout, Reason: redact(err.Error())})
	}
	v := verdict{State: TaskFailed, Err: api.ErrBadGateway, Reason: redact(err.Error())}
	for _, e := range []error{api.ErrTooManyRequests, api.ErrUnavailable, api.ErrGatewayTimeout} {
		if errors.Is(err, e) {
			v.Err = e
		}
	}
	var retry *api.RetryError
	if errors.As(err, &retry) {
		v.RetryAfter = retry.After
	}
	return g.end(t, v)
}

// end records how a task ended and answers its call. A task that ended
// before (stopped while it ran) keeps its end, and the call gets it.
func (g *Gateway) end(t Task, v verdict) (Response, error) {
	var input []string // an async task's input goes in the write that ends it
	if t.Async {
		input = []string{inputKey(t.Account, t.ID)}
	}
	ended, err := g.updateTask(t.Account, t.ID, func(t *Task) error { return v.apply(t, g.now()) }, input...)
	if err != nil && !ended.State.Terminal() {
		g.log.Error("recording the end of a task", "task", t.ID, "err", err)
		return Response{}, &CallError{Task: t.ID, Err: err}
	}
	if err != nil && len(input) > 0 { // it ended before (stopped): its input goes now
		if err := g.db.Delete(input[0]); err != nil {
			g.log.Warn("deleting the input of an ended task", "task", t.ID, "err", err)
		}
	}
	if ended.State == TaskCompleted {
		res := v.Response
		return Response{Status: res.Status, Header: res.Header, Body: res.Body, Task: t.ID}, nil
	}
	err = failure(ended)
	if v.RetryAfter > 0 {
		err = &api.RetryError{Err: err, After: v.RetryAfter}
	}
	return Response{}, &CallError{Task: t.ID, Err: err}
}

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

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

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
	rev, t, in, err := s.g.plan(s.account, name, c, "/v1/functions/"+name+"/invoke", "")
	if err != nil {
		return Response{}, err
	}
	if err := s.g.enter(s.account); err != nil {
		return Response{}, err
	}
	defer s.g.leave(s.account)
	return s.g.run(ctx, rev, t, in, nil)
}

// InvokeAsync accepts a call and returns its task, saved with its input
// and scheduled; the call runs on in the gateway (in a group, on the
// member that leads the function's queue), whatever becomes of ctx, and
// after a restart of the gateway if need be.
func (s *scope) InvokeAsync(ctx context.Context, name string, c Call) (Task, error) {
	_, t, in, err := s.g.plan(s.account, name, c, "/v1/functions/"+name+"/invoke", "")
	if err != nil {
		return Task{}, err
	}
	t.Async = true
	if err := s.g.enter(s.account); err != nil {
		return Task{}, err
	}
	defer s.g.leave(s.account)
	o, err := s.g.accept(ctx, t, &in, nil)
	switch {
	case err != nil:
		return Task{}, err
	case o.Duplicate != "":
		return s.g.task(s.account, o.Duplicate)
	}
	return t, nil
}

// CallEndpoint runs a call through a published endpoint, with key the
// caller's API key ("" for none). In order: the endpoint (ErrNotFound);
// its auth: with "key", no key is 401, and a key that is not one of the
// endpoint's account's is ErrNotFound, as if the endpoint did not exist;
// the call itself (its revision, body and headers, as Invoke); then the
// endpoint's policy from call.ClientIP at this time, which counts the
// call against the daily quota before it runs (a call refused is not
// counted; in a group the count is the group's, kept by its log); then
// the run, as the endpoint's account, at the endpoint's revision (0: the
// function's default at this call).
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
	rev, t, in, err := g.plan(ep.Account, ep.Function, c, "/e/"+name, name)
	if err != nil {
		return Response{}, err
	}
	if err := g.enter(ep.Account); err != nil {
		return Response{}, err
	}
	defer g.leave(ep.Account)
	ip, _ := netip.ParseAddr(c.ClientIP) // an address that does not parse is in no allowlist
	now := g.now()
	if r := pol.Check(ip, now, 0); r != nil {
		return Response{}, refused(r)
	}
	res, err := g.run(ctx, rev, t, in, &quotaUse{Endpoint: name, Day: pol.Day(now), Limit: pol.DailyQuota})
	var over errOverQuota
	if errors.As(err, &over) {
		if r := pol.Check(ip, now, over.used); r != nil {
			return Response{}, refused(r)
		}
	}
	return res, err
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
// revision, reads the body, builds the environment, and the task the call
// will be (scheduled, not saved yet). script is the path prefix the call
// came through, endpoint its endpoint if any.
func (g *Gateway) plan(acct, name string, c Call, script, endpoint string) (Revision, Task, callInput, error) {
	rev, err := g.callRevision(acct, name, c.Revision)
	if err != nil {
		return Revision{}, Task{}, callInput{}, err
	}
	body, err := readBody(c.Body, rev.MaxBody)
	if err != nil {
		return Revision{}, Task{}, callInput{}, err
	}
	env, err := callEnv(rev, c, script, len(body))
	if err != nil {
		return Revision{}, Task{}, callInput{}, err
	}
	if err := checkIdempotencyKey(c.IdempotencyKey); err != nil {
		return Revision{}, Task{}, callInput{}, err
	}
	now := g.now()
	t := Task{
		ID: newTaskID(now), Account: acct, Function: name, Revision: rev.Number, Endpoint: endpoint,
		Idempotency: c.IdempotencyKey, State: TaskScheduled, CreatedAt: now,
	}
	return rev, t, callInput{Env: env, Stdin: body}, nil
}

// callRevision returns revision n of a function (0: its default), one a
// call may run.
func (g *Gateway) callRevision(acct, name string, n int) (Revision, error) {
	fn, err := g.function(acct, name)
	if err != nil {
		return Revision{}, err
	}
	if n == 0 {
		n = fn.DefaultRevision
	}
	if n < 1 || n > fn.LatestRevision {
		return Revision{}, noRevision(fn, n)
	}
	return g.revision(acct, name, n)
}

// pool returns the pool of a revision, on the member that leads its
// function's queue.
func (g *Gateway) pool(acct string, rev Revision) (*pool, error) {
	if p := g.pools.lookup(poolKey{acct, rev.Function, rev.Number}); p != nil {
		return p, nil
	}
	fn, err := g.function(acct, rev.Function)
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

// run runs a call and waits for its answer. The caller has entered
// (g.enter). A plain call (no Idempotency-Key) is this gateway's: its
// task is saved here and it runs at once (forwarded, in a group, to the
// member that leads its queue); a keyed one is the group's: accepted
// through the machine, run on the queue's leader, and its answer read
// from its task. quota, for a call through an endpoint, counts the call:
// against its quota through the machine when it has one (Limit > 0), else
// on this gateway.
func (g *Gateway) run(ctx context.Context, rev Revision, t Task, in callInput, quota *quotaUse) (Response, error) {
	if quota != nil && quota.Limit == 0 {
		if err := g.countEndpoint(quota); err != nil {
			return Response{}, err
		}
		quota = nil
	}
	if t.shared() {
		o, err := g.accept(ctx, t, &in, quota)
		switch {
		case err != nil:
			return Response{}, err
		case o.Duplicate != "":
			return g.replay(ctx, t.Account, o.Duplicate)
		}
		if err := g.awaitTask(ctx, t.Account, t.ID); err != nil {
			return Response{}, &CallError{Task: t.ID, Err: err}
		}
		return (&scope{g: g, account: t.Account}).TaskResult(ctx, t.ID)
	}
	if quota != nil {
		if _, err := g.accept(ctx, t, nil, quota); err != nil {
			return Response{}, err
		}
	}
	if err := g.begin(t); err != nil {
		return Response{}, err
	}
	return g.execute(ctx, rev, t, in)
}

// errOverQuota is accept's answer to a call past its endpoint's quota:
// used calls were admitted that day.
type errOverQuota struct{ used int }

func (e errOverQuota) Error() string {
	return fmt.Sprintf("gateway: the quota is used (%d calls)", e.used)
}

// accept admits a call through the state machine: counted against quota,
// and, when the group keeps its task (async or keyed), its task saved
// with in. A call whose key an earlier call used writes nothing and
// answers that call's task (Duplicate). It counts the function's call
// here.
func (g *Gateway) accept(ctx context.Context, t Task, in *callInput, quota *quotaUse) (outcome, error) {
	a := &admission{Task: t, Quota: quota}
	if t.shared() {
		a.Input = in
	}
	// An admission is the same command however often it is applied (its
	// task ID marks it): one whose fate the group could not tell (its
	// leader lost meanwhile) is sent again, and counts once.
	o, err := g.propose(ctx, command{Admit: a})
	for attempt := 1; attempt < maxAttempts && errors.Is(err, api.ErrUnavailable) && g.grp != nil && g.grp.Healthy() && ctx.Err() == nil; attempt++ {
		o, err = g.propose(ctx, command{Admit: a})
	}
	switch {
	case err != nil:
		return o, err
	case o.Over:
		return o, errOverQuota{used: o.Used}
	case o.Busy != "":
		return o, &api.RetryError{Err: fmt.Errorf("%w: %s", api.ErrTooManyRequests, o.Busy), After: busyRetry}
	case o.Duplicate != "" || !t.shared():
		return o, nil
	}
	if g.grp != nil {
		// A kept task runs where its queue is led: a function called
		// for the first time gets its leader now, which then runs it.
		if _, err := g.queueLeader(ctx, t.Account, t.Function); err != nil {
			g.log.Warn("giving a queue a leader", "function", t.Function, "err", err)
		}
	}
	return o, g.countCall(t)
}

// countEndpoint counts a call of an endpoint with no quota on this
// gateway. An endpoint keeps one count, its latest day's: the first call
// of another day deletes the others in the write of its own count.
func (g *Gateway) countEndpoint(q *quotaUse) error {
	mu := g.stripe("ep:" + q.Endpoint)
	mu.Lock()
	defer mu.Unlock()
	var n int
	found, err := g.db.Lookup(epCallsKey(q.Endpoint, q.Day), &n)
	if err != nil {
		return err
	}
	var stale []string
	if !found {
		if stale, err = keys(g.db, epCallsOf(q.Endpoint)); err != nil {
			return err
		}
	}
	return g.db.Write(map[string]any{epCallsKey(q.Endpoint, q.Day): n + 1}, stale)
}

// begin saves a plain call's task, scheduled, and counts the call of its
// function, in one write, before anything runs.
func (g *Gateway) begin(t Task) error {
	return g.countCall(t, taskKey(t.Account, t.ID), t)
}

// countCall counts a call of its function on this gateway, writing the
// records of put (key, value pairs) with the count.
func (g *Gateway) countCall(t Task, put ...any) error {
	key := callsKey(t.Account, t.Function)
	mu := g.stripe("fn:" + key)
	mu.Lock()
	defer mu.Unlock()
	var calls int64
	if _, err := g.db.Lookup(key, &calls); err != nil {
		return err
	}
	w := map[string]any{key: calls + 1}
	for i := 0; i+1 < len(put); i += 2 {
		w[put[i].(string)] = put[i+1]
	}
	return g.db.Write(w, nil)
}

// execute runs a saved task's call on its queue's instances and records
// how it ended. ctx is the caller's, or the gateway's for a task the
// group keeps; a StopTask of the task ends it too.
func (g *Gateway) execute(ctx context.Context, rev Revision, t Task, in callInput) (Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	live := &liveCall{cancel: cancel}
	g.calls.Store(t.ID, live)
	defer g.calls.Delete(t.ID)
	defer context.AfterFunc(g.ctx, func() { cancel(errGatewayClosing) })()
	ctx, stop := context.WithTimeout(ctx, queueWait+time.Duration(rev.Timeout))
	defer stop()
	reply, inst, err := g.dispatch(ctx, rev, t, in, live)
	for t.Async && errors.Is(err, api.ErrUnavailable) && ctx.Err() == nil {
		// No caller waits for an async call: rather than fail it as soon
		// as no instance can start (the network is only coming up after
		// a restart, say), it waits and tries again within its deadline.
		select {
		case <-ctx.Done():
		case <-time.After(failBackoff):
			reply, inst, err = g.dispatch(ctx, rev, t, in, live)
		}
	}
	if err != nil {
		return g.interrupted(ctx, t, err)
	}
	v := classifyCall(reply, inst)
	if v.State == TaskCompleted && t.shared() {
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

// endPatience bounds how long a kept task's end is tried again while the
// group has no quorum.
const endPatience = time.Minute

// errGatewayClosing is the cause of a call's end when the gateway closes.
var errGatewayClosing = errors.New("gateway: closing")

// dispatch sends a call to its queue: here when this gateway leads it,
// else forwarded to the member that does. A call whose leader was lost
// with it in flight (calls are at-least-once) waits for the queue to move
// and goes to the new leader. One the member named leader refused (it
// does not lead the queue as far as it has applied) goes to whoever
// leads it once one of the two has caught up (awaitLeader): the queue
// will not move, its leader is alive.
func (g *Gateway) dispatch(ctx context.Context, rev Revision, t Task, in callInput, live *liveCall) (*types.CallReply, *instance, error) {
	if g.grp == nil {
		return g.dispatchHere(ctx, t.Account, rev, in, live)
	}
	var last error
	var refused refusals
	for lost := 0; lost < maxAttempts; {
		leader, err := g.queueLeader(ctx, t.Account, t.Function)
		if err != nil {
			return nil, nil, err
		}
		if leader == g.self {
			return g.dispatchHere(ctx, t.Account, rev, in, live)
		}
		reply, inst, err := g.forward(ctx, leader, rev, t, in)
		switch {
		case err == nil:
			live.sent(inst, g.now())
			return reply, inst, nil
		case ctx.Err() != nil:
			return nil, nil, context.Cause(ctx)
		case errors.Is(err, errNotLeader):
			last, err = err, g.awaitLeader(ctx, t.Account, t.Function, leader, &refused)
		case errors.Is(err, errLeaderLost):
			lost++
			last, err = err, g.awaitQueue(ctx, t.Account, t.Function, leader)
		default:
			return nil, nil, err // the leader's answer
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w (%w)", err, last)
		}
	}
	return nil, nil, fmt.Errorf("%w: forwarding the call: %w", api.ErrBadGateway, last)
}

// dispatchHere sends a call to the instances of this gateway's pool of
// its revision until one answers: a call whose instance was busy, gone
// or lost (the stream broke) goes to another, at most maxAttempts in all.
// The span of a traced call (ctx's, docs/observability.md) is told its
// account, function, revision and queue wait.
func (g *Gateway) dispatchHere(ctx context.Context, acct string, rev Revision, in callInput, live *liveCall) (*types.CallReply, *instance, error) {
	p, err := g.pool(acct, rev)
	if err != nil {
		return nil, nil, err
	}
	req := types.CallRequest{Env: in.Env, Stdin: in.Stdin}
	var last error
	var tried []*instance
	span := trace.SpanFromContext(ctx) // recording only for a traced call
	var queued time.Time
	if span.IsRecording() {
		queued = time.Now()
		span.SetAttributes(attribute.String("account", acct), attribute.String("function", rev.Function), attribute.Int("revision", rev.Number))
	}
	for range maxAttempts {
		inst, err := p.acquire(ctx, tried)
		if err != nil {
			return nil, nil, err
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.String("queue_wait", time.Since(queued).String()))
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
			why := redact(reply.Error)
			if reply.Status == types.CallUnknown && inst.ended != nil {
				if ended := inst.whyUnknown(ctx); ended != "" {
					why += "; " + redact(ended) // its job failed: the module does not compile, say
				}
			}
			// Unknown too is released: the node no longer serves it, and
			// its job may still hold capability.
			p.drop(inst, reply.Status.String()+": "+reply.Error, true)
			p.release(inst, 0)
			last = fmt.Errorf("%w: the instance on %s could not run the call: %s %s", api.ErrBadGateway, inst.peer, reply.Status, why)
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
	// A kept task's end goes through the group: a member that cannot
	// reach a quorum (an election, a partition) tries again a while; the
	// task's queue may move meanwhile, and its new leader run it again.
	for waited := time.Duration(0); errors.Is(err, api.ErrUnavailable) && t.shared() && g.ctx.Err() == nil && waited < endPatience; waited += noQuorumRetry {
		select {
		case <-g.ctx.Done():
		case <-time.After(noQuorumRetry):
		}
		ended, err = g.updateTask(t.Account, t.ID, func(t *Task) error { return v.apply(t, g.now()) }, input...)
	}
	if err != nil && !ended.State.Terminal() {
		g.log.Error("recording the end of a task", "task", t.ID, "err", err)
		return Response{}, &CallError{Task: t.ID, Err: err}
	}
	if err == nil {
		g.onTaskEnd(ended.State)
	}
	if err != nil && len(input) > 0 { // it ended before (stopped): its input goes now
		if err := g.update(g.ctx, func(t *tx) error { t.delete(input...); return nil }); err != nil {
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

package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// A function's queue (OpenWhisk's per-action queue) and its warm
// instances live in a pool, one per revision that is called.
//
// Dispatch is push, least outstanding work first: every call of the pool
// goes through this gateway, which therefore knows exactly how many calls
// each instance runs, and sends the next call to the instance with the
// fewest (below its concurrency). OpenWhisk's container proxies pull
// from a shared queue because many invokers read one Kafka topic; here
// one gateway holds the queue, and pushing costs no extra round trip.
//
// With no instance free, a call waits in the pool's FIFO queue, at most
// MaxQueue calls deep: a call finding it full is refused at once (429,
// Retry-After), never left to wait without bound. The scaler decides from
// the load (orchestrator.Scale) how many instances the pool wants and
// auctions the missing ones as jobs; idle instances are released by
// their providers after the keep-alive, and the scaler replaces those
// under the minimum.

// Timing of the pools.
const (
	// scaleEvery is how often a pool's scaler looks at its load when
	// nothing wakes it sooner (a call queued, an instance lost).
	scaleEvery = 50 * time.Millisecond
	// startTimeout bounds the start of an instance: its auction, lock and
	// invocation (OpenWhisk's timeout on container creation).
	startTimeout = 10 * time.Second
	// failBackoff is how long after an auction that found no node the
	// pool refuses calls it cannot serve (503) rather than auction again
	// for each.
	failBackoff = time.Second
	// poolIdle is how long a pool with nothing in it (no instance, no
	// call, no minimum) lives on.
	poolIdle = time.Minute
	// rateHalfLife is the half-life of the arrival rate and the duration
	// the scaler reads.
	rateHalfLife = time.Second
)

type poolKey struct {
	account, function string
	revision          int
}

// instance is a warm instance of a pool, as the gateway sees it.
type instance struct {
	job       string
	peer      string
	alloc     types.AllocationID
	limit     int       // calls at once
	inFlight  int       // guarded by the pool's mu
	calls     int64     // guarded by the pool's mu
	lastCall  time.Time // guarded by the pool's mu
	startedAt time.Time
	gone      bool // guarded by the pool's mu: dropped from the pool
	// lost ends the calls in flight on the instance when it is lost (its
	// provider died or was cut off): they go to other instances rather
	// than wait for a stream that may never break (QUIC over a dead
	// peer's socket says nothing until its idle timeout).
	lost     context.Context
	loseCall context.CancelCauseFunc
	// ended is closed when the instance is dropped from its pool, why
	// (set before) saying why: its job failed, ended, or was lost.
	ended chan struct{}
	why   string
}

// unknownWait bounds how long a call that its node answered with "no such
// warm instance" waits to learn why the instance ended (its job's end is
// on its way: a module that does not compile fails the job just after
// the node forgets the instance).
const unknownWait = time.Second

// whyUnknown waits, at most unknownWait, for the reason an instance its
// node no longer knows ended; "" if none came.
func (in *instance) whyUnknown(ctx context.Context) string {
	t := time.NewTimer(unknownWait)
	defer t.Stop()
	select {
	case <-in.ended:
		return in.why
	case <-t.C:
	case <-ctx.Done():
	}
	return ""
}

// call sends req to the instance: it ends with ctx, or when the instance
// is lost.
func (in *instance) call(ctx context.Context, c Caller, req *types.CallRequest) (*types.CallReply, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(in.lost, cancel)()
	reply, err := c.Call(ctx, in.peer, req)
	if err != nil && in.lost.Err() != nil { // why it was lost says more than the call's cancelling
		err = context.Cause(in.lost)
	}
	return reply, err
}

// grant is what a queued call gets: an instance, or why there is none.
type grant struct {
	in  *instance
	err error
}

// pool is the queue and the warm instances of one revision of a function.
type pool struct {
	g    *Gateway
	key  poolKey
	rev  Revision      // what its instances run: a revision never changes
	wake chan struct{} // a call queued or an instance lost: scale now

	mu       sync.Mutex
	scaling  Scaling
	ready    []*instance
	starting int
	queue    []chan grant
	failure  string // why the last start failed; "" after one succeeded
	failedAt time.Time
	rate     ewma // calls arriving per second
	duration ewma // seconds a call holds an instance
	lastUse  time.Time
	closed   bool
}

// pools holds a gateway's pools.
type pools struct {
	g  *Gateway
	mu sync.Mutex
	m  map[poolKey]*pool
}

// get returns the pool of a revision, made (and its scaler started) on
// first use; nil once the gateway closed.
func (ps *pools) get(acct string, fn Function, rev Revision) *pool {
	k := poolKey{acct, fn.Name, rev.Number}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.m[k]; p != nil {
		return p
	}
	if !ps.g.goBackground() {
		return nil
	}
	p := &pool{g: ps.g, key: k, rev: rev, scaling: fn.Scaling.withDefaults(), wake: make(chan struct{}, 1), lastUse: time.Now()}
	ps.m[k] = p
	go func() {
		defer ps.g.wg.Done()
		p.scale()
		ps.mu.Lock()
		if ps.m[k] == p { // a function deployed again under its name has a new pool
			delete(ps.m, k)
		}
		ps.mu.Unlock()
	}()
	return p
}

// lookup returns the pool of k, nil if there is none.
func (ps *pools) lookup(k poolKey) *pool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.m[k]
}

// rescale hands a function's new scaling (or default revision) to its
// pools, and makes the pool of its default revision when it keeps a
// minimum warm.
func (ps *pools) rescale(acct string, fn Function) {
	ps.mu.Lock()
	var mine []*pool
	for k, p := range ps.m {
		if k.account == acct && k.function == fn.Name {
			mine = append(mine, p)
		}
	}
	ps.mu.Unlock()
	for _, p := range mine {
		p.mu.Lock()
		p.scaling = fn.Scaling.withDefaults()
		p.mu.Unlock()
		p.poke()
	}
	if fn.Scaling.MinInstances > 0 {
		if rev, err := ps.g.revision(acct, fn.Name, fn.DefaultRevision); err == nil {
			if p := ps.get(acct, fn, rev); p != nil {
				p.poke()
			}
		}
	}
}

// forget closes the pools of a deleted function and releases their
// instances.
func (ps *pools) forget(acct, name string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.m {
		if k.account == acct && k.function == name {
			p.close()
			delete(ps.m, k) // its scaler releases its instances on its way out
		}
	}
}

// instances lists the warm instances of an account's function.
func (ps *pools) instances(acct, name string) []Instance {
	ps.mu.Lock()
	var mine []*pool
	for k, p := range ps.m {
		if k.account == acct && k.function == name {
			mine = append(mine, p)
		}
	}
	ps.mu.Unlock()
	out := []Instance{}
	for _, p := range mine {
		p.mu.Lock()
		for _, in := range p.ready {
			out = append(out, Instance{
				Function: name, Revision: p.key.revision, Job: in.job, Node: in.peer,
				InFlight: in.inFlight, Calls: in.calls, StartedAt: in.startedAt, LastCall: in.lastCall,
			})
		}
		p.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Instance) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// acquire takes a call slot on the least busy instance, one the call has
// not tried yet if any is free, waiting in the queue while none is free,
// until ctx ends.
func (p *pool) acquire(ctx context.Context, tried []*instance) (*instance, error) {
	now := time.Now()
	p.mu.Lock()
	if len(tried) == 0 { // a retry is not a new arrival
		p.rate.add(now, 1)
	}
	p.lastUse = now
	if in := p.pick(tried); in != nil {
		in.inFlight++
		p.mu.Unlock()
		return in, nil
	}
	if err := p.refusal(now); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	ch := make(chan grant, 1)
	p.queue = append(p.queue, ch)
	p.mu.Unlock()
	p.poke()
	select {
	case gr := <-ch:
		return gr.in, gr.err
	case <-ctx.Done():
	}
	p.mu.Lock()
	queued := p.unqueue(ch)
	p.mu.Unlock()
	if !queued { // granted meanwhile: give it back
		if gr := <-ch; gr.in != nil {
			p.release(gr.in, 0)
		}
	}
	return nil, fmt.Errorf("%w: waiting for a warm instance: %w", api.ErrGatewayTimeout, ctx.Err())
}

// refusal says why a call that finds no free instance cannot wait: the
// pool is closed, its queue is full, or it has nothing to wait for since
// its last start failed. Callers hold p.mu.
func (p *pool) refusal(now time.Time) error {
	switch {
	case p.closed:
		return fmt.Errorf("%w: function %q is gone or the gateway is closing", api.ErrUnavailable, p.key.function)
	case len(p.queue) >= p.scaling.MaxQueue:
		return &api.RetryError{
			Err:   fmt.Errorf("%w: %d calls of %s wait for an instance, its queue's limit", api.ErrTooManyRequests, len(p.queue), p.name()),
			After: p.retryAfter(),
		}
	case p.failure != "" && len(p.ready) == 0 && p.starting == 0 && now.Sub(p.failedAt) < failBackoff:
		return &api.RetryError{Err: fmt.Errorf("%w: no warm instance of %s could be started: %s", api.ErrUnavailable, p.name(), p.failure), After: failBackoff}
	}
	return nil
}

// retryAfter estimates when a refused call would find room: the queue's
// drain time at the current service rate, at least a second. Callers
// hold p.mu.
func (p *pool) retryAfter() time.Duration {
	capacity := float64(max(len(p.ready), 1) * p.scaling.Concurrency)
	d := time.Duration(float64(len(p.queue)) / capacity * p.duration.value() * float64(time.Second))
	return max(d.Round(time.Second), time.Second)
}

func (p *pool) name() string { return fmt.Sprintf("%s@%d", p.key.function, p.key.revision) }

// pick returns the ready instance with the fewest calls in flight below
// its limit, preferring one not in avoid (those a call tried already: one
// that answered busy would be picked again, its count being the lowest);
// nil when all are full. Callers hold p.mu.
func (p *pool) pick(avoid []*instance) *instance {
	var best *instance
	bestAvoided := false
	for _, in := range p.ready {
		if in.inFlight >= in.limit {
			continue
		}
		avoided := slices.Contains(avoid, in)
		if best == nil || bestAvoided && !avoided || avoided == bestAvoided && in.inFlight < best.inFlight {
			best, bestAvoided = in, avoided
		}
	}
	return best
}

// unqueue takes ch out of the queue; false if it was granted already.
// Callers hold p.mu.
func (p *pool) unqueue(ch chan grant) bool {
	i := slices.Index(p.queue, ch)
	if i < 0 {
		return false
	}
	p.queue = slices.Delete(p.queue, i, i+1)
	return true
}

// release gives back a call slot; took is how long the call held it (0:
// it did not run). The slot goes to the first call queued.
func (p *pool) release(in *instance, took time.Duration) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	in.inFlight--
	if took > 0 {
		in.calls++
		in.lastCall = now
		p.duration.set(now, took.Seconds())
	}
	p.serveQueue()
}

// serveQueue hands free slots to queued calls, first come first served.
// Callers hold p.mu.
func (p *pool) serveQueue() {
	for len(p.queue) > 0 {
		in := p.pick(nil)
		if in == nil {
			return
		}
		in.inFlight++
		p.queue[0] <- grant{in: in}
		p.queue = p.queue[1:]
	}
}

// failQueue refuses every queued call with err. Callers hold p.mu.
func (p *pool) failQueue(err error) {
	for _, ch := range p.queue {
		ch <- grant{err: err}
	}
	p.queue = nil
}

// drop takes a lost or ended instance out of the pool, releasing its
// job when it may still hold capability. Its calls in flight end on
// their own.
func (p *pool) drop(in *instance, why string, cancel bool) {
	p.mu.Lock()
	if in.gone {
		p.mu.Unlock()
		return
	}
	in.gone = true
	if in.ended != nil {
		in.why = why
		close(in.ended)
	}
	if i := slices.Index(p.ready, in); i >= 0 {
		p.ready = slices.Delete(p.ready, i, i+1)
	}
	p.mu.Unlock()
	p.g.log.Debug("warm instance dropped", "function", p.name(), "job", in.job, "node", in.peer, "why", why)
	if cancel {
		p.g.releaseJob(in.job)
	}
	p.poke()
}

// lose drops an instance that was lost, and ends the calls in flight on
// it: they go to other instances.
func (p *pool) lose(in *instance, why string) {
	p.drop(in, why, true)
	in.loseCall(errors.New(why))
}

// poke wakes the scaler.
func (p *pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// close stops the pool: queued calls are refused, its instances
// released. Callers may hold the pools' lock.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.failQueue(fmt.Errorf("%w: function %q is gone or the gateway is closing", api.ErrUnavailable, p.key.function))
	p.mu.Unlock()
	p.poke()
}

// load is the pool's load for orchestrator.Scale. Callers hold p.mu.
func (p *pool) load(now time.Time) orchestrator.Load {
	l := orchestrator.Load{Ready: len(p.ready), Starting: p.starting, Queued: len(p.queue),
		Rate: p.rate.rate(now), Duration: time.Duration(p.duration.value() * float64(time.Second))}
	for _, in := range p.ready {
		l.InFlight += in.inFlight
	}
	return l
}

// scale is the pool's scaler: until the pool closes (or idles out), it
// starts the instances the load wants.
func (p *pool) scale() {
	tick := time.NewTicker(scaleEvery)
	defer tick.Stop()
	for {
		select {
		case <-p.g.ctx.Done():
			p.close()
		case <-p.wake:
		case <-tick.C:
		}
		if p.step() {
			p.releaseAll()
			return
		}
	}
}

// step makes one scaling decision and starts what it wants; true when
// the pool is done.
func (p *pool) step() bool {
	now := time.Now()
	p.mu.Lock()
	if p.closed || p.idle(now) {
		p.closed = true
		p.mu.Unlock()
		return true
	}
	l := p.load(now)
	d := orchestrator.Scale(l, orchestrator.Scaling{Min: p.scaling.MinInstances, Max: p.scaling.MaxInstances, Concurrency: p.scaling.Concurrency})
	n := d.Want - l.Ready - l.Starting
	// After a failed start, none for failBackoff: a pool that keeps a
	// minimum would auction again at every tick (calls meanwhile are
	// refused when there is nothing to wait for, see refusal).
	if n <= 0 || (p.failure != "" && now.Sub(p.failedAt) < failBackoff) {
		p.mu.Unlock()
		return false
	}
	p.starting += n
	sc := p.scaling
	p.mu.Unlock()
	p.g.log.Debug("scaling up", "function", p.name(), "start", n, "ready", l.Ready, "starting", l.Starting, "why", d.Reason)
	for range n {
		if !p.g.goBackground() {
			p.startFailed("the gateway is closing")
			continue
		}
		go func() {
			defer p.g.wg.Done()
			p.start(sc)
		}()
	}
	return false
}

// idle reports whether the pool has had nothing to do for poolIdle and
// keeps no minimum. Callers hold p.mu.
func (p *pool) idle(now time.Time) bool {
	return p.scaling.MinInstances == 0 && len(p.ready) == 0 && p.starting == 0 && len(p.queue) == 0 &&
		now.Sub(p.lastUse) > poolIdle
}

// releaseAll releases every instance of a closed pool.
func (p *pool) releaseAll() {
	p.mu.Lock()
	ready := slices.Clone(p.ready)
	p.mu.Unlock()
	for _, in := range ready {
		p.drop(in, "the pool closed", true)
	}
}

// start auctions one warm instance as a job and adds it to the pool
// once its provider runs it; then it watches the job, and drops the
// instance when the job ends.
func (p *pool) start(sc Scaling) {
	spec := jobSpec(p.rev)
	spec.Name = fmt.Sprintf("fn:%s/%s@%d", p.key.account, p.key.function, p.rev.Number)
	spec.Account = p.key.account // its receipts bill the function's account
	spec.Warm = &types.Warm{Concurrency: sc.Concurrency, KeepAlive: time.Duration(sc.KeepAlive)}
	ctx, cancel := context.WithTimeout(p.g.ctx, startTimeout)
	defer cancel()
	if err := p.g.pin(p.rev.Module); err != nil { // a module deployed through another member
		p.startFailed("fetching the module from the group: " + err.Error())
		return
	}
	job, err := p.g.runner.SubmitJob(ctx, spec)
	if err != nil {
		p.startFailed("placing an instance: " + err.Error())
		return
	}
	watch, stop := context.WithCancel(p.g.ctx)
	defer stop()
	updates, err := p.g.runner.WatchJob(watch, job.ID)
	if err != nil {
		p.g.releaseJob(job.ID)
		p.startFailed("watching an instance: " + err.Error())
		return
	}
	var in *instance
	for {
		var j api.Job
		var ok bool
		if in == nil { // a start is bounded even when its job says nothing
			select {
			case j, ok = <-updates:
			case <-ctx.Done():
				p.g.releaseJob(job.ID)
				p.startFailed(fmt.Sprintf("no instance started within %s", startTimeout))
				return
			}
		} else {
			j, ok = <-updates
		}
		switch {
		case !ok:
			// The watch ended: the gateway is closing, or the node lost
			// the job. Either way the job is released: this drop may come
			// before the one of a closing pool's releaseAll, which then
			// finds the instance gone.
			if in != nil {
				p.drop(in, "its job's watch ended", true)
			} else {
				p.g.releaseJob(job.ID)
				p.startFailed("the instance's job was lost")
			}
			return
		case in == nil && j.State == types.JobRunning:
			in = p.started(j, sc)
			cancel() // started in time: the watch goes on
		case j.State.Terminal() && in == nil:
			p.startFailed(redact(j.Reason))
			return
		case j.State.Terminal():
			if j.State == types.JobFailed { // its node was lost, or its program could not start
				p.lose(in, "its job failed: "+j.Reason)
			} else { // released: the provider lets its calls in flight end
				p.drop(in, "its job "+string(j.State)+": "+j.Reason, false)
			}
			return
		}
	}
}

// started adds the instance of a job that runs to the pool.
func (p *pool) started(j api.Job, sc Scaling) *instance {
	in := &instance{job: j.ID, peer: j.Node, limit: sc.Concurrency, startedAt: time.Now(), ended: make(chan struct{})}
	in.lost, in.loseCall = context.WithCancelCause(context.Background())
	if n := len(j.Attempts); n > 0 {
		in.alloc = types.AllocationID(j.Attempts[n-1].AllocationID)
	}
	p.mu.Lock()
	p.starting--
	p.failure = ""
	if p.closed {
		in.gone = true
		p.mu.Unlock()
		p.g.releaseJob(in.job)
		return in
	}
	p.ready = append(p.ready, in)
	p.serveQueue()
	p.mu.Unlock()
	return in
}

// startFailed records why an instance did not start; with nothing else
// to wait for, the queued calls are refused with the reason.
func (p *pool) startFailed(why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting--
	p.failure, p.failedAt = why, time.Now()
	p.g.log.Debug("warm instance not started", "function", p.name(), "why", why)
	if len(p.ready) == 0 && p.starting == 0 {
		p.failQueue(&api.RetryError{Err: fmt.Errorf("%w: no warm instance of %s could be started: %s", api.ErrUnavailable, p.name(), why), After: failBackoff})
	}
}

// ewma is a moving average that halves its memory every rateHalfLife:
// add counts events (rate reads events per second), set records values
// (value reads their average).
type ewma struct {
	v    float64
	at   time.Time
	seen bool
}

func (e *ewma) decay(now time.Time) {
	if !e.at.IsZero() && now.After(e.at) {
		e.v *= math.Exp2(-now.Sub(e.at).Seconds() / rateHalfLife.Seconds())
	}
	e.at = now
}

// add counts n events at now.
func (e *ewma) add(now time.Time, n float64) {
	e.decay(now)
	e.v += n
}

// rate is the events per second: the decayed count over the mean life
// of an event in it (half-life / ln 2).
func (e *ewma) rate(now time.Time) float64 {
	e.decay(now)
	return e.v * math.Ln2 / rateHalfLife.Seconds()
}

// set records a value at now; value reads a weighted average of them.
func (e *ewma) set(now time.Time, x float64) {
	if !e.seen {
		e.v, e.at, e.seen = x, now, true
		return
	}
	w := 1 - math.Exp2(-now.Sub(e.at).Seconds()/rateHalfLife.Seconds())
	e.v += max(w, 0.01) * (x - e.v)
	e.at = now
}

func (e *ewma) value() float64 { return e.v }

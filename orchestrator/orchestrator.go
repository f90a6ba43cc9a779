package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/opendms/dms/types"
)

const (
	releaseTimeout = 5 * time.Second        // bounds one attempt to deliver a Release
	defaultLease   = time.Second            // see Config.Lease
	minLease       = 100 * time.Millisecond // below this, scheduling noise alone declares nodes lost
	minOpenTimeout = 2 * time.Second        // opening an invocation stream may take a dial
	defaultRetain  = 10 * time.Second       // see Config.Retain
)

// Network is what the orchestrator needs from the network. Every method is
// called from its own goroutine, concurrently with the others, and must
// return soon after ctx ends.
type Network interface {
	// Publish sends a bid request to the nodes and returns the peers it
	// reached (nil if unknown); wide asks it to reach every node that may
	// bid, not a sample (Publish.Wide). Bids and declines come back
	// through HandleBid and HandleDecline.
	Publish(ctx context.Context, req *types.BidRequest, wide bool) (reached []string, err error)
	// Accept sends an Accept and returns the node's answer: a *types.Confirm
	// or a *types.Reject.
	Accept(ctx context.Context, peer string, addrs []string, a *types.Accept) (types.Message, error)
	// Invoke starts the allocation and opens its status stream.
	Invoke(ctx context.Context, peer string, addrs []string, inv *types.Invocation) (StatusStream, error)
	// Cancel asks a node to drop an allocation. It must be harmless for an
	// allocation the node does not hold. The node may answer with the
	// allocation's status (nil when it did not): a node thought lost may
	// have finished meanwhile, and that late outcome is recorded.
	Cancel(ctx context.Context, peer string, addrs []string, c *types.Cancel) (*types.Status, error)
}

// StatusStream is one allocation's status reports. An error from Recv
// (io.EOF included) before a terminal status means the node is lost; so
// does no report for a whole lease (the node repeats its status as a
// heartbeat, every Invocation.Lease/4).
type StatusStream interface {
	Recv(ctx context.Context) (*types.Status, error)
	Close() error
}

// Store persists jobs. SaveJobs is called from one goroutine of the
// orchestrator, never concurrently and never from its loop, with at most
// one record per job, each job's records in revision order across calls: a
// record superseded before it was saved is skipped, so a busy requester
// writes many jobs in one call. The latest record of every job is saved, at
// the latest by Close, a job's first record before Submit returns, and a
// record of its placement before its invocation is sent: SaveJobs returns
// nil only once the records are durable (as durable as the Store can make
// them), and an invocation waits for it.
// Readers that need the very latest state use Job and Jobs; a restarted
// requester hands the saved records to Restore.
type Store interface {
	SaveJobs(recs []Record) error
}

// PeerStore is implemented by a Store that also keeps the requester's
// Reputation. SavePeers is called like SaveJobs (one goroutine, off the
// loop, latest record of each peer, at the latest by Close): put holds the
// changed records, drop the peers forgotten to stay within MaxPeers. A
// restarted requester hands the saved records to Config.Peers.
type PeerStore interface {
	SavePeers(put []PeerRecord, drop []string) error
}

// Defaults fill the zero fields of submitted job specs and time the accepts.
// Zero fields fall back to the auction defaults (2s, 3 bids, 2s).
type Defaults struct {
	BidWindow      time.Duration
	EnoughBids     int
	ConfirmTimeout time.Duration
}

// Config configures an Orchestrator.
type Config struct {
	Self     string           // our PeerID: nodes send bids there. Required.
	Addrs    func() []string  // our multiaddrs for bid requests; called concurrently. Optional.
	Clock    func() time.Time // default time.Now; must advance with real time (timers are real)
	Defaults Defaults
	Ranking  Ranking // no scorers = DefaultRanking()
	// LocalityWeight weighs, in the ranking of a job whose task names
	// input files, the share of their bytes a bidder holds
	// (LocalityScorer): 0 = DefaultLocalityWeight, NoLocality = none.
	LocalityWeight float64
	Logger         *slog.Logger // default: discard
	// Lease is how long an invocation stream may stay silent before its
	// node is declared lost and the job placed again (default 1s, at least
	// 100ms). Nodes send a heartbeat every Lease/4, so a lease tolerates
	// three lost or late heartbeats: shorter detects a dead node sooner,
	// longer survives a slower network without false alarms.
	Lease time.Duration
	// Retain is how long a finished job stays in memory (default 10s or
	// twice the confirm timeout, whichever is longer; never less than
	// twice the confirm timeout): long enough that a late confirm
	// is still released and a reader sees the end without the Store.
	// After it, Job, Jobs and Watch no longer know the job; the Store has
	// its last record.
	Retain time.Duration
	// Failpoint, when set, is called with the name of each failpoint the
	// orchestrator passes, so that a fault test can kill the process at
	// that exact point (docs/testing.md). FailpointInvoke is the only one.
	// Called from any goroutine; default: nothing.
	Failpoint func(name string)
	// Peers is the reputation a restarted requester saved (PeerStore):
	// the peers that failed it before are remembered across restarts.
	Peers []PeerRecord
	// Ended, when set, is told of each job as it ends, once, with its
	// final snapshot (Job already returns it). Called from the loop: it
	// must not block.
	Ended func(JobInfo)
	// Observer, when set, is told as attempts are placed and end (for
	// metrics); nil: nothing.
	Observer Observer
}

// FailpointInvoke is passed once a record of a job's placement is in the
// Store, just before its invocation is sent.
const FailpointInvoke = "invoke"

// Orchestrator runs the requester's side of DMS: it submits jobs, auctions
// them, invokes and follows them, and retries them. It is the thin shell
// around the Job state machines: one goroutine (the loop) owns every job;
// all network I/O happens in short-lived goroutines that report back to the
// loop. Its methods are safe for concurrent use.
type Orchestrator struct {
	cfg     Config
	jobCfg  JobConfig
	spread  map[string][]types.JobID // Spread groups' jobs, loop only
	net     Network
	saver   *saver
	ctx     context.Context
	cancel  context.CancelFunc
	events  chan func(now time.Time)
	stopped chan struct{} // closed when the loop returned: no more saves come
	wg      sync.WaitGroup
	closing sync.Once

	jobs     map[types.JobID]*entry // every job in memory, loop only: late confirms of finished jobs are still released
	active   map[types.JobID]*entry // the jobs not yet terminal, loop only
	waiting  deadlines              // the active jobs with a deadline, by it, as of their last flush; loop only
	finished []*entry               // terminal jobs still in memory, oldest first, loop only
	rep      *Reputation            // what peers did to earlier auctions; read by every auction, loop only

	mu    sync.RWMutex
	infos map[types.JobID]JobInfo // the latest snapshot of every job, for readers
}

// entry is the loop's record of one job.
type entry struct {
	job      *Job
	ctx      context.Context // ends with the job: its publishes, invocations and streams stop
	cancel   context.CancelFunc
	saved    uint64     // the revision last saved and announced
	durable  chan error // set by Submit until its first record is queued: told when it is saved
	ended    time.Time  // when the job reached its terminal state
	watchers []*watcher
	due      time.Time // the job's next deadline while in o.waiting, else zero
	slot     int       // its index in o.waiting, while in it
}

var _ Store = nopStore{}

type nopStore struct{}

func (nopStore) SaveJobs([]Record) error { return nil }

// New starts an orchestrator. store may be nil: jobs then live in memory only.
// Close must be called to stop it.
func New(cfg Config, net Network, store Store) (*Orchestrator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if net == nil {
		return nil, fmt.Errorf("%w: no network", ErrInvalidConfig)
	}
	if store == nil {
		store = nopStore{}
	}
	rep := NewReputation(cfg.Peers, cfg.Clock())
	o := &Orchestrator{
		cfg: cfg, net: net, saver: newSaver(store, cfg.Logger),
		stopped: make(chan struct{}),
		jobCfg: JobConfig{
			Requester: cfg.Self, ConfirmTimeout: cfg.Defaults.ConfirmTimeout, Ranking: cfg.Ranking, Standing: rep,
			LocalityWeight: cfg.LocalityWeight,
		},
		events: make(chan func(time.Time), 256),
		jobs:   make(map[types.JobID]*entry),
		spread: make(map[string][]types.JobID),
		active: make(map[types.JobID]*entry),
		rep:    rep,
		infos:  make(map[types.JobID]JobInfo),
	}
	o.jobCfg.Taken = o.taken
	o.ctx, o.cancel = context.WithCancel(context.Background())
	o.wg.Add(2)
	go o.run()
	go func() {
		defer o.wg.Done()
		o.saver.run(o.stopped)
	}()
	return o, nil
}

func (c Config) withDefaults() (Config, error) {
	if c.Self == "" {
		return c, fmt.Errorf("%w: no Self peer ID", ErrInvalidConfig)
	}
	d := c.Defaults
	if d.BidWindow < 0 || d.EnoughBids < 0 || d.ConfirmTimeout < 0 {
		return c, fmt.Errorf("%w: negative default in %+v", ErrInvalidConfig, d)
	}
	c.Lease = cmp.Or(c.Lease, defaultLease)
	if c.Lease < minLease {
		return c, fmt.Errorf("%w: lease %s is under the minimum %s", ErrInvalidConfig, c.Lease, minLease)
	}
	c.Defaults.ConfirmTimeout = cmp.Or(d.ConfirmTimeout, defaultConfirmTimeout)
	if c.Retain == 0 {
		c.Retain = max(defaultRetain, 2*c.Defaults.ConfirmTimeout)
	}
	if c.Retain < 2*c.Defaults.ConfirmTimeout {
		return c, fmt.Errorf("%w: retain %s is under twice the confirm timeout %s", ErrInvalidConfig, c.Retain, c.Defaults.ConfirmTimeout)
	}
	if len(c.Ranking.Scorers) == 0 {
		c.Ranking.Scorers = DefaultRanking().Scorers
	}
	if c.Addrs == nil {
		c.Addrs = func() []string { return nil }
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Failpoint == nil {
		c.Failpoint = func(string) {}
	}
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	if err := checkLocalityWeight(c.LocalityWeight); err != nil {
		return c, err
	}
	return c, c.Ranking.validate()
}

// Submit creates a job from spec and starts its first auction. A spec
// without an ID gets a random one. It returns the job's first snapshot
// once the Store holds the job, so a requester that crashes after Submit
// returns still has it when it restarts. If the Store fails, the job is
// cancelled and Submit returns an error matching ErrNotSaved.
func (o *Orchestrator) Submit(ctx context.Context, spec JobSpec) (JobInfo, error) {
	if spec.ID == "" {
		spec.ID = types.JobID(uuid.NewString())
	}
	spec.BidWindow = cmp.Or(spec.BidWindow, o.cfg.Defaults.BidWindow)
	spec.EnoughBids = cmp.Or(spec.EnoughBids, o.cfg.Defaults.EnoughBids)
	var info JobInfo
	saved := make(chan error, 1)
	err := o.call(ctx, func(now time.Time) error {
		if _, ok := o.jobs[spec.ID]; ok {
			return fmt.Errorf("%w: %s", ErrJobExists, spec.ID)
		}
		j, err := NewJob(spec, o.jobCfg, now)
		if err != nil {
			return err
		}
		e := o.add(j)
		e.durable = saved
		j.Start(now)
		o.flush(e)
		info = j.Info()
		return nil
	})
	if err != nil {
		return info, err
	}
	select {
	case err = <-saved:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = o.Cancel(context.WithoutCancel(ctx), spec.ID, "the job could not be saved: "+err.Error())
		return info, fmt.Errorf("%w: job %s: %w", ErrNotSaved, spec.ID, err)
	}
	return info, nil
}

// add registers a new job with the loop.
func (o *Orchestrator) add(j *Job) *entry {
	e := &entry{job: j}
	e.ctx, e.cancel = context.WithCancel(o.ctx)
	o.jobs[j.info.ID], o.active[j.info.ID] = e, e
	if g := j.spec.Spread; g != "" {
		o.spread[g] = append(o.spread[g], j.info.ID)
	}
	return e
}

// taken lists the nodes the jobs of Spread group g other than self hold
// (JobConfig.Taken).
func (o *Orchestrator) taken(g string, self types.JobID) []string {
	var out []string
	for _, id := range o.spread[g] {
		if e := o.jobs[id]; e != nil && id != self {
			if n := e.job.Holder(); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}

// HandleBid delivers a bid from the network. Safe from any goroutine; it may
// wait while the loop is busy, and returns at once after Close.
func (o *Orchestrator) HandleBid(b *types.Bid) {
	if b == nil {
		return
	}
	bid := *b
	o.toJob(bid.JobID, func(j *Job, now time.Time) {
		o.heard(bid.Node.PeerID)
		j.Bid(bid, now)
	})
}

// HandleDecline delivers a decline from the network, like HandleBid.
func (o *Orchestrator) HandleDecline(d *types.Decline) {
	if d == nil {
		return
	}
	dec := *d
	o.toJob(dec.JobID, func(j *Job, now time.Time) {
		o.heard(dec.Node.PeerID)
		j.Decline(dec, now)
	})
}

// Reputation returns the requester's standing of every peer it remembers,
// most penalised first (see Reputation).
func (o *Orchestrator) Reputation(ctx context.Context) ([]PeerStanding, error) {
	var out []PeerStanding
	err := o.call(ctx, func(now time.Time) error {
		out = o.rep.Table(now)
		return nil
	})
	return out, err
}

// Judge records what a replicated unit's verdict said of peer's result:
// agreed or not (see Reputation.Judge); a peer that disagreed once is
// distrusted: no later auction of this requester takes its bids.
func (o *Orchestrator) Judge(ctx context.Context, peer string, agreed bool) error {
	return o.call(ctx, func(now time.Time) error {
		rec, dropped := o.rep.Judge(peer, agreed, now)
		if !agreed {
			o.cfg.Logger.Warn("peer distrusted: its result disagreed with a quorum", "peer", peer, "disagreed", rec.Disagreed)
		}
		o.saver.putPeer(rec, dropped)
		return nil
	})
}

// Forgive clears peer's disagreements, so its bids count again. It
// reports whether there were any.
func (o *Orchestrator) Forgive(ctx context.Context, peer string) (bool, error) {
	var ok bool
	err := o.call(ctx, func(time.Time) error {
		var rec PeerRecord
		if rec, ok = o.rep.Forgive(peer); ok {
			o.saver.putPeer(rec, nil)
		}
		return nil
	})
	return ok, err
}

// Trusted reports whether peer's results may stand alone under adaptive
// replication (Reputation.Trusted).
func (o *Orchestrator) Trusted(ctx context.Context, peer string) (bool, error) {
	var ok bool
	err := o.call(ctx, func(time.Time) error {
		ok = o.rep.Trusted(peer)
		return nil
	})
	return ok, err
}

// Job returns the latest snapshot of a job.
func (o *Orchestrator) Job(id types.JobID) (JobInfo, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	info, ok := o.infos[id]
	return info.clone(), ok
}

// Jobs returns the latest snapshot of every job, oldest first.
func (o *Orchestrator) Jobs() []JobInfo {
	o.mu.RLock()
	out := make([]JobInfo, 0, len(o.infos))
	for _, info := range o.infos {
		out = append(out, info.clone())
	}
	o.mu.RUnlock()
	slices.SortFunc(out, func(a, b JobInfo) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Count returns how many jobs in memory are in each state: every job not
// ended, and those ended within Retain. Unlike Jobs it copies nothing,
// so metrics may call it at every scrape.
func (o *Orchestrator) Count() map[types.JobState]int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	out := make(map[types.JobState]int)
	for _, info := range o.infos {
		out[info.State]++
	}
	return out
}

// Watch streams a job's snapshots: the current one at once, then one per
// change. The channel is closed after the terminal snapshot, when ctx ends,
// or when the orchestrator closes. The reader must keep reading or cancel ctx.
func (o *Orchestrator) Watch(ctx context.Context, id types.JobID) (<-chan JobInfo, error) {
	var w *watcher
	err := o.call(ctx, func(time.Time) error {
		e, ok := o.jobs[id]
		if !ok {
			return fmt.Errorf("%w: %s", ErrUnknownJob, id)
		}
		w = newWatcher()
		w.push(e.job.Info())
		if !e.job.Done() {
			e.watchers = append(e.watchers, w)
		}
		o.spawn(func() { w.run(ctx, o.ctx) })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return w.out, nil
}

// Cancel cancels a job: whatever node holds it is released. It returns
// ErrUnknownJob or ErrJobDone when there is nothing to cancel.
func (o *Orchestrator) Cancel(ctx context.Context, id types.JobID, reason string) error {
	return o.call(ctx, func(now time.Time) error {
		e, ok := o.jobs[id]
		if !ok {
			return fmt.Errorf("%w: %s", ErrUnknownJob, id)
		}
		if err := e.job.Cancel(reason, now); err != nil {
			return err
		}
		o.flush(e)
		return nil
	})
}

// Close stops the loop, abandons in-flight network calls, closes every
// watch channel, saves the last snapshot of every job and waits for every
// goroutine the orchestrator started. Jobs are left as they are.
func (o *Orchestrator) Close() error {
	o.closing.Do(o.cancel)
	o.wg.Wait()
	return nil
}

// call runs fn on the loop and waits for its result. ctx bounds the wait to
// get onto the loop; once there, fn runs to the end.
func (o *Orchestrator) call(ctx context.Context, fn func(now time.Time) error) error {
	if o.ctx.Err() != nil {
		return ErrClosed
	}
	reply := make(chan error, 1)
	select {
	case o.events <- func(now time.Time) { reply <- fn(now) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-o.ctx.Done():
		return ErrClosed
	}
	select {
	case err := <-reply:
		return err
	case <-o.ctx.Done():
		return ErrClosed
	}
}

// do queues fn for the loop; it gives up when the orchestrator closes.
func (o *Orchestrator) do(fn func(now time.Time)) {
	select {
	case o.events <- fn:
	case <-o.ctx.Done():
	}
}

// toJob queues an event for a job, if the job exists by then.
func (o *Orchestrator) toJob(id types.JobID, fn func(j *Job, now time.Time)) {
	o.do(func(now time.Time) {
		if e, ok := o.jobs[id]; ok {
			fn(e.job, now)
			o.flush(e)
		}
	})
}

// spawn starts a goroutine owned by the orchestrator. Only the loop calls
// it, so the WaitGroup never goes from zero to one while Close waits.
func (o *Orchestrator) spawn(fn func()) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		fn()
	}()
}

func (o *Orchestrator) run() {
	defer o.wg.Done()
	defer close(o.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		o.arm(timer)
		select {
		case <-o.ctx.Done():
			return
		case fn := <-o.events:
			fn(o.cfg.Clock())
		case <-timer.C:
			o.tickDue(o.cfg.Clock())
		}
	}
}

// arm sets timer to the earliest deadline of any active job, or to the
// eviction of the oldest finished one.
func (o *Orchestrator) arm(timer *time.Timer) {
	next := o.waiting.next()
	if len(o.finished) > 0 {
		if evict := o.finished[0].ended.Add(o.cfg.Retain); next.IsZero() || evict.Before(next) {
			next = evict
		}
	}
	if next.IsZero() {
		timer.Stop()
		return
	}
	timer.Reset(max(next.Sub(o.cfg.Clock()), 0))
}

// tickDue ticks every job whose deadline passed, each once: a deadline its
// tick leaves due waits for the next round of the loop.
func (o *Orchestrator) tickDue(now time.Time) {
	for _, e := range o.waiting.popDue(now) {
		e.job.Tick(now)
		o.flush(e)
	}
	o.evict(now)
}

// evict forgets the jobs that finished Retain ago: memory stays bounded by
// the jobs of the last seconds, not every job ever submitted.
func (o *Orchestrator) evict(now time.Time) {
	n := 0
	for _, e := range o.finished {
		if now.Before(e.ended.Add(o.cfg.Retain)) {
			break
		}
		delete(o.jobs, e.job.info.ID)
		if g := e.job.spec.Spread; g != "" {
			o.spread[g] = slices.DeleteFunc(o.spread[g], func(id types.JobID) bool { return id == e.job.info.ID })
			if len(o.spread[g]) == 0 {
				delete(o.spread, g)
			}
		}
		o.mu.Lock()
		delete(o.infos, e.job.info.ID)
		o.mu.Unlock()
		n++
	}
	// Reslicing alone would leave the evicted entries, and all their job
	// holds, reachable from the backing array until an append moved it.
	clear(o.finished[:n])
	o.finished = o.finished[n:]
	if n > 0 && len(o.jobs) == 0 {
		o.shrink()
	}
}

// shrink replaces the emptied job maps and queue with fresh ones: a Go map
// keeps the buckets of its largest size after its deletes, so after a burst
// of jobs they would hold room for all of them for good. Only when no job
// is in memory, so nothing is copied.
func (o *Orchestrator) shrink() {
	o.jobs, o.active, o.finished = make(map[types.JobID]*entry), make(map[types.JobID]*entry), nil
	o.mu.Lock()
	if len(o.infos) == 0 {
		o.infos = make(map[types.JobID]JobInfo)
	}
	o.mu.Unlock()
}

// flush saves and announces a changed job, files it under its next
// deadline, then does what it asked for. Every event a job gets is
// followed by a flush: only an event moves a deadline.
//
// Persist before send: an action that promises something a restarted
// requester must know of waits, in its own goroutine, until the record
// this flush hands the saver is written. An Invoke waits for the record of
// its placement, so a requester killed at any moment never auctions again
// a job that may run; a Release that ends the job (a cancel, a deadline)
// waits for the terminal record, so a restart never resumes a job whose
// node was told to stop, which would run it again. The loop never waits.
func (o *Orchestrator) flush(e *entry) {
	acts := e.job.Actions()
	changed := e.job.info.Revision != e.saved
	var waits []chan error // by action, for those that promise (most events have none)
	var saved []chan<- error
	for i, act := range acts {
		if promises(act, changed && e.job.Done()) {
			if waits == nil {
				waits = make([]chan error, len(acts))
			}
			waits[i] = make(chan error, 1)
			saved = append(saved, waits[i])
		}
	}
	if changed || len(saved) > 0 {
		info := e.job.Info()
		if e.durable != nil {
			saved = append(saved, e.durable)
			e.durable = nil
		}
		o.saver.put(Record{JobInfo: info, Spec: e.job.spec}, saved...)
		if changed {
			e.saved = info.Revision
			o.announce(e, info)
		}
	}
	due, _ := e.job.NextDeadline() // zero when none, as for a finished job
	o.waiting.set(e, due)
	for i, act := range acts {
		var wait <-chan error
		if waits != nil {
			wait = waits[i]
		}
		o.perform(e, act, wait)
	}
}

// promises reports whether act must wait for the record of the flush that
// asked for it (see flush): an Invoke always, a Release when that flush
// ended the job.
func promises(act Action, ended bool) bool {
	switch act.(type) {
	case Invoke:
		return true
	case Release:
		return ended
	}
	return false
}

// announce hands a job's new snapshot to readers and watchers, and retires
// the job from the active ones once it ended.
func (o *Orchestrator) announce(e *entry, info JobInfo) {
	o.mu.Lock()
	prev := o.infos[info.ID]
	o.infos[info.ID] = info
	o.mu.Unlock()
	o.notify(prev, info)
	e.watchers = slices.DeleteFunc(e.watchers, (*watcher).gone)
	for _, w := range e.watchers {
		w.push(info.clone())
	}
	if info.State.Terminal() && e.ended.IsZero() {
		o.cfg.Logger.Info("job finished", "job", info.ID, "state", info.State, "reason", info.Reason)
		e.cancel()
		e.watchers = nil
		delete(o.active, info.ID)
		e.ended = o.cfg.Clock()
		o.finished = append(o.finished, e)
		if o.cfg.Ended != nil {
			o.cfg.Ended(info.clone())
		}
	}
}

// perform starts what act asks for. saved, when not nil, is told when the
// record the action must follow is written (see flush).
func (o *Orchestrator) perform(e *entry, act Action, saved <-chan error) {
	o.cfg.Logger.Debug("job action", "job", e.job.info.ID, "action", act.String())
	switch act := act.(type) {
	case Publish:
		o.spawn(func() { o.publish(e, act) })
	case SendAccept:
		o.spawn(func() { o.accept(e, act) })
	case Release:
		o.spawn(func() { o.release(act, saved) })
	case Invoke:
		o.spawn(func() { o.invoke(e, act, saved) })
	case Observe:
		o.observe(act)
	}
	// Placed and Failed never leave a Job.
}

func (o *Orchestrator) publish(e *entry, act Publish) {
	req := act.Request
	req.ReplyAddrs = o.cfg.Addrs()
	reached, err := o.net.Publish(e.ctx, &req, act.Wide)
	o.do(func(now time.Time) {
		if err != nil {
			e.job.PublishFailed(act.Attempt, err.Error(), now)
		} else {
			e.job.Published(act.Attempt, reached, now)
		}
		o.flush(e)
	})
}

// accept waits twice the confirm timeout for the answer, so that a confirm
// arriving after the auction moved on is still seen, and released.
func (o *Orchestrator) accept(e *entry, act SendAccept) {
	ctx, cancel := context.WithTimeout(o.ctx, 2*o.cfg.Defaults.ConfirmTimeout)
	defer cancel()
	msg, err := o.net.Accept(ctx, act.Peer, act.Addrs, &act.Accept)
	o.do(func(now time.Time) {
		o.answer(e.job, act.Accept, msg, err, now)
		o.flush(e)
	})
}

// answer turns the outcome of an Accept into Confirmed, Rejected or
// Unanswered. A confirm must name the allocation offered: a node cannot
// claim another.
func (o *Orchestrator) answer(j *Job, a types.Accept, msg types.Message, err error, now time.Time) {
	if err != nil {
		j.Unanswered(a.AllocationID, "accept not answered: "+err.Error(), now)
		return
	}
	switch m := msg.(type) {
	case *types.Confirm:
		if m.JobID == a.JobID && m.AllocationID == a.AllocationID {
			j.Confirmed(*m, now)
			return
		}
		j.Unanswered(a.AllocationID, fmt.Sprintf("confirmed another allocation (%s)", m.AllocationID), now)
	case *types.Reject:
		j.Rejected(types.Reject{JobID: a.JobID, AllocationID: a.AllocationID, Reason: m.Reason}, now)
	default:
		j.Unanswered(a.AllocationID, fmt.Sprintf("answered an accept with %T", msg), now)
	}
}

// release tells a node to drop an allocation, once saved (if not nil)
// says that the record it follows is written. A release that could not be
// recorded is sent all the same: the job did end, and its node should not
// go on holding it.
func (o *Orchestrator) release(act Release, saved <-chan error) {
	if saved != nil {
		select {
		case err := <-saved:
			if err != nil {
				o.cfg.Logger.Warn("releasing a job whose end could not be saved", "job", act.Cancel.JobID, "err", err)
			}
		case <-o.ctx.Done():
			return
		}
	}
	ctx, cancel := context.WithTimeout(o.ctx, releaseTimeout)
	defer cancel()
	st, err := o.net.Cancel(ctx, act.Peer, act.Addrs, &act.Cancel)
	if err != nil {
		o.cfg.Logger.Warn("releasing an allocation", "job", act.Cancel.JobID, "allocation", act.Cancel.AllocationID, "peer", act.Peer, "err", err)
		return
	}
	// A node told to let go may answer that it had already finished on its
	// own (completed or failed): a late outcome, recorded in its attempt.
	// Cancelled is only the echo of this release.
	if st == nil || act.Cancel.AllocationID == "" || st.JobID != act.Cancel.JobID || st.AllocationID != act.Cancel.AllocationID ||
		(st.State != types.AllocCompleted && st.State != types.AllocFailed) {
		return
	}
	late := *st
	o.toJob(late.JobID, func(j *Job, now time.Time) { j.Status(late, now) })
}

// invoke starts an allocation and follows its status stream, once saved
// says that a record of the placement is written; if it could not be, the
// invocation is not sent and the job is told.
func (o *Orchestrator) invoke(e *entry, act Invoke, saved <-chan error) {
	inv := act.Invocation
	select {
	case err := <-saved:
		if err != nil {
			o.do(func(now time.Time) {
				e.job.NotSaved(inv.AllocationID, err.Error(), now)
				o.flush(e)
			})
			return
		}
	case <-e.ctx.Done():
		return
	}
	o.cfg.Failpoint(FailpointInvoke)
	inv.Lease = o.cfg.Lease
	octx, cancel := context.WithTimeout(e.ctx, max(o.cfg.Lease, minOpenTimeout))
	stream, err := o.net.Invoke(octx, act.Peer, act.Addrs, &inv)
	cancel()
	if err != nil {
		o.lost(e, inv.AllocationID, "invoking: "+err.Error())
		return
	}
	defer stream.Close()
	o.follow(e, &inv, stream)
}

// follow hands inv's statuses to its job until a terminal one, a broken
// stream, or the end of the job. A stream silent for a whole lease is a
// lost node: the job is told at once, and the stream is still read until
// the job ends, so a late status from the node is recorded (never counted:
// the job has moved on to another allocation).
func (o *Orchestrator) follow(e *entry, inv *types.Invocation, stream StatusStream) {
	frames, alive, stop := o.receive(e.ctx, stream)
	defer stop()
	lease := time.NewTimer(o.cfg.Lease)
	defer lease.Stop()
	lost := false
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-lease.C:
			if !lost {
				lost = true
				o.lost(e, inv.AllocationID, fmt.Sprintf("no heartbeat for %s", o.cfg.Lease))
			}
		case <-alive:
			lease.Reset(o.cfg.Lease)
		case f := <-frames:
			lease.Reset(o.cfg.Lease)
			if f.err != nil {
				if !lost {
					o.lost(e, inv.AllocationID, "status stream: "+streamError(f.err))
				}
				return
			}
			if o.forward(e, inv, f.status) {
				return
			}
		}
	}
}

// forward hands a status from inv's stream to its job, and reports whether
// it was the allocation's last.
func (o *Orchestrator) forward(e *entry, inv *types.Invocation, st types.Status) bool {
	if st.JobID != inv.JobID || st.AllocationID != inv.AllocationID {
		o.cfg.Logger.Warn("status for another allocation on a stream", "allocation", inv.AllocationID, "got", st.AllocationID)
		return false
	}
	o.do(func(now time.Time) {
		e.job.Status(st, now)
		o.flush(e)
	})
	return st.State.Terminal()
}

// frame is one Recv's outcome.
type frame struct {
	status types.Status
	err    error
}

// receive reads stream in a goroutine until an error or until stop, which
// waits for the goroutine: invoke can watch the lease while a Recv blocks.
// A heartbeat (the status last passed on, again) is not passed on: it only
// signals alive. So the stream is drained at once even while invoke waits
// for a busy loop, and no frame grows stale in its buffer.
func (o *Orchestrator) receive(ctx context.Context, stream StatusStream) (<-chan frame, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan frame)
	alive := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last *types.Status
		for {
			st, err := stream.Recv(ctx)
			if err == nil && last != nil && !st.State.Terminal() &&
				st.JobID == last.JobID && st.AllocationID == last.AllocationID && st.State == last.State {
				select {
				case alive <- struct{}{}:
				default:
				}
				continue
			}
			f := frame{err: err}
			if err == nil {
				f.status, last = *st, st
			}
			select {
			case out <- f:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out, alive, func() { cancel(); <-done }
}

// lost reports a dead or silent stream, unless it ended because the job did.
func (o *Orchestrator) lost(e *entry, id types.AllocationID, reason string) {
	if e.ctx.Err() != nil {
		return
	}
	o.do(func(now time.Time) {
		e.job.NodeLost(id, reason, now)
		o.flush(e)
	})
}

// observe records a peer's misbehaviour in the reputation every auction
// reads (a node lost by one job would hold up every job's auctions) and
// hands the change to the saver.
func (o *Orchestrator) observe(act Observe) {
	rec, dropped := o.rep.Record(act.Peer, act.Event, o.cfg.Clock())
	o.cfg.Logger.Info("peer penalised", "peer", act.Peer, "event", act.Event, "penalty", rec.Penalty)
	o.saver.putPeer(rec, dropped)
}

// heard clears a peer's Unheard mark: it answered a bid request, so
// auctions wait for it again.
func (o *Orchestrator) heard(peer string) {
	if rec, ok := o.rep.Heard(peer); ok {
		o.saver.putPeer(rec, nil)
	}
}

func streamError(err error) string {
	if errors.Is(err, io.EOF) {
		return "ended before a final status"
	}
	return err.Error()
}

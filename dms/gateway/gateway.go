package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/group"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/jobs"
)

// Runner is what the gateway needs of its node to run calls: the job half
// of api.Service, which *dms.DMS implements. Implementations are safe for
// concurrent use.
type Runner interface {
	SubmitJob(ctx context.Context, spec *jobs.Spec) (api.Job, error)
	WatchJob(ctx context.Context, id string) (<-chan api.Job, error)
	GetJob(ctx context.Context, id string) (api.Job, error)
	CancelJob(ctx context.Context, id string) error
	PutBlob(ctx context.Context, r io.Reader) (string, error)
	GetBlob(ctx context.Context, cid string) ([]byte, error)
	HasBlob(ctx context.Context, cid string) (bool, error)
}

var _ Runner = api.Service(nil)

// DefaultTaskRetention is how long a finished task is kept by default.
const DefaultTaskRetention = 7 * 24 * time.Hour

// Config is what a Gateway is made of.
type Config struct {
	DB     *store.DB // holds all of the gateway's state, under gw/
	Runner Runner    // runs warm instances as jobs
	Caller Caller    // sends calls to warm instances
	Clock  func() time.Time
	Logger *slog.Logger
	// TaskRetention is how long a finished task is kept; 0:
	// DefaultTaskRetention.
	TaskRetention time.Duration
	// RequireCredits admits a call only while its account has credits
	// available (credits.go); without it calls are free to make.
	RequireCredits bool
	// Settler pays providers at a payout (payouts.go); nil: RecordOnly.
	Settler Settler
	// TaskEnded, when set, is told the final state of each task whose end
	// this gateway records (a call's, or a stop), once; for metrics. It
	// must not block.
	TaskEnded func(TaskState)
}

func (c *Config) validate() error {
	var errs []error
	if c.DB == nil {
		errs = append(errs, errors.New("gateway: Config.DB is nil"))
	}
	if c.Runner == nil {
		errs = append(errs, errors.New("gateway: Config.Runner is nil"))
	}
	if c.Caller == nil {
		errs = append(errs, errors.New("gateway: Config.Caller is nil"))
	}
	if c.TaskRetention < 0 {
		errs = append(errs, fmt.Errorf("gateway: Config.TaskRetention %s is negative", c.TaskRetention))
	}
	return errors.Join(errs...)
}

// Gateway is the in-process gateway: Admin for the operator, As for an
// account's Service, CallEndpoint for published endpoints. Its methods are
// safe for concurrent use.
type Gateway struct {
	db             *store.DB
	requireCredits bool // Config.RequireCredits
	settler        Settler
	runner         Runner
	caller         Caller
	pools          *pools
	// calls holds the cancel (a context.CancelCauseFunc) of each call in
	// flight, by task ID, for StopTask.
	calls sync.Map
	// onTaskEnd is Config.TaskEnded, or nothing.
	onTaskEnd func(TaskState)
	// accounts holds the names of accounts found: no request of a known
	// account reads its record again.
	accounts sync.Map
	// functions caches function records, read on every call, and
	// revisions revisions (which never change).
	functions fnCache
	revisions revCache
	now       func() time.Time
	log       *slog.Logger
	retention time.Duration
	keys      *verifier

	// m applies every change of the records a group shares (replica.go).
	m *machine
	// grp is the gateway's group, nil when alone (member.go); self is
	// this member's ID, fw forwards calls to other members.
	grp       *group.Group
	groupName string
	self      string
	fw        Forwarder
	// queues holds the Queue records, by key, as applied; queuesCh is
	// closed at each change.
	queuesMu sync.Mutex
	queues   map[string]Queue
	queuesCh chan struct{}
	moved    map[string]movedCtx // by queue key: ends when its leader changes
	// waiters are closed when the kept task of their ID ends.
	waitersMu sync.Mutex
	waiters   map[string]chan struct{}
	// kept holds the IDs of the kept tasks this member runs.
	kept sync.Map
	// serving is set by Start: applied changes start work only then.
	serving atomic.Bool
	// syncs catches the member up before a read that missed.
	syncs syncer

	// mu serialises the changes of accounts, keys, functions and
	// endpoints, each a read then a write.
	mu sync.Mutex
	// stripes serialise the count of an endpoint's quota or of a
	// function's calls, and the changes of a task (a run and StopTask may
	// race), each a read then a write, per name, not globally.
	stripes [64]sync.Mutex
	seed    maphash.Seed

	// ctx is cancelled by Close: it ends the retention loop and detaches
	// the runs of calls, which wg waits for.
	ctx     context.Context
	cancel  context.CancelFunc
	life    sync.Mutex // guards started, closed, the counts in flight and wg.Add
	started bool
	closed  bool
	wg      sync.WaitGroup
	// inFlight counts the calls running, accountInFlight per account.
	inFlight        int
	accountInFlight map[string]int
}

var _ Admin = (*Gateway)(nil)

// New makes a Gateway over c.DB. Call Start to resume the tasks a previous
// run left unfinished.
func New(c Config) (*Gateway, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	g := &Gateway{
		db: c.DB, runner: c.Runner, caller: c.Caller, now: c.Clock, log: c.Logger, retention: c.TaskRetention, requireCredits: c.RequireCredits, settler: c.Settler,
		keys: newVerifier(), seed: maphash.MakeSeed(), accountInFlight: map[string]int{},
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.settler == nil {
		g.settler = RecordOnly{}
	}
	if g.onTaskEnd = c.TaskEnded; g.onTaskEnd == nil {
		g.onTaskEnd = func(TaskState) {}
	}
	if g.retention == 0 {
		g.retention = DefaultTaskRetention
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.pools = &pools{g: g, m: map[poolKey]*pool{}}
	g.queues, g.queuesCh, g.waiters = map[string]Queue{}, make(chan struct{}), map[string]chan struct{}{}
	g.moved = map[string]movedCtx{}
	m, err := newMachine(g)
	if err != nil {
		return nil, err
	}
	g.m = m
	g.restored() // reads the queues
	return g, nil
}

// Start resumes the tasks left unfinished in the database (resume: an
// async one whose input was kept runs again, any other fails with the
// reason) and starts the loop that deletes finished tasks past their
// retention.
func (g *Gateway) Start(ctx context.Context) error {
	g.life.Lock()
	switch {
	case g.closed:
		g.life.Unlock()
		return fmt.Errorf("%w: gateway closed", api.ErrUnavailable)
	case g.started:
		g.life.Unlock()
		return errors.New("gateway: started twice")
	}
	g.started = true
	g.life.Unlock()
	// Not under g.life: resume makes pools, which count their goroutines
	// with goBackground.
	g.serving.Store(true)
	if err := g.resume(ctx); err != nil {
		return err
	}
	if err := g.prewarm(ctx); err != nil {
		return err
	}
	if !g.goBackground() {
		return fmt.Errorf("%w: gateway closed", api.ErrUnavailable)
	}
	go func() {
		defer g.wg.Done()
		g.retain()
	}()
	if g.grp != nil {
		g.background(g.rebalance)
	}
	return nil
}

// Close stops the retention loop and detaches the calls in flight: their
// tasks stay in the database as they are and resume at the next Start. It
// returns once none of the gateway's goroutines touches the database, so
// the caller may close it then. Stop serving HTTP first.
func (g *Gateway) Close() error {
	g.life.Lock()
	if g.closed {
		g.life.Unlock()
		return nil
	}
	g.closed = true
	g.life.Unlock()
	g.cancel()
	g.wg.Wait()
	return nil
}

// Bounds of the calls in flight (sync calls waiting, async calls running):
// each holds a goroutine and a job of the node, so a caller that floods
// the gateway, async calls above all, is told to come back rather than
// let them grow without end; one account cannot take them all.
const (
	MaxCallsInFlight   = 4096
	MaxAccountInFlight = 1024
	// busyRetry is the Retry-After of a call refused for the bounds.
	busyRetry = time.Second
)

// enter counts a run of a call of acct in the goroutines Close waits for,
// within the bounds of calls in flight; an error once the gateway is
// closed or a bound is reached. The caller calls g.leave(acct) when the
// run ends. (The lock keeps wg.Add from racing with Close's wg.Wait.)
func (g *Gateway) enter(acct string) error {
	if err := g.admitCredits(acct); err != nil {
		return err
	}
	g.life.Lock()
	defer g.life.Unlock()
	switch {
	case g.closed:
		return fmt.Errorf("%w: the gateway is closed", api.ErrUnavailable)
	}
	kept, keptAll := g.m.opened(acct)
	switch {
	case g.inFlight+keptAll >= MaxCallsInFlight:
		return &api.RetryError{Err: fmt.Errorf("%w: the gateway runs %d calls, its limit", api.ErrTooManyRequests, g.inFlight+keptAll), After: busyRetry}
	case g.accountInFlight[acct]+kept >= MaxAccountInFlight:
		return &api.RetryError{Err: fmt.Errorf("%w: account %q runs %d calls, an account's limit", api.ErrTooManyRequests, acct, g.accountInFlight[acct]+kept), After: busyRetry}
	}
	g.inFlight++
	g.accountInFlight[acct]++
	g.wg.Add(1)
	return nil
}

// goBackground counts a goroutine of the gateway's in those Close waits
// for; false once the gateway is closed. The goroutine calls g.wg.Done.
func (g *Gateway) goBackground() bool {
	g.life.Lock()
	defer g.life.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// leave ends a run that enter counted.
func (g *Gateway) leave(acct string) {
	g.life.Lock()
	g.inFlight--
	if g.accountInFlight[acct]--; g.accountInFlight[acct] == 0 {
		delete(g.accountInFlight, acct)
	}
	g.life.Unlock()
	g.wg.Done()
}

// stripe is the lock of one name's counter (a quota or a function's calls).
func (g *Gateway) stripe(name string) *sync.Mutex {
	return &g.stripes[maphash.String(g.seed, name)%uint64(len(g.stripes))]
}

// As returns the Service of one account; ErrNotFound if there is none.
func (g *Gateway) As(ctx context.Context, account string) (Service, error) {
	if _, known := g.accounts.Load(account); !known {
		if _, err := g.account(account); err != nil {
			return nil, err
		}
		g.accounts.Store(account, struct{}{}) // accounts are never deleted
	}
	return &scope{g: g, account: account}, nil
}

// scope is the Service of one account: every read and write it makes is
// keyed by its account, so it never reaches another's.
type scope struct {
	g       *Gateway
	account string
}

var _ Service = (*scope)(nil)

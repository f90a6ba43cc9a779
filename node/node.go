package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// ErrClosed means the node was closed.
var ErrClosed = errors.New("node: closed")

// Network is what a Node needs from the network. Implementations are safe
// for concurrent use; a peer equal to the node's own PeerID is delivered locally.
type Network interface {
	// SendBid delivers a *types.Bid or *types.Decline to a requester.
	SendBid(ctx context.Context, peer string, addrs []string, msg types.Message) error
	// FetchBlob fetches a blob from peer and verifies it against its CID
	// (a mismatch wraps types.ErrCIDMismatch). The error wraps
	// ErrBlobNotFound when the peer answered that it does not hold it.
	FetchBlob(ctx context.Context, peer string, cid string) ([]byte, error)
	// FindProviders returns PeerIDs of peers the DHT names as holding a
	// blob, other than this node: none when the lookup fails or ctx ends.
	FindProviders(ctx context.Context, cid string) []string
	// Provide announces that this node holds a blob.
	Provide(ctx context.Context, cid string) error
	// Connected reports whether the node has a live connection to peer
	// (always true for the node's own PeerID).
	Connected(peer string) bool
	// SendReceipt delivers a receipt, signed, to its requester, and
	// returns once the requester countersigned it and the countersignature
	// is kept (with the provider's books). An error wrapping
	// ErrReceiptRefused is a refusal for good; any other is tried again.
	SendReceipt(ctx context.Context, peer string, r *types.Receipt) error
}

// Store is the node's durable record store.
type Store interface {
	Put(key string, v any) error
	// Lookup decodes the record under key into v and reports whether it was there.
	Lookup(key string, v any) (bool, error)
	Scan(prefix string, fn func(key string, value []byte) error) error
	// Write stores each value of put under its key and deletes the keys
	// of del (an absent one is not an error), all or nothing.
	Write(put map[string]any, del []string) error
}

// Blobs is the node's content-addressed blob store.
type Blobs interface {
	Put(data []byte) (string, error)
	Get(cid string) ([]byte, error)
	Has(cid string) bool
}

// Config configures a Node.
type Config struct {
	ID     types.NodeID
	Record types.CapabilityRecord // what the node offers: Offered, Price, Labels, Energy
	// Executors are the executors the node can run. It offers those its
	// record lists (Record.Executors): an executor whose engine stops
	// answering is dropped from the record, not from here.
	Executors map[string]jobs.Executor
	// Network lets tasks that ask for a network (docker's network: true)
	// have one; without it, such jobs are declined.
	Network   bool
	Admission Admission
	WorkDir   string // allocations get a scratch directory under it
	Clock     func() time.Time
	Logger    *slog.Logger

	LockTTL time.Duration // a confirmed lock waits this long for its invocation (default 10s)
	BidHold time.Duration // a bid's soft reservation outlives the bid window by this much (default 3s)
	Holds   HoldPolicy    // how holds are shared among requesters (zero fields: DefaultHoldPolicy's)
	// NewID names the allocation a bid for a job would become; nil: the
	// job's ID and 64 random bits. Tests name allocations with it.
	NewID       func(job types.JobID) types.AllocationID
	OutputLimit int64 // cap on stdout and on stderr each (default 1 MiB)
	MaxBlob     int64 // largest module, stdin, input archive or input file fetched (default 256 MiB)
	// MaxInputBytes bounds a task's input files together (Task.Files;
	// default 1 GiB).
	MaxInputBytes int64
	// Heartbeat is how often an invocation stream carries the allocation's
	// status again while nothing else happens, when the invocation names no
	// lease (default 250ms, a quarter of the default lease).
	Heartbeat time.Duration

	// Warm instances (warm.go). OrphanGrace is how long an instance's
	// requester may stay disconnected before the instance is released
	// (default 30s). An instance sends its requester a receipt every
	// ReceiptCalls calls (default 1,000) or ReceiptEvery (default 10s),
	// whichever comes first, and a final one when it ends. An instance
	// with no call for ReclaimIdle (default 500ms) is released when a bid
	// request finds the node short only of the room it holds.
	OrphanGrace  time.Duration
	ReceiptCalls uint64
	ReceiptEvery time.Duration
	ReclaimIdle  time.Duration

	// Idle makes the node idle-only (idle.go): it bids only while the
	// host's other processes leave its CPU idle, as CPU reads it every
	// Idle.SampleEvery(), and stops its running units when they do not.
	// nil: the node bids whatever the host does.
	Idle *IdlePolicy
	CPU  CPUSampler

	// Phase, when set, is told of each phase of a run once it ended
	// (PhaseFetch, PhaseExecute, PhaseStore), with when it began and how
	// it failed (nil: it did not): the node's traces time them. Called
	// from the run's goroutine; it must not block.
	Phase func(alloc types.AllocationID, phase string, began time.Time, err error)
}

// The phases of a run, as Config.Phase names them.
const (
	PhaseFetch   = "fetch"   // the program, stdin and inputs, from the store or from peers
	PhaseExecute = "execute" // the executor's run
	PhaseStore   = "store"   // the outputs stored as blobs and queued for announcement
)

// machine is the Machine's part of the config.
func (c *Config) machine() MachineConfig {
	names := make([]string, 0, len(c.Executors))
	for name := range c.Executors {
		names = append(names, name)
	}
	return MachineConfig{
		ID: c.ID, Record: c.Record, Executors: names, Network: c.Network, Admission: c.Admission,
		LockTTL: c.LockTTL, BidHold: c.BidHold, Holds: c.Holds, NewID: c.NewID,
	}
}

func (c *Config) validate() error {
	switch {
	case c.ID.PeerID == "":
		return errors.New("node: config: no PeerID")
	case c.WorkDir == "":
		return errors.New("node: config: no work directory")
	case c.Clock == nil:
		return errors.New("node: config: no clock")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&c.LockTTL, 10*time.Second)
	setDefault(&c.BidHold, 3*time.Second)
	setDefault(&c.OutputLimit, 1<<20)
	setDefault(&c.MaxBlob, 256<<20)
	setDefault(&c.MaxInputBytes, 1<<30)
	setDefault(&c.Heartbeat, defaultHeartbeat)
	setDefault(&c.OrphanGrace, 30*time.Second)
	setDefault(&c.ReclaimIdle, 500*time.Millisecond)
	setDefault(&c.ReceiptCalls, 1000)
	setDefault(&c.ReceiptEvery, 10*time.Second)
	if c.OrphanGrace < 0 || c.ReceiptEvery < 0 {
		return fmt.Errorf("node: config: orphan grace %s and receipt interval %s must be positive", c.OrphanGrace, c.ReceiptEvery)
	}
	if c.Heartbeat < MinHeartbeat {
		return fmt.Errorf("node: config: heartbeat %s is under the minimum %s", c.Heartbeat, MinHeartbeat)
	}
	if c.Idle != nil {
		if c.CPU == nil {
			return errors.New("node: config: an idle-only node needs a CPU sampler")
		}
		return c.Idle.validate()
	}
	return nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Info is a snapshot of a node's capability and load.
type Info struct {
	Record     types.CapabilityRecord
	Registered types.Resources
	Available  types.Resources
	Used       types.Resources // held, locked and running, summed: never over Registered unless the offer was lowered under it
	Running    int
	Locked     int
	// RunningRes and LockedRes split Used's locks by state: what running
	// allocations use, and what locks not started yet keep.
	RunningRes types.Resources
	LockedRes  types.Resources
	Holds      int             // bids held, waiting for an Accept
	Held       types.Resources // what they hold
	Dropped    uint64          // bid requests dropped since the start because the node's mailbox was full
	Warm       int             // warm instances taking calls (each also counts in Running)
	WarmCalls  uint64          // calls served by warm instances since the start
	Host       *HostState      // an idle-only node's view of its host; nil otherwise
}

// Node is the Node actor of one machine and the handle to it. Its methods are
// safe for concurrent use: each one is a message to the actor, which owns the
// provider's Machine and applies what it asks.
type Node struct {
	cfg  Config
	net  Network
	root *actor.RootContext
	pid  *actor.PID

	// slots bounds what the network can make the actor queue: a message
	// from outside holds a slot until the actor takes it. A request waits
	// for a slot (honouring its context), a bid request finding none is
	// dropped; the node's own messages (ticks, ends of runs) need none.
	slots   chan struct{}
	tickets atomic.Uint64
	dropped atomic.Uint64 // bid requests dropped for want of a slot

	ctx       context.Context // cancelled by Close; parent of every allocation's context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	provides  chan string // CIDs of results to announce in the DHT (provide.go)

	// warm is the registry of warm instances taking calls
	// (types.AllocationID -> *instance): calls find them here, not
	// through the actor. warmCalls counts the calls of those that ended.
	warm      sync.Map
	warmCalls atomic.Uint64
	outbox    *outbox // receipts not answered yet (receipts.go)
	bids      *bidLog // answers to bid requests, written in batches (bidlog.go)
}

// mailboxSize is how many messages from the network the actor may have
// queued at once.
const mailboxSize = 4096

// New restores the node's state from st and spawns its actor in system.
func New(system *actor.ActorSystem, cfg Config, net Network, st Store, blobs Blobs) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, net: net, root: system.Root, provides: make(chan string, provideQueue), slots: make(chan struct{}, mailboxSize)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	a, err := restore(n, st, blobs)
	if err != nil {
		n.cancel()
		return nil, err
	}
	// The default mailbox is unbounded and never spins; the slots bound it.
	// (actor.Bounded spins on runtime.Gosched while full and cannot be
	// given up on.)
	n.pid = system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }))
	n.goTicker()
	n.goOutbox(n.outbox)
	n.goDo(n.bids.run)
	n.goProvide()
	n.goSampleHost()
	return n, nil
}

// restore rebuilds the provider's Machine from its records, and writes the
// records the restart changed (allocations it found running, now failed).
// No epoch is issued again: the next is above node/epoch, every record's
// and every audit entry's.
func restore(n *Node, st Store, blobs Blobs) (*nodeActor, error) {
	log := n.cfg.Logger.With("component", "node")
	ensureIndex(st, log)
	n.bids = newBidLog(st, log)
	var epoch uint64
	if _, err := st.Lookup(epochKey, &epoch); err != nil {
		return nil, fmt.Errorf("node: reading lock epoch: %w", err)
	}
	var recs []Allocation
	err := st.Scan(AllocationPrefix, func(_ string, v []byte) error {
		var r Allocation
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("node: decoding allocation record: %w", err)
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	audit, err := openAudit(st)
	if err != nil {
		return nil, err
	}
	m, err := NewMachine(n.cfg.machine(), storeHistory{store: st, log: log}, recs, max(epoch, audit.epoch), n.cfg.Clock())
	if err != nil {
		return nil, err
	}
	a := &nodeActor{
		n: n, m: m, store: st, blobs: blobs, log: log, audit: audit,
		replies: map[Ticket]chan<- answer{}, streams: map[Ticket]chan types.Status{},
		runs: map[types.AllocationID]*runHandle{},
	}
	if p := n.cfg.Idle; p != nil {
		// Not idle until measured so: restored locks end.
		a.idle = newIdleWatch(*p, n.cfg.Clock())
		m.SetHost(a.idle.state.Reason, n.cfg.Clock())
	}
	n.outbox = &outbox{n: n, store: st, kick: make(chan struct{}, 1)}
	if err := a.save(m.Ready()); err != nil {
		return nil, fmt.Errorf("node: restoring: %w", err)
	}
	m.Advance(nil)
	return a, nil
}

// goTicker expires locks and holds; expiry is also checked on every use, so
// the tick only bounds how long an expired lock is reported as held.
func (n *Node) goTicker() {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-t.C:
				n.post(tickMsg{})
			}
		}
	}()
}

// goSampleHost reads an idle-only node's host CPU times at once and then
// every Idle.SampleEvery(), for the actor.
func (n *Node) goSampleHost() {
	if n.cfg.Idle == nil {
		return
	}
	n.goDo(func(ctx context.Context) {
		t := time.NewTicker(n.cfg.Idle.SampleEvery())
		defer t.Stop()
		for {
			times, err := n.cfg.CPU.CPUTimes()
			n.post(hostSample{times: times, err: err, at: n.cfg.Clock()})
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// goDo runs f in a goroutine owned by the node: Close waits for it.
func (n *Node) goDo(f func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

// post sends the actor one of the node's own messages: they need no slot.
func (n *Node) post(msg any) { n.root.Send(n.pid, msg) }

// acquire takes an admission slot for a message from outside, waiting while
// the actor has mailboxSize of them queued.
func (n *Node) acquire(ctx context.Context) error {
	select {
	case n.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.ctx.Done():
		return ErrClosed
	}
}

// release gives back the slot of a message the actor took.
func (n *Node) release() { <-n.slots }

// Close stops the actor and every allocation and waits for their goroutines.
// Running allocations are cancelled; their records say so.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		_ = n.root.PoisonFuture(n.pid).Wait()
		n.cancel()
		n.wg.Wait()
	})
	return nil
}

// HandleBidRequest lets the node decide on a bid request; the answer, a Bid
// or a Decline, goes to the requester over the network. A node whose
// mailbox is full drops the request (it is counted in Info.Dropped): its
// requester counts a silent node as busy.
func (n *Node) HandleBidRequest(from string, req *types.BidRequest) {
	select {
	case n.slots <- struct{}{}:
	default:
		n.dropped.Add(1)
		n.cfg.Logger.Debug("mailbox full: bid request dropped", "job", req.JobID, "from", from)
		return
	}
	n.post(bidRequestMsg{req: req})
}

// bidRequestMsg is a bid request for the actor: the machine decides, then
// the actor frees idle warm instances when they alone keep the node from
// bidding.
type bidRequestMsg struct{ req *types.BidRequest }

// Accept locks capability for an allocation (the commit point) and answers
// with a *types.Confirm or a *types.Reject.
func (n *Node) Accept(ctx context.Context, from string, a *types.Accept) (types.Message, error) {
	return n.ask(ctx, func(m *Machine, t Ticket, now time.Time) { m.Accept(from, a, t, now) }, nil)
}

// Heartbeat bounds. A requester's lease sets the interval to a quarter of
// it, never below MinHeartbeat nor above MaxHeartbeat, so a requester cannot
// make a node flood a stream, nor wait so long that a lost stream lingers.
const (
	defaultHeartbeat = 250 * time.Millisecond
	MinHeartbeat     = 20 * time.Millisecond
	MaxHeartbeat     = 15 * time.Second
)

// heartbeat is the interval of heartbeats on inv's stream.
func (n *Node) heartbeat(inv *types.Invocation) time.Duration {
	if inv.Lease <= 0 {
		return n.cfg.Heartbeat
	}
	return min(max(inv.Lease/4, MinHeartbeat), MaxHeartbeat)
}

// Invoke starts the allocation named by inv and calls send with each of its
// status changes until a terminal one, or until ctx ends (the allocation
// goes on: the requester can re-attach or query it). While the allocation
// runs, send also gets its current status again every quarter of
// inv.Lease (Config.Heartbeat without one): the requester's proof that the
// node and the stream are alive. Invoke returns ErrClosed when the node
// closes first, so the stream breaks instead of going quiet.
//
// Invoking again with the lock's epoch, as a restarted requester does,
// re-attaches to the running allocation, or, if it ended meanwhile, sends
// its final status (result included) at once.
func (n *Node) Invoke(ctx context.Context, from string, inv *types.Invocation, send func(*types.Status) error) error {
	stream := make(chan types.Status, streamSize)
	t := Ticket(n.tickets.Add(1))
	defer n.post(unwatch{ticket: t})
	if _, err := n.request(ctx, t, func(m *Machine, t Ticket, now time.Time) { m.Invoke(from, inv, t, now) }, stream); err != nil {
		return err
	}
	every := n.heartbeat(inv)
	beat := time.NewTicker(every)
	defer beat.Stop()
	var last *types.Status
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrClosed
		case st, ok := <-stream:
			if !ok {
				return nil
			}
			last = &st
			if err := send(last); err != nil {
				return err
			}
			beat.Reset(every)
		case <-beat.C:
			if last == nil || last.State.Terminal() {
				continue
			}
			if err := send(last); err != nil {
				return err
			}
		}
	}
}

// Cancel stops an allocation (locked or running) of the requester's and
// releases its capability. It answers with the allocation's *types.Status,
// or nil when it withdrew a bid's soft reservation (no AllocationID).
func (n *Node) Cancel(ctx context.Context, from string, c *types.Cancel) (types.Message, error) {
	return n.ask(ctx, func(m *Machine, t Ticket, now time.Time) { m.Cancel(from, c, t, now) }, nil)
}

// Status answers a status query with the allocation's *types.Status.
func (n *Node) Status(ctx context.Context, from string, q *types.StatusQuery) (types.Message, error) {
	return n.ask(ctx, func(m *Machine, t Ticket, _ time.Time) { m.Query(from, q, t) }, nil)
}

// Info returns the node's capability record and load.
func (n *Node) Info(ctx context.Context) (Info, error) {
	reply := make(chan Info, 1)
	if err := n.send(ctx, infoRequest{reply: reply}); err != nil {
		return Info{}, err
	}
	select {
	case in := <-reply:
		in.Dropped = n.dropped.Load()
		in.Warm, in.WarmCalls = n.warmInfo()
		return in, nil
	case <-ctx.Done():
		return Info{}, fmt.Errorf("node: info: %w", ctx.Err())
	case <-n.ctx.Done():
		return Info{}, fmt.Errorf("node: info: %w", ErrClosed)
	}
}

// SetRecord replaces what the node offers (share, price, labels, energy).
// Existing locks and allocations keep what they hold.
func (n *Node) SetRecord(ctx context.Context, rec types.CapabilityRecord) error {
	reply := make(chan struct{}, 1)
	n.post(recordRequest{rec: rec, reply: reply})
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node: record: %w", ctx.Err())
	case <-n.ctx.Done():
		return fmt.Errorf("node: record: %w", ErrClosed)
	}
}

const defaultAskTimeout = 10 * time.Second

// send delivers a message from outside to the actor, once it has a slot;
// the actor releases the slot when it takes the message.
func (n *Node) send(ctx context.Context, msg any) error {
	if err := n.acquire(ctx); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.post(msg)
	return nil
}

// ask hands the machine a request and waits for its Reply, for at most
// defaultAskTimeout when ctx has no deadline. An error Reply is returned as
// the error.
func (n *Node) ask(ctx context.Context, fn func(m *Machine, t Ticket, now time.Time), stream chan types.Status) (types.Message, error) {
	return n.request(ctx, Ticket(n.tickets.Add(1)), fn, stream)
}

func (n *Node) request(ctx context.Context, t Ticket, fn func(m *Machine, t Ticket, now time.Time), stream chan types.Status) (types.Message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultAskTimeout)
		defer cancel()
	}
	reply := make(chan answer, 1) // room for the answer: an asker that gave up never blocks the actor
	ev := event{fn: func(m *Machine, now time.Time) { fn(m, t, now) }, ticket: t, reply: reply, stream: stream, slot: true}
	if err := n.send(ctx, ev); err != nil {
		return nil, err
	}
	select {
	case a := <-reply:
		return a.msg, a.err
	case <-ctx.Done():
		return nil, fmt.Errorf("node: request %d: %w", t, ctx.Err())
	case <-n.ctx.Done():
		return nil, fmt.Errorf("node: request %d: %w", t, ErrClosed)
	}
}

// sendBid delivers a bid or decline before its request's deadline; a bid
// that cannot be delivered releases its hold at once.
func (n *Node) sendBid(ctx context.Context, s Send) {
	ctx, cancel := context.WithDeadline(ctx, s.Deadline)
	defer cancel()
	if err := n.net.SendBid(ctx, s.To, s.Addrs, s.Msg); err != nil {
		n.cfg.Logger.Debug("sending bid", "to", s.To, "kind", s.Msg.Kind(), "err", err)
		if b, isBid := s.Msg.(*types.Bid); isBid {
			n.post(event{fn: func(m *Machine, _ time.Time) { m.BidUndelivered(b.Allocation) }})
		}
	}
}

package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
	// FetchBlob fetches a blob from peer and verifies it against its CID.
	FetchBlob(ctx context.Context, peer string, cid string) ([]byte, error)
	// Provide announces that this node holds a blob.
	Provide(ctx context.Context, cid string) error
}

// Store is the node's durable record store.
type Store interface {
	Put(key string, v any) error
	// Lookup decodes the record under key into v and reports whether it was there.
	Lookup(key string, v any) (bool, error)
	Scan(prefix string, fn func(key string, value []byte) error) error
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

	LockTTL     time.Duration // a confirmed lock waits this long for its invocation (default 10s)
	BidHold     time.Duration // a bid's soft reservation outlives the bid window by this much (default 3s)
	OutputLimit int64         // cap on stdout and on stderr each (default 1 MiB)
	MaxBlob     int64         // largest module, stdin or input archive fetched (default 256 MiB)
	// Heartbeat is how often an invocation stream carries the allocation's
	// status again while nothing else happens, when the invocation names no
	// lease (default 250ms, a quarter of the default lease).
	Heartbeat time.Duration
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
	setDefault(&c.Heartbeat, defaultHeartbeat)
	if c.Heartbeat < MinHeartbeat {
		return fmt.Errorf("node: config: heartbeat %s is under the minimum %s", c.Heartbeat, MinHeartbeat)
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
	Running    int
	Locked     int
}

// Node is the Node actor of one machine and the handle to it. Its methods are
// safe for concurrent use: each one is a message to the actor, which owns all
// mutable state (the ledger and the live allocations).
type Node struct {
	cfg  Config
	net  Network
	root *actor.RootContext
	pid  *actor.PID

	ctx       context.Context // cancelled by Close; parent of every allocation's context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	provides  chan string // CIDs of results to announce in the DHT (provide.go)
}

// mailboxSize bounds what the network can make the actor queue; senders block
// (back-pressure) when it is full.
const mailboxSize = 4096

// New restores the node's state from st and spawns its actor in system.
func New(system *actor.ActorSystem, cfg Config, net Network, st Store, blobs Blobs) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, net: net, root: system.Root, provides: make(chan string, provideQueue)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	state, err := restore(n, st, blobs)
	if err != nil {
		n.cancel()
		return nil, err
	}
	props := actor.PropsFromProducer(func() actor.Actor { return state },
		actor.WithMailbox(actor.Bounded(mailboxSize)))
	n.pid = system.Root.Spawn(props)
	n.goTicker()
	n.goProvide()
	return n, nil
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
				n.root.Send(n.pid, tickMsg{})
			}
		}
	}()
}

// goDo runs f in a goroutine owned by the node: Close waits for it.
func (n *Node) goDo(f func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

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
// or a Decline, goes to the requester over the network.
func (n *Node) HandleBidRequest(from string, req *types.BidRequest) {
	n.root.Send(n.pid, bidRequestMsg{from: from, req: req})
}

// Accept locks capability for an allocation (the commit point) and answers
// with a *types.Confirm or a *types.Reject.
func (n *Node) Accept(ctx context.Context, from string, a *types.Accept) (types.Message, error) {
	return askMessage(ctx, n, acceptMsg{from: from, accept: a})
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
	sink := make(chan *types.Status, sinkSize)
	if _, err := ask(ctx, n, invokeMsg{from: from, inv: inv, sink: sink}); err != nil {
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
		case st, ok := <-sink:
			if !ok {
				return nil
			}
			last = st
			if err := send(st); err != nil {
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
	return askMessage(ctx, n, cancelMsg{from: from, cancel: c})
}

// Status answers a status query with the allocation's *types.Status.
func (n *Node) Status(ctx context.Context, from string, q *types.StatusQuery) (types.Message, error) {
	return askMessage(ctx, n, statusMsg{from: from, query: q})
}

// Info returns the node's capability record and load.
func (n *Node) Info(ctx context.Context) (Info, error) {
	v, err := ask(ctx, n, infoMsg{})
	if err != nil {
		return Info{}, err
	}
	return v.(Info), nil
}

// SetRecord replaces what the node offers (share, price, labels, energy).
// Existing locks and allocations keep what they hold.
func (n *Node) SetRecord(ctx context.Context, rec types.CapabilityRecord) error {
	_, err := ask(ctx, n, recordMsg{rec: rec})
	return err
}

const defaultAskTimeout = 10 * time.Second

// ask sends msg to the actor as a request and waits for the answer, for
// at most defaultAskTimeout when ctx has no deadline. An error answer is
// returned as the error.
func ask(ctx context.Context, n *Node, msg any) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultAskTimeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	reply := make(chan any, 1)
	n.root.Send(n.pid, request{body: msg, reply: reply})
	var v any
	select {
	case v = <-reply:
	case <-ctx.Done():
		return nil, fmt.Errorf("node: %T: %w", msg, ctx.Err())
	case <-n.ctx.Done():
		return nil, fmt.Errorf("node: %T: %w", msg, ErrClosed)
	}
	if e, ok := v.(error); ok {
		return nil, e
	}
	return v, nil
}

func askMessage(ctx context.Context, n *Node, msg any) (types.Message, error) {
	v, err := ask(ctx, n, msg)
	if err != nil {
		return nil, err
	}
	if m, ok := v.(types.Message); ok {
		return m, nil
	}
	return nil, nil // an ack: done, nothing to report
}

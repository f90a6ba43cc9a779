package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// defaultWait bounds a call whose ctx has no deadline.
const defaultWait = 3 * time.Second

// Group is this member's part of a group. Its methods are safe for
// concurrent use.
type Group struct {
	cfg     Config
	logger  *slog.Logger
	raft    *raft.Raft
	trans   *raft.NetworkTransport
	fsm     *fsm
	members *members
	rpcLn   net.Listener
	obs     *raft.Observer
	obsCh   chan raft.Observation
	poke    chan struct{} // cap 1: the monitor looks again
	nudge   chan struct{} // cap 1: a forwarded command committed (nudger)

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	view     view
	moved    chan struct{} // closed and replaced when view changes
	watchers []chan struct{}
	clients  map[string]*clientSlot
	served   map[net.Conn]bool
	closed   bool
}

// clientSlot is the connection to one leader, or the dial under way.
type clientSlot struct {
	ready chan struct{} // closed when c or err is set
	c     *rpcClient
	err   error
}

// Result is what a command committed gave.
type Result struct {
	Index uint64 // the command's index in the log
	Data  []byte // the FSM's result, as the leader applied it
}

// Open starts this member: raft, its listeners and the loop that watches
// leadership and members. It returns at once, without waiting for a leader.
func Open(c Config) (*Group, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	g := &Group{
		cfg: c, logger: c.Logger, poke: make(chan struct{}, 1), nudge: make(chan struct{}, 1),
		moved: make(chan struct{}), clients: map[string]*clientSlot{}, served: map[net.Conn]bool{},
	}
	if g.logger == nil {
		g.logger = slog.New(slog.DiscardHandler)
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.members = &members{peers: idSet(append([]string{c.Self}, c.Peers...))}
	g.fsm = newFSM(c.FSM, g.lookAgain)
	if err := g.start(); err != nil {
		g.cancel()
		return nil, err
	}
	g.wg.Add(3)
	go g.monitor()
	go g.acceptRPC()
	go g.nudger()
	return g, nil
}

// start opens the stores and listeners, bootstraps if asked, and starts
// raft. On an error it closes what it opened.
func (g *Group) start() (err error) {
	c := &g.cfg
	var undo []func() error
	defer func() {
		if err != nil {
			for _, f := range slices.Backward(undo) {
				err = errors.Join(err, f())
			}
		}
	}()
	logs, err := c.DB.RaftLog("raft/" + c.Name + "/")
	if err != nil {
		return err
	}
	hcl := raftLogger(c.Logger, c.Name)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(c.Dir, 2, hcl)
	if err != nil {
		return fmt.Errorf("group: snapshots in %s: %w", c.Dir, err)
	}
	raftLn, err := c.Transport.Listen(channelRaft)
	if err != nil {
		return fmt.Errorf("group: listening for raft: %w", err)
	}
	g.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &streamLayer{
			guardedListener: &guardedListener{Listener: raftLn, allow: g.members.allow, logger: g.logger, channel: channelRaft},
			self:            c.Self, transport: c.Transport,
		},
		MaxPool: maxPool, Timeout: ioTimeout, Logger: hcl,
	})
	undo = append(undo, g.trans.Close)
	rpcLn, err := c.Transport.Listen(channelRPC)
	if err != nil {
		return fmt.Errorf("group: listening for rpc: %w", err)
	}
	g.rpcLn = &guardedListener{Listener: rpcLn, allow: g.members.allow, logger: g.logger, channel: channelRPC}
	undo = append(undo, g.rpcLn.Close)

	rc := g.raftConfig(hcl)
	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return fmt.Errorf("group: reading raft state: %w", err)
	}
	if !has && !c.Join {
		if err := raft.BootstrapCluster(rc, logs, logs, snaps, g.trans, g.founders()); err != nil {
			return fmt.Errorf("group: bootstrap: %w", err)
		}
	}
	if g.raft, err = raft.NewRaft(rc, g.fsm, logs, logs, snaps, g.trans); err != nil {
		return fmt.Errorf("group: starting raft: %w", err)
	}
	g.members.mu.Lock()
	g.members.fresh = g.configIDs
	g.members.mu.Unlock()
	g.obsCh = make(chan raft.Observation, 1024)
	g.obs = raft.NewObserver(g.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.PeerObservation, raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	g.raft.RegisterObserver(g.obs)
	return nil
}

func (g *Group) raftConfig(hcl hclog.Logger) *raft.Config {
	c := g.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.Self)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = commitTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.SnapshotThreshold
	rc.ShutdownOnRemove = false // a removed member stays open, leaderless, until its owner closes it
	rc.Logger = hcl
	return rc
}

// founders is the configuration a new group starts with: Self and Peers,
// all voters, in ID order (every founder computes the same one).
func (g *Group) founders() raft.Configuration {
	var conf raft.Configuration
	ids := append([]string{g.cfg.Self}, g.cfg.Peers...)
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
	}
	return conf
}

// configIDs reads the IDs in raft's latest configuration.
func (g *Group) configIDs() (map[string]bool, error) {
	servers, err := g.servers()
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, s := range servers {
		ids[string(s.ID)] = true
	}
	return ids, nil
}

func (g *Group) servers() ([]raft.Server, error) {
	f := g.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

func idSet(ids []string) map[string]bool {
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	return set
}

// acceptRPC serves the members that connect on the "rpc" channel.
func (g *Group) acceptRPC() {
	defer g.wg.Done()
	for {
		conn, err := g.rpcLn.Accept()
		if err != nil {
			if g.ctx.Err() == nil {
				g.logger.Warn("group: rpc listener stopped", "group", g.cfg.Name, "err", err)
			}
			return
		}
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			conn.Close()
			return
		}
		g.served[conn] = true
		g.wg.Add(1)
		g.mu.Unlock()
		go func() {
			defer g.wg.Done()
			g.serveConn(conn)
		}()
	}
}

func (g *Group) dropServerConn(conn net.Conn) {
	conn.Close()
	g.mu.Lock()
	delete(g.served, conn)
	g.mu.Unlock()
}

// Apply commits cmd through the leader (a follower forwards it over the
// "rpc" channel) and returns once this member's FSM has applied it: a read
// of the FSM right after sees it, on every member. It waits for a leader
// up to ctx's deadline (3 s if ctx has none), then fails with ErrNoQuorum.
//
// An error that wraps ErrNoQuorum is ambiguous when the command may have
// reached the leader: it may still commit, so commands must be
// idempotent. Apply retries at a new leader only what was surely not
// appended. If the command committed but this member did not apply it in
// time, Apply returns its Result with an error wrapping ErrNoQuorum.
func (g *Group) Apply(ctx context.Context, cmd []byte) (Result, error) {
	if len(cmd) > MaxMessage-reqHeader {
		return Result{}, fmt.Errorf("%w: a command of %d bytes", ErrTooLarge, len(cmd))
	}
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	out, err := g.propose(ctx, opApply, cmd)
	if err != nil {
		return Result{}, err
	}
	res := Result{Index: out.index, Data: out.data}
	if err := g.WaitApplied(ctx, out.index); err != nil {
		return res, fmt.Errorf("%w: committed at %d, not applied here yet: %w", ErrNoQuorum, out.index, err)
	}
	return res, nil
}

// Sync returns once this member has applied everything the leader had
// applied when asked: a read after it sees every write acknowledged
// before it began, on any member (the read half of ReadIndex; nothing is
// written to the log). A leader returns at once.
func (g *Group) Sync(ctx context.Context) error {
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	out, err := g.propose(ctx, opRead, nil)
	if err != nil {
		return err
	}
	return g.WaitApplied(ctx, out.index)
}

func withDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultWait)
}

// WaitApplied returns once this member's FSM has applied index (an index
// of a command or configuration entry, e.g. a Result's), or ctx is done.
func (g *Group) WaitApplied(ctx context.Context, index uint64) error {
	for {
		applied, moved := g.fsm.state()
		if applied >= index {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("group: waiting for index %d, applied %d: %w", index, applied, ctx.Err())
		case <-g.ctx.Done():
			return ErrClosed
		}
	}
}

// AppliedIndex is the index of the last command or configuration entry
// this member's FSM applied (or of the snapshot it was restored from).
func (g *Group) AppliedIndex() uint64 {
	applied, _ := g.fsm.state()
	return applied
}

// Leader is the leader's ID as this member knows it, "" when none is known.
func (g *Group) Leader() string {
	_, id := g.raft.LeaderWithID()
	return string(id)
}

// IsLeader reports whether this member leads.
func (g *Group) IsLeader() bool { return g.raft.State() == raft.Leader }

// Healthy reports whether this member may act for the group right now:
// it leads and raft still holds the lease (a leader that lost contact with
// a majority for LeaderLeaseTimeout steps down), or it follows a leader it
// heard from within two heartbeat timeouts (a busy machine's pause of a
// few hundred milliseconds does not make it think itself cut off).
func (g *Group) Healthy() bool {
	switch g.raft.State() {
	case raft.Leader:
		return true
	case raft.Follower:
		return g.Leader() != "" && time.Since(g.raft.LastContact()) < 2*max(g.cfg.HeartbeatTimeout, g.cfg.LeaderLeaseTimeout)
	}
	return false
}

// Add makes id a voting member, through the leader; adding a member
// already a voter does nothing. The new member must have been opened with
// Join and this group's members among its Peers.
func (g *Group) Add(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("%w: an empty ID", ErrNotMember)
	}
	if servers, err := g.servers(); err == nil {
		for _, s := range servers {
			if string(s.ID) == id && s.Suffrage == raft.Voter {
				return nil
			}
		}
	}
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	_, err := g.propose(ctx, opAdd, []byte(id))
	return err
}

// Remove takes id out of the group, through the leader; ErrNotMember if
// it is not in the configuration. Removing the leader works: it commits
// the change, then steps down, and the others elect a new one.
func (g *Group) Remove(ctx context.Context, id string) error {
	if servers, err := g.servers(); err == nil && !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == id }) {
		return fmt.Errorf("%w: %q", ErrNotMember, id)
	}
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	_, err := g.propose(ctx, opRemove, []byte(id))
	return err
}

// Close stops raft and closes the listeners and connections; calls in
// flight fail. It is safe to call twice.
func (g *Group) Close() error {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		g.cancel()
		g.raft.DeregisterObserver(g.obs)
		if err := g.raft.Shutdown().Error(); err != nil {
			g.closeErr = fmt.Errorf("group: raft shutdown: %w", err)
		}
		g.closeErr = errors.Join(g.closeErr, g.trans.Close(), g.rpcLn.Close())
		g.mu.Lock()
		for conn := range g.served {
			conn.Close()
		}
		for _, s := range g.clients {
			if s.c != nil {
				s.c.fail(ErrClosed)
			}
		}
		g.mu.Unlock()
		g.wg.Wait()
		g.mu.Lock()
		for _, w := range g.watchers {
			close(w)
		}
		g.watchers = nil
		g.mu.Unlock()
	})
	return g.closeErr
}

// spawn runs fn in a goroutine that Close waits for; false, and fn not
// run, once the group is closed.
func (g *Group) spawn(fn func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn()
	}()
	return true
}

// nudgeFollowers asks the nudger to tell the followers the commit index
// now.
func (g *Group) nudgeFollowers() {
	select {
	case g.nudge <- struct{}{}:
	default:
	}
}

// nudger appends a barrier whenever a forwarded command committed. A
// follower learns that an entry committed only with the leader's next
// append, which raft sends when the next entry comes, or after
// CommitTimeout (5 to 10 ms) when none does: the follower that forwarded
// the command would wait that long to apply it. The barrier is such a
// next entry, at once. Nudges that come while one is in flight make one
// barrier more, not one each.
func (g *Group) nudger() {
	defer g.wg.Done()
	for {
		select {
		case <-g.nudge:
		case <-g.ctx.Done():
			return
		}
		if g.raft.State() == raft.Leader {
			g.raft.Barrier(ioTimeout).Error() // an error: leadership lost, or shut down; nothing to do
		}
	}
}

package group

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Transport carries the group's connections between members, addressed
// by member ID (a libp2p peer ID in production). Two channels: "raft"
// (raft's own RPCs) and "rpc" (this package's: applies and membership
// changes forwarded to the leader). The net.Conn a Listener accepts has
// RemoteAddr().String() == the remote member's ID, authenticated by the
// transport. Its methods may be called concurrently.
type Transport interface {
	Listen(channel string) (net.Listener, error)
	Dial(ctx context.Context, member, channel string) (net.Conn, error)
}

const (
	channelRaft = "raft"
	channelRPC  = "rpc"

	ioTimeout = 2 * time.Second // raft's network transport: one RPC's IO
	// dialTimeout bounds raft's dial of a member: a dead member's dial
	// fails (its heartbeat fails) well within an election's time.
	dialTimeout = 500 * time.Millisecond
	maxPool     = 3 // raft's network transport: pooled conns a peer
)

// memberAddr is a member ID as a net.Addr.
type memberAddr string

func (a memberAddr) Network() string { return "dms-group" }
func (a memberAddr) String() string  { return string(a) }

// guardedListener accepts only the connections that allow lets in; it
// closes every other at once, logging it at debug.
type guardedListener struct {
	net.Listener
	allow   func(member string) bool
	logger  *slog.Logger
	channel string
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		from := c.RemoteAddr().String()
		if l.allow(from) {
			return c, nil
		}
		l.logger.Debug("group: refused a connection from a non-member", "from", from, "channel", l.channel)
		c.Close()
	}
}

// streamLayer is raft's StreamLayer over the Transport's "raft" channel:
// a raft ServerAddress is a member ID.
type streamLayer struct {
	*guardedListener
	self      string
	transport Transport
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Addr() net.Addr { return memberAddr(s.self) }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, dialTimeout))
	defer cancel()
	return s.transport.Dial(ctx, string(address), channelRaft)
}

// members is the set of IDs allowed to connect: raft's latest
// configuration once there is one, the configured peers before.
type members struct {
	mu     sync.Mutex
	latest map[string]bool // nil: no configuration yet
	peers  map[string]bool
	fresh  func() (map[string]bool, error) // reads raft's latest configuration; nil before raft runs
}

func (m *members) set(ids map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(ids) > 0 {
		m.latest = ids
	}
}

// allow reports whether id may connect. A refusal by the cached set is
// checked once more against raft's configuration: a member added a moment
// ago is let in.
func (m *members) allow(id string) bool {
	m.mu.Lock()
	set, fresh := m.latest, m.fresh
	if set == nil {
		set = m.peers
	}
	m.mu.Unlock()
	if set[id] {
		return true
	}
	if fresh == nil {
		return false
	}
	ids, err := fresh()
	if err != nil || len(ids) == 0 {
		return false
	}
	m.set(ids)
	return ids[id]
}

package p2p

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Streams as net.Conn, for the gateways' replicated group (a raft
// transport's stream layer, on a protocol under "/dms/gw/"): the
// connection's Noise or TLS handshake authenticates the remote peer, whose
// PeerID is the conn's RemoteAddr.

// acceptQueue bounds the inbound streams of a Listener waiting for
// Accept; one more is reset.
const acceptQueue = 64

// keepTag marks, in the connection manager, the peers to which a gateway
// stream is open: their connections are not trimmed.
const keepTag = "dms-gw"

// ErrProtocolInUse means Listen was asked for a protocol the host serves
// already.
var ErrProtocolInUse = errors.New("p2p: protocol already served")

// PeerAddr is a peer as a net.Addr: its PeerID.
type PeerAddr string

// Network returns "libp2p".
func (PeerAddr) Network() string { return "libp2p" }

func (a PeerAddr) String() string { return string(a) }

// Listen serves proto: every inbound stream of it is a net.Conn from
// Accept, whose RemoteAddr().String() is the remote PeerID (authenticated
// by the connection's handshake) and LocalAddr().String() this host's. At
// most acceptQueue streams wait for Accept; one more is reset, counted as
// overloaded in Stats().Streams. Close of the listener removes the stream
// handler, resets the streams not accepted yet and unblocks Accept with
// net.ErrClosed, as does Close of the host. The caller must Close every
// Conn: while one is open, the connection manager does not trim its
// connection. Listen on a protocol the host serves already fails with
// ErrProtocolInUse.
func (h *Host) Listen(proto protocol.ID) (net.Listener, error) {
	if h.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if slices.Contains(h.host.Mux().Protocols(), proto) {
		return nil, errors.Join(ErrProtocolInUse, errors.New(string(proto)))
	}
	l := &listener{h: h, proto: proto, queue: make(chan network.Stream, acceptQueue), done: make(chan struct{})}
	h.host.SetStreamHandler(proto, l.handle)
	return l, nil
}

// Dial opens a stream of proto to peer to and returns it as a net.Conn,
// whose deadlines bound its reads and writes. addrs, multiaddrs with or
// without /p2p/<to>, are tried first; without them, and for a peer not
// connected, the peerstore and the DHT find it. ctx bounds the dial and
// the opening of the stream only. The caller must Close the Conn.
func (h *Host) Dial(ctx context.Context, to string, addrs []string, proto protocol.ID) (net.Conn, error) {
	s, err := h.openStream(ctx, to, addrs, proto)
	if err != nil {
		return nil, err
	}
	return h.conn(s), nil
}

// listener queues the inbound streams of its protocol for Accept.
type listener struct {
	h      *Host
	proto  protocol.ID
	queue  chan network.Stream
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex // guards closed, and sends on queue
	closed bool
}

var _ net.Listener = (*listener)(nil)

// handle queues s, or resets it when the queue is full or l closed.
func (l *listener) handle(s network.Stream) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		select {
		case l.queue <- s:
			return
		default:
			l.h.streams.add(ReasonOverloaded)
		}
	}
	_ = s.Reset()
}

// Accept waits for the next inbound stream; it is safe for concurrent use.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case s := <-l.queue:
		return l.h.conn(s), nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.h.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops serving the protocol and resets the streams not accepted.
func (l *listener) Close() error {
	l.once.Do(func() {
		l.h.host.RemoveStreamHandler(l.proto)
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.done)
		for {
			select {
			case s := <-l.queue:
				_ = s.Reset()
			default:
				return
			}
		}
	})
	return nil
}

// Addr returns this host's PeerID.
func (l *listener) Addr() net.Addr { return PeerAddr(l.h.ID()) }

// streamConn is a stream as a net.Conn.
type streamConn struct {
	network.Stream
	local, remote PeerAddr
	free          func()
	once          sync.Once
}

var _ net.Conn = (*streamConn)(nil)

// conn wraps s, keeping its connection from the connection manager until
// it is closed.
func (h *Host) conn(s network.Stream) *streamConn {
	p := s.Conn().RemotePeer()
	return &streamConn{Stream: s, local: PeerAddr(h.ID()), remote: PeerAddr(p.String()), free: h.keep(p)}
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

// Close closes the stream both ways.
func (c *streamConn) Close() error {
	c.once.Do(c.free)
	return c.Stream.Close()
}

// keptPeers counts the gateway streams open to each peer (conns and
// forward streams): while any is, the connection manager protects the
// peer's connections from trimming.
type keptPeers struct {
	mu sync.Mutex
	n  map[peer.ID]int
}

// keep protects p's connections until the returned func is called (once
// or more) for this keep and every other.
func (h *Host) keep(p peer.ID) (free func()) {
	k := &h.kept
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.n == nil {
		k.n = make(map[peer.ID]int)
	}
	if k.n[p]++; k.n[p] == 1 {
		h.host.ConnManager().Protect(p, keepTag)
	}
	var once sync.Once
	return func() { once.Do(func() { h.unkeep(p) }) }
}

func (h *Host) unkeep(p peer.ID) {
	k := &h.kept
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.n[p]--; k.n[p] <= 0 {
		delete(k.n, p)
		h.host.ConnManager().Unprotect(p, keepTag)
	}
}

package p2p

import (
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
)

// connGracePeriod keeps a new connection from being trimmed before it had a
// chance to matter (identify, DHT and pubsub handshakes).
const connGracePeriod = 30 * time.Second

// newResourceManager returns libp2p's auto-scaled default limits with the
// connection and stream limits of the system and transient scopes raised to
// floors derived from maxConns.
//
// The defaults scale the transient scope, where an inbound connection sits
// until its security handshake completes, to 32 + 16 per GiB of memory/8:
// about 80 on a 24 GiB machine, which blocked a bootstrap node when 100 hosts
// joined at once. The floors let half of maxConns be mid-handshake together.
// File descriptor limits stay as scaled from the process's ulimit.
// Every refusal is counted in blocked.
func newResourceManager(maxConns int, blocked *blockCounter) (network.ResourceManager, error) {
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(resourceLimits(maxConns)),
		rcmgr.WithMetricsDisabled(), // no Prometheus: it registers globally
		rcmgr.WithMetrics(blocked))
}

// gwStreamsPerPeer is the floor of the streams, each way, that one peer
// may hold on one protocol: the gateways' protocols (under "/dms/gw/")
// keep long-lived streams to each other, maxCallStreamsPerPeer forward
// streams and a raft transport's pool of conns. The resource manager has
// no limits by protocol prefix, so the floor is that of every protocol
// without limits of its own (libp2p's defaults are above it: 64 in, 128
// out); it also stands below any later default.
const gwStreamsPerPeer = 32

// resourceLimits returns the limits of newResourceManager.
func resourceLimits(maxConns int) rcmgr.ConcreteLimitConfig {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	scaled := scaling.AutoScale()
	limits := scaled.ToPartialLimitConfig()
	raise(&limits.System, maxConns, 16*maxConns)
	raise(&limits.Transient, maxConns/2, 4*maxConns)
	raiseStreams(&limits.ProtocolPeerDefault, gwStreamsPerPeer)
	raiseStreams(&limits.PeerDefault, 4*gwStreamsPerPeer)
	return limits.Build(scaled)
}

// raise lifts the connection limits of l to at least conns and its stream
// limits to at least streams, leaving unlimited ones alone.
func raise(l *rcmgr.ResourceLimits, conns, streams int) {
	for _, v := range []*rcmgr.LimitVal{&l.Conns, &l.ConnsInbound, &l.ConnsOutbound} {
		atLeast(v, conns)
	}
	raiseStreams(l, streams)
}

// raiseStreams lifts the stream limits of l to at least streams.
func raiseStreams(l *rcmgr.ResourceLimits, streams int) {
	for _, v := range []*rcmgr.LimitVal{&l.Streams, &l.StreamsInbound, &l.StreamsOutbound} {
		atLeast(v, streams)
	}
}

func atLeast(v *rcmgr.LimitVal, floor int) {
	if *v != rcmgr.Unlimited && int(*v) < floor {
		*v = rcmgr.LimitVal(floor)
	}
}

// newConnManager trims connections above high down to low.
func newConnManager(low, high int) (*connmgr.BasicConnMgr, error) {
	return connmgr.NewConnManager(low, high, connmgr.WithGracePeriod(connGracePeriod))
}

// Blocked counts what the resource manager refused, by resource. On a
// healthy node all stay zero; a bootstrap node whose ConnsIn grows needs a
// larger MaxConns (or more file descriptors).
type Blocked struct {
	ConnsIn, ConnsOut     uint64
	StreamsIn, StreamsOut uint64
	Peers                 uint64 // a peer over its own limits
	Protocols, Services   uint64 // a protocol or service over its limits, overall or for one peer
	Memory                uint64
}

// blockCounter is the resource manager's metrics reporter: it counts
// refusals and ignores admissions.
type blockCounter struct {
	connsIn, connsOut, streamsIn, streamsOut, peers, protocols, services, memory atomic.Uint64
}

var _ rcmgr.MetricsReporter = (*blockCounter)(nil)

func (b *blockCounter) snapshot() Blocked {
	return Blocked{
		ConnsIn: b.connsIn.Load(), ConnsOut: b.connsOut.Load(),
		StreamsIn: b.streamsIn.Load(), StreamsOut: b.streamsOut.Load(),
		Peers: b.peers.Load(), Protocols: b.protocols.Load(), Services: b.services.Load(),
		Memory: b.memory.Load(),
	}
}

func byDirection(dir network.Direction, in, out *atomic.Uint64) {
	if dir == network.DirInbound {
		in.Add(1)
	} else {
		out.Add(1)
	}
}

func (b *blockCounter) BlockConn(dir network.Direction, _ bool) {
	byDirection(dir, &b.connsIn, &b.connsOut)
}
func (b *blockCounter) BlockStream(_ peer.ID, dir network.Direction) {
	byDirection(dir, &b.streamsIn, &b.streamsOut)
}
func (b *blockCounter) BlockPeer(peer.ID)                      { b.peers.Add(1) }
func (b *blockCounter) BlockProtocol(protocol.ID)              { b.protocols.Add(1) }
func (b *blockCounter) BlockProtocolPeer(protocol.ID, peer.ID) { b.protocols.Add(1) }
func (b *blockCounter) BlockService(string)                    { b.services.Add(1) }
func (b *blockCounter) BlockServicePeer(string, peer.ID)       { b.services.Add(1) }
func (b *blockCounter) BlockMemory(int)                        { b.memory.Add(1) }
func (b *blockCounter) AllowConn(network.Direction, bool)      {}
func (b *blockCounter) AllowStream(peer.ID, network.Direction) {}
func (b *blockCounter) AllowPeer(peer.ID)                      {}
func (b *blockCounter) AllowProtocol(protocol.ID)              {}
func (b *blockCounter) AllowService(string)                    {}
func (b *blockCounter) AllowMemory(int)                        {}

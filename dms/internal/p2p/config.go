package p2p

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/opendms/dms/types"
)

// Config configures a Host. Zero fields take the defaults documented on each;
// negative ones are errors.
type Config struct {
	// Key is the node identity: the PeerID and the did:key derive from it. Required.
	Key ed25519.PrivateKey
	// Listen holds multiaddrs to listen on. Default: TCP and QUIC on
	// 127.0.0.1 with OS-chosen ports (loopback: pass public addresses
	// explicitly); TCP only with a PSK.
	Listen []string
	// Bootstrap holds full multiaddrs (with /p2p/<id>) of peers to join through.
	Bootstrap []string
	// Logger receives debug and warning lines. Default: discard.
	Logger *slog.Logger
	// Clock is the time envelopes are sealed and checked against, and rate
	// limits measured with. Default time.Now.
	Clock func() time.Time
	// PSK, when set, makes the host part of a private network: it connects
	// only to peers holding the same 32-byte pre-shared key (libp2p pnet,
	// "/key/swarm/psk/1.0.0/"). libp2p's QUIC transport does not support
	// private networks, so such a host runs over TCP only and a QUIC (UDP)
	// listen address is an error.
	PSK []byte

	// MaxConns bounds the connections the resource manager admits (system
	// scope, inbound); half of it may be mid-handshake at once. Default 1024.
	MaxConns int
	// ConnsLow and ConnsHigh are the connection manager's watermarks: above
	// High it trims down to Low. Defaults 256 and 512; High must not exceed MaxConns.
	ConnsLow, ConnsHigh int

	// DiscoveryMin is the first interval between discovery rounds; it doubles
	// while rounds find nobody new, up to DiscoveryMax. Defaults 500ms and 1m.
	DiscoveryMin, DiscoveryMax time.Duration
	// Readvertise is how often the rendezvous is re-announced. Default 10m.
	Readvertise time.Duration
	// DiscoveryPeers bounds the peers one discovery round connects to. Default 32.
	DiscoveryPeers int

	// DHTClient makes the host a client of the DHT (dht.ModeClient): it
	// queries it and publishes its provider records to servers, but
	// answers no query, stores no record of another, and is in no other
	// node's routing table, so it keeps fewer connections. Bootstrap
	// nodes must be servers.
	DHTClient bool

	// Compute makes the host advertise itself under ComputeRendezvous too
	// (the key of ComputeCPU's class and its shard), so that requesters
	// sampling compute nodes find it.
	Compute bool
	// ComputeCPU is what the node offers at start (Host.SetComputeCPU
	// changes it).
	ComputeCPU types.MilliCPU
	// Sampling makes the host keep a cache of the compute nodes advertised
	// under ComputeRendezvous, for sampled bid requests (Sample): looked up
	// in the background, from DiscoveryMin apart while the network forms
	// to CandidateTTL/3 apart, so that picking candidates never waits for
	// the DHT.
	Sampling bool
	// SampleAbove keeps that cache on a host without Sampling too, once
	// it is asked for candidates (its node submits jobs) and knows
	// SampleAbove peers (its peerstore; checked every CandidateTTL/3): a
	// network that large is worth sampling, and a smaller one, or a node
	// that only computes, pays no lookups. 0: only with Sampling.
	SampleAbove int
	// CandidateTTL is how long a compute node stays a candidate after a
	// lookup last listed it (lookups that fail or are cut short drop
	// nobody), and how long one that failed to take a bid request is left
	// out. Default 30s.
	CandidateTTL time.Duration

	// MessageTTL is the lifetime of envelopes this host seals (requests,
	// replies, pushed frames). Default 30s.
	MessageTTL time.Duration
	// MaxTTL rejects envelopes expiring further ahead than this, which bounds
	// the replay cache. Default 10m.
	MaxTTL time.Duration
	// IOTimeout bounds each frame read or write on a stream. Default 10s.
	IOTimeout time.Duration
	// RequestTimeout bounds a Request whose context has no deadline, and
	// every unary handler. Default 30s.
	RequestTimeout time.Duration
	// MaxInboundStreams bounds the concurrent handlers of one protocol; a
	// stream that finds no slot within IOTimeout is reset. Default 128.
	MaxInboundStreams int
	// MaxInboundStreamsPerPeer bounds the concurrent handlers of one
	// request/response protocol (bids, accepts, cancels, status queries,
	// blobs, direct bid requests) serving one remote peer, so that a peer
	// flooding a protocol leaves the other slots to others; its streams
	// past the bound wait, and are reset after IOTimeout. Default a
	// quarter of MaxInboundStreams.
	MaxInboundStreamsPerPeer int
	// ReplayCacheSize bounds the remembered nonces of inbound requests and
	// bid requests, each kept until its envelope expires: a host sustains
	// ReplayCacheSize / (senders' envelope TTL) such envelopes per second,
	// 3300/s with the defaults, and refuses more. Default 100000.
	ReplayCacheSize int
	// SubscriptionBuffer is the queue of validated bid requests per
	// subscription; a slow handler loses messages past it. Default 256.
	SubscriptionBuffer int

	// GossipRepair is how often the host checks that gossipsub has a
	// stream to every connected peer that speaks it. Gossipsub drops a peer
	// whose stream failed to open, or died five times within ten minutes,
	// and never tries again while the connection lives: a peer found
	// missing at two checks in a row is handed back to it, and again after
	// 1, 2, 4... up to 32 checks while it stays missing (repair.go).
	// Default 2s.
	GossipRepair time.Duration

	// BidRequestRate and BidRequestBurst are the token bucket every
	// publisher of bid requests gets at this host, its own publications
	// included: BidRequestRate per second, up to BidRequestBurst at once
	// (other publishers get a second's worth more, for delivery jitter).
	// Bid requests over it are refused (ReasonRateLimited) and not
	// forwarded. An auction publishes one bid request per attempt, and a job
	// queued on busy nodes one per second at most, so the defaults (50/s,
	// burst 100) let one requester submit 100 jobs at once and keep 50
	// queued, while a flooding publisher costs each of its direct peers at
	// most 50 envelope checks a second and reaches no further. Defaults 50
	// and 100.
	BidRequestRate  float64
	BidRequestBurst int

	// scoreInspect, when set (tests), receives gossipsub's peer scores every
	// scoreInspectPeriod.
	scoreInspect       func(map[peer.ID]*pubsub.PeerScoreSnapshot)
	scoreInspectPeriod time.Duration
	// pubsubHost, when set (tests), wraps the libp2p host gossipsub runs
	// on, to make its streams fail.
	pubsubHost func(host.Host) host.Host
}

// withDefaults returns c with zero fields defaulted, or an error for a field
// out of range.
func (c Config) withDefaults() (Config, error) {
	if len(c.Key) != ed25519.PrivateKeySize {
		return c, fmt.Errorf("%w: Key must be an Ed25519 private key (%d bytes), got %d bytes", ErrBadConfig, ed25519.PrivateKeySize, len(c.Key))
	}
	if len(c.PSK) != 0 && len(c.PSK) != pskSize {
		return c, fmt.Errorf("%w: PSK must be %d bytes, got %d", ErrBadConfig, pskSize, len(c.PSK))
	}
	if len(c.Listen) == 0 {
		c.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
		if len(c.PSK) > 0 {
			c.Listen = c.Listen[:1]
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxConns", &c.MaxConns, 1024}, {"ConnsLow", &c.ConnsLow, 256}, {"ConnsHigh", &c.ConnsHigh, 512},
		{"DiscoveryPeers", &c.DiscoveryPeers, 32}, {"MaxInboundStreams", &c.MaxInboundStreams, 128},
		{"ReplayCacheSize", &c.ReplayCacheSize, 100_000}, {"SubscriptionBuffer", &c.SubscriptionBuffer, 256},
		{"BidRequestBurst", &c.BidRequestBurst, 100},
	}
	for _, f := range ints {
		if err := defaultTo(f.name, f.v, f.def); err != nil {
			return c, err
		}
	}
	if err := defaultTo("MaxInboundStreamsPerPeer", &c.MaxInboundStreamsPerPeer, max(1, c.MaxInboundStreams/4)); err != nil {
		return c, err
	}
	durs := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"DiscoveryMin", &c.DiscoveryMin, 500 * time.Millisecond}, {"DiscoveryMax", &c.DiscoveryMax, time.Minute},
		{"Readvertise", &c.Readvertise, 10 * time.Minute}, {"MessageTTL", &c.MessageTTL, 30 * time.Second},
		{"MaxTTL", &c.MaxTTL, 10 * time.Minute}, {"IOTimeout", &c.IOTimeout, 10 * time.Second},
		{"RequestTimeout", &c.RequestTimeout, 30 * time.Second}, {"CandidateTTL", &c.CandidateTTL, 30 * time.Second},
		{"GossipRepair", &c.GossipRepair, 2 * time.Second},
	}
	for _, f := range durs {
		if err := defaultTo(f.name, f.v, f.def); err != nil {
			return c, err
		}
	}
	if err := defaultTo("BidRequestRate", &c.BidRequestRate, 50); err != nil {
		return c, err
	}
	return c, c.check()
}

// pskSize is the length of a libp2p pre-shared key.
const pskSize = 32

// check validates the relations between fields once they are defaulted.
func (c Config) check() error {
	switch {
	case c.ConnsLow >= c.ConnsHigh:
		return fmt.Errorf("%w: ConnsLow (%d) must be below ConnsHigh (%d)", ErrBadConfig, c.ConnsLow, c.ConnsHigh)
	case c.ConnsHigh > c.MaxConns:
		return fmt.Errorf("%w: ConnsHigh (%d) must not exceed MaxConns (%d)", ErrBadConfig, c.ConnsHigh, c.MaxConns)
	case c.DiscoveryMin > c.DiscoveryMax:
		return fmt.Errorf("%w: DiscoveryMin (%s) must not exceed DiscoveryMax (%s)", ErrBadConfig, c.DiscoveryMin, c.DiscoveryMax)
	case c.MessageTTL > c.MaxTTL:
		return fmt.Errorf("%w: MessageTTL (%s) must not exceed MaxTTL (%s)", ErrBadConfig, c.MessageTTL, c.MaxTTL)
	case c.SampleAbove < 0:
		return fmt.Errorf("%w: SampleAbove (%d) must not be negative", ErrBadConfig, c.SampleAbove)
	case c.ComputeCPU < 0:
		return fmt.Errorf("%w: ComputeCPU (%d) must not be negative", ErrBadConfig, c.ComputeCPU)
	}
	if len(c.PSK) > 0 {
		for _, a := range c.Listen {
			if overUDP(a) {
				return fmt.Errorf("%w: listen address %s: a private network (PSK) runs over TCP only, "+
					"libp2p's QUIC transport does not support one: remove the udp/quic-v1 addresses from listen", ErrBadConfig, a)
			}
		}
	}
	return nil
}

// overUDP reports whether a is a UDP (QUIC) multiaddr. An address that does
// not parse is left for libp2p to refuse.
func overUDP(a string) bool {
	m, err := ma.NewMultiaddr(a)
	if err != nil {
		return false
	}
	_, err = m.ValueForProtocol(ma.P_UDP)
	return err == nil
}

// defaultTo sets *v to def when it is zero and rejects a negative value.
func defaultTo[T int | time.Duration | float64](name string, v *T, def T) error {
	if *v < 0 {
		return fmt.Errorf("%w: %s must not be negative, got %v", ErrBadConfig, name, *v)
	}
	if *v == 0 {
		*v = def
	}
	return nil
}

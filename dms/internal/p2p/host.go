package p2p

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/opendms/dms/types"
)

// Host is one DMS node's network presence: a libp2p host, a Kademlia DHT,
// the bid-request topic and the DMS stream protocols. Its methods are safe
// for concurrent use.
type Host struct {
	cfg       Config
	host      host.Host
	dht       *dht.IpfsDHT
	ps        *pubsub.PubSub
	topic     *pubsub.Topic
	bootstrap []peer.AddrInfo
	verifier  *verifier
	limiter   *rateLimiter
	gossip    counters
	streams   counters
	blocked   *blockCounter
	bans      *banList // peers gossip scoring graylisted, kept out (ban.go)
	traffic   traffic
	pools     callPools   // outbound call and forward streams (callpool.go)
	calls     callService // CallProtocol (call.go)
	forwards  callService // ForwardProtocol (forward.go)
	pairs     callService // PairProtocol (pair.go)
	// handlers are the Handlers of the protocols PairProtocol carries,
	// by protocol; guarded by mu.
	handlers map[protocol.ID]Handler
	kept     keptPeers // peers the connection manager must not trim (conn.go)
	// watch and gossipRepairs serve the gossip repair (repair.go).
	watch         *gossipWatch
	gossipRepairs atomic.Uint64
	cands         *candidates  // nil unless Config.Sampling or SampleAbove
	computeCPU    atomic.Int64 // the cores the node offers, in millicores (SetComputeCPU)
	wanted        atomic.Bool  // Candidates or Sample was called: the node submits jobs
	// ownRefusals holds why the validator refused a message this host
	// publishes, by its data, until PublishEnvelope takes it.
	ownRefusals sync.Map

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed, wg.Add and handlers
	closed bool
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// PeerInfo describes a peer. Addrs are transport multiaddrs without /p2p.
type PeerInfo struct {
	ID      string
	Addrs   []string
	Latency time.Duration // zero when not measured yet
}

// New starts a host: it listens, joins the DHT and the bid-request topic,
// and starts connecting to cfg.Bootstrap and discovering peers in the
// background. ctx bounds only the start: Close, not ctx, stops the host.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	boot, err := parseAddrInfos(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	blocked, bans := &blockCounter{}, newBanList(cfg.Clock)
	lh, err := newLibp2pHost(cfg, blocked, bans)
	if err != nil {
		return nil, err
	}
	h := &Host{
		cfg:       cfg,
		host:      lh,
		bootstrap: boot,
		blocked:   blocked,
		bans:      bans,
		verifier:  &verifier{clock: cfg.Clock, maxTTL: cfg.MaxTTL, replay: newReplayCache(cfg.ReplayCacheSize)},
		limiter:   newRateLimiter(lh.ID(), cfg.BidRequestRate, cfg.BidRequestBurst, maxRatedPeers),
		watch:     newGossipWatch(BidRequestTopic),
	}
	h.calls = callService{proto: CallProtocol, frames: &h.traffic.callFrames, bytes: &h.traffic.callBytes}
	h.forwards = callService{proto: ForwardProtocol, frames: &h.traffic.forwardFrames, bytes: &h.traffic.forwardBytes, keep: true}
	h.pairs = callService{proto: PairProtocol, frames: &h.traffic.pairFrames, bytes: &h.traffic.pairBytes}
	h.computeCPU.Store(int64(cfg.ComputeCPU))
	if cfg.Sampling || cfg.SampleAbove > 0 {
		h.cands = newCandidates(cfg.CandidateTTL)
	}
	h.ctx, h.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := h.start(); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	return h, nil
}

// newLibp2pHost builds the libp2p host: TCP (Noise or TLS) and QUIC, Ed25519
// identity, raised resource limits, a connection manager, bans as the
// connection gater; no relay, no metrics. With a PSK, the host is in a
// private network over TCP only.
func newLibp2pHost(cfg Config, blocked *blockCounter, bans *banList) (host.Host, error) {
	key, err := crypto.UnmarshalEd25519PrivateKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: Key: %w", ErrBadConfig, err)
	}
	rm, err := newResourceManager(cfg.MaxConns, blocked)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	cm, err := newConnManager(cfg.ConnsLow, cfg.ConnsHigh)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("p2p: connection manager: %w", err), rm.Close())
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(bans),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	}
	if len(cfg.PSK) > 0 {
		opts = append(opts, libp2p.PrivateNetwork(pnet.PSK(cfg.PSK)))
	} else {
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("p2p: libp2p host: %w", err), rm.Close(), cm.Close())
	}
	return h, nil
}

// start brings up the DHT and pubsub, then the discovery loop and the
// gossip repair.
func (h *Host) start() error {
	mode := dht.ModeServer
	if h.cfg.DHTClient {
		mode = dht.ModeClient
	}
	d, err := dht.New(h.host,
		dht.Mode(mode),
		dht.ProtocolPrefix(DHTPrefix),
		dht.BootstrapPeers(h.bootstrap...),
		// Added to the default validators (pk, ipns), which stay.
		dht.NamespacedValidator(cacheNamespace, cacheValidator{}),
	)
	if err != nil {
		return fmt.Errorf("p2p: dht: %w", err)
	}
	h.dht = d
	h.handleCalls(&h.pairs, h.servePair)
	if err := h.startPubsub(); err != nil {
		return err
	}
	em, err := h.host.EventBus().Emitter(new(event.EvtPeerProtocolsUpdated))
	if err != nil {
		return fmt.Errorf("p2p: gossip repair: %w", err)
	}
	if !h.spawn(func() { h.repairGossip(em) }) {
		return errors.Join(ErrClosed, em.Close())
	}
	h.spawn(h.discover)
	if h.cands != nil {
		h.spawn(h.refreshCandidates)
	}
	return nil
}

// DHTClient reports whether the host only queries the DHT
// (Config.DHTClient).
func (h *Host) DHTClient() bool { return h.cfg.DHTClient }

// DHTServers counts the DHT servers in the host's routing table.
func (h *Host) DHTServers() int { return h.dht.RoutingTable().Size() }

// ID returns the PeerID.
func (h *Host) ID() string { return h.host.ID().String() }

// DID returns the did:key of the host's key.
func (h *Host) DID() string {
	return types.DIDFromPublicKey(h.cfg.Key.Public().(ed25519.PublicKey))
}

// Addrs returns the host's listen multiaddrs with /p2p/<id>, usable as
// another node's Bootstrap entries.
func (h *Host) Addrs() []string { return FullAddrs(h.host) }

// FullAddrs returns a libp2p host's listen multiaddrs with /p2p/<id>.
func FullAddrs(h host.Host) []string {
	mas, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil {
		return nil
	}
	out := make([]string, len(mas))
	for i, a := range mas {
		out[i] = a.String()
	}
	return out
}

// Connected reports whether the host has a live connection to peer.
func (h *Host) Connected(p string) bool {
	id, err := peer.Decode(p)
	return err == nil && h.host.Network().Connectedness(id) == network.Connected
}

// Peers lists the connected peers.
func (h *Host) Peers() []PeerInfo {
	ps := h.host.Network().Peers()
	out := make([]PeerInfo, 0, len(ps))
	for _, p := range ps {
		info := PeerInfo{ID: p.String(), Latency: h.host.Peerstore().LatencyEWMA(p)}
		for _, c := range h.host.Network().ConnsToPeer(p) {
			info.Addrs = append(info.Addrs, c.RemoteMultiaddr().String())
		}
		out = append(out, info)
	}
	return out
}

// Stats returns the refusal and repair counters, those of the call and
// forward streams, and what the resource manager and the connections hold.
func (h *Host) Stats() Stats {
	net := h.host.Network()
	system, transient := scopes(net.ResourceManager())
	return Stats{
		System: system, Transient: transient, Conns: len(net.Conns()), Peers: len(net.Peers()),
		Gossip: h.gossip.snapshot(), Streams: h.streams.snapshot(), Blocked: h.blocked.snapshot(),
		GossipRepairs: h.gossipRepairs.Load(),
		Bans:          h.bans.count(),
		Calls:         h.calls.stats.snapshot(),
		Forwards:      h.forwards.stats.snapshot(),
		Pairs:         h.pairs.stats.snapshot(),
	}
}

// Close stops discovery, subscriptions and handlers, closes the DHT and the
// libp2p host (resetting open streams), and waits for the host's goroutines.
// A handler that ignores its context delays Close until it returns.
func (h *Host) Close() error {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		h.cancel()
		var errs []error
		if h.dht != nil {
			errs = append(errs, h.dht.Close())
		}
		errs = append(errs, h.host.Close())
		h.wg.Wait()
		h.err = errors.Join(errs...)
	})
	return h.err
}

// enter registers a goroutine with the host, or reports that it is closed.
// The caller must call h.wg.Done when it returns.
func (h *Host) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

// spawn runs fn on a goroutine owned by the host.
func (h *Host) spawn(fn func()) bool {
	if !h.enter() {
		return false
	}
	go func() {
		defer h.wg.Done()
		fn()
	}()
	return true
}

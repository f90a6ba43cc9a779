package hostile

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/types"
)

// Peer is one hostile peer. Its methods are safe for concurrent use.
type Peer struct {
	key   ed25519.PrivateKey
	node  types.NodeID
	host  host.Host
	ps    *pubsub.PubSub
	topic *pubsub.Topic

	stats counters

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// New starts a hostile peer listening on 127.0.0.1 (TCP and QUIC, OS-chosen
// ports) with a fresh Ed25519 key, and joins the bid-request topic without
// subscribing to it: it is not one of the topic's peers until Subscribe.
func New() (*Peer, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	lk, err := crypto.UnmarshalEd25519PrivateKey(key)
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(
		libp2p.Identity(lk),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		// A hostile peer does not bound what it opens.
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		return nil, fmt.Errorf("hostile: libp2p host: %w", err)
	}
	p := &Peer{key: key, host: h}
	p.node = types.NodeID{UUID: uuid.NewString(), PeerID: h.ID().String(), DID: types.DIDFromPublicKey(pub)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	// The same gossip settings as a DMS node (dms/internal/p2p/pubsub.go),
	// minus its validator and peer scoring.
	p.ps, err = pubsub.NewGossipSub(p.ctx, h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithMessageIdFn(messageID),
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerOutboundQueueSize(4096),
	)
	if err == nil {
		p.topic, err = p.ps.Join(p2p.BidRequestTopic)
	}
	if err != nil {
		p.cancel()
		return nil, errors.Join(fmt.Errorf("hostile: gossipsub: %w", err), h.Close())
	}
	return p, nil
}

// messageID is a DMS node's gossip message ID.
func messageID(m *pb.Message) string { return p2p.GossipID(m.GetData()) }

// ID returns the peer's PeerID.
func (p *Peer) ID() string { return p.host.ID().String() }

// Node returns the NodeID the peer signs its bids and declines with.
func (p *Peer) Node() types.NodeID { return p.node }

// Addrs returns the peer's listen multiaddrs with /p2p/<id>.
func (p *Peer) Addrs() []string { return p2p.FullAddrs(p.host) }

// Connect dials a node by a full multiaddr (with /p2p/<id>).
func (p *Peer) Connect(ctx context.Context, addr string) error {
	info, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return fmt.Errorf("hostile: %q: %w", addr, err)
	}
	if err := p.host.Connect(ctx, *info); err != nil {
		return fmt.Errorf("hostile: connect %s: %w", info.ID, err)
	}
	return nil
}

// TopicPeers lists the connected peers subscribed to bid requests.
func (p *Peer) TopicPeers() []string {
	ids := p.topic.ListPeers()
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// Stats returns what the peer has done and received so far.
func (p *Peer) Stats() Stats { return p.stats.snapshot() }

// Close leaves the topic, closes the host (resetting every stream the peer
// holds open) and waits for the peer's goroutines.
func (p *Peer) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		p.err = p.host.Close()
		p.wg.Wait()
	})
	return p.err
}

// spawn runs fn on a goroutine that Close waits for; false after Close.
func (p *Peer) spawn(fn func()) bool {
	if !p.enter() {
		return false
	}
	go func() {
		defer p.wg.Done()
		fn()
	}()
	return true
}

// Stats counts what a peer did and what came back.
type Stats struct {
	BidRequestsSeen     uint64 // valid bid requests of other peers observed on the topic
	Published           uint64 // gossip messages published (own bid requests and copies)
	BidsSent            uint64 // bids and declines sent to requesters
	AcceptsSent         uint64 // Accepts sent to providers
	Confirms            uint64 // ... answered with a Confirm
	Rejects             uint64 // ... answered with a Reject
	AcceptErrors        uint64 // ... that got no answer (stream failed)
	BidsReceived        uint64 // bids for the peer's own bid requests
	DeclinesReceived    uint64 // declines for the peer's own bid requests
	AcceptsReceived     uint64 // Accepts for the peer's bids
	InvocationsReceived uint64 // invocations of allocations the peer confirmed
	SendErrors          uint64 // bids or declines that could not be sent
	BlobsServed         uint64 // blob requests answered with wrong bytes (ServeWrongBlobs)
}

type counters struct {
	bidRequestsSeen, published, bidsSent, acceptsSent, confirms, rejects, acceptErrors atomic.Uint64
	bidsReceived, declinesReceived, acceptsReceived, invocationsReceived, sendErrors   atomic.Uint64
	blobsServed                                                                        atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		BidRequestsSeen: c.bidRequestsSeen.Load(), Published: c.published.Load(), BidsSent: c.bidsSent.Load(),
		AcceptsSent: c.acceptsSent.Load(), Confirms: c.confirms.Load(), Rejects: c.rejects.Load(),
		AcceptErrors: c.acceptErrors.Load(), BidsReceived: c.bidsReceived.Load(),
		DeclinesReceived: c.declinesReceived.Load(), AcceptsReceived: c.acceptsReceived.Load(),
		InvocationsReceived: c.invocationsReceived.Load(), SendErrors: c.sendErrors.Load(),
		BlobsServed: c.blobsServed.Load(),
	}
}

package p2p

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/bits"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/opendms/dms/types"
)

const (
	// DHTPrefix namespaces the Kademlia protocol: DMS nodes form their own DHT.
	DHTPrefix = "/dms"
	// Rendezvous is the DHT key every node advertises itself under.
	Rendezvous = "dms/nodes/v1"
	// ComputeRendezvous prefixes the DHT keys compute nodes
	// (Config.Compute) advertise themselves under as well: where
	// requesters find the nodes to sample for bid requests, without the
	// ones that only submit. A node advertises under one key of
	// CPUClasses x ComputeShards (ComputeKey): by the cores it offers,
	// so a requester asks only nodes that may fit a job, and by a shard of
	// its PeerID, so that no one key's closest peers hold every compute
	// node's provider record (a connection cap would turn most away).
	ComputeRendezvous = "dms/compute/v2"
	// CPUClasses is how many classes of offered cores there are (CPUClass).
	CPUClasses = 8
	// ComputeShards is how many keys the nodes of one class spread over.
	ComputeShards = 4

	firstReadvertise = 30 * time.Second

	connectTimeout  = 10 * time.Second
	roundTimeout    = 30 * time.Second
	connectParallel = 8
)

// discover runs until Close: each round dials the bootstrap peers if the
// host knows no DHT server (connectBootstrap), advertises the rendezvous
// when due, looks it up and connects to peers not yet connected. Rounds
// start DiscoveryMin apart and back off to DiscoveryMax while they find
// nobody new.
//
// The first advertisements go out while the routing table is still
// filling, and may land on peers that later lookups do not ask: they are
// repeated firstReadvertise after the first, then twice as long after each,
// up to Readvertise apart.
func (h *Host) discover() {
	rd := drouting.NewRoutingDiscovery(h.dht)
	wait := h.cfg.DiscoveryMin
	every := min(firstReadvertise, h.cfg.Readvertise)
	var advertised time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-timer.C:
		}
		h.connectBootstrap()
		if time.Since(advertised) >= every && h.advertise(rd) {
			if !advertised.IsZero() {
				every = min(2*every, h.cfg.Readvertise)
			}
			advertised = time.Now()
		}
		if h.findPeers(rd) > 0 || advertised.IsZero() {
			wait = h.cfg.DiscoveryMin
		} else {
			wait = min(2*wait, h.cfg.DiscoveryMax)
		}
		timer.Reset(wait)
	}
}

// connectBootstrap dials the bootstrap peers it is not connected to while
// the routing table holds no DHT server: without one, the host can neither
// advertise nor look anyone up. Being connected is not enough: the DHT
// dials two bootstrap peers of its own at start, and a host whose two were
// DHT clients (network.dht client) had peers, so it never dialled the rest,
// and stayed cut off from discovery for good.
func (h *Host) connectBootstrap() {
	if h.dht.RoutingTable().Size() > 0 {
		return
	}
	var todo []peer.AddrInfo
	for _, ai := range h.bootstrap {
		if h.host.Network().Connectedness(ai.ID) != network.Connected {
			todo = append(todo, ai)
		}
	}
	h.connectAll(todo)
}

// CPUClass is the class of a node that offers cpu: 0 under one core, then
// c for 2^(c-1) to 2^c - 1 cores (1: one core, 2: two or three, 3: four
// to seven...), the last class taking every node of 64 cores and more.
func CPUClass(cpu types.MilliCPU) int {
	return min(bits.Len64(uint64(max(cpu, 0)/1000)), CPUClasses-1)
}

// ComputeKey is the DHT key of the compute nodes of a class and shard.
func ComputeKey(class, shard int) string {
	return fmt.Sprintf("%s/c%d/s%d", ComputeRendezvous, class, shard)
}

// computeShard is the shard of a node's PeerID.
func computeShard(id peer.ID) int {
	f := fnv.New32a()
	f.Write([]byte(id))
	return int(f.Sum32() % ComputeShards)
}

// SetComputeCPU tells the host how many cores its node offers now: it
// advertises itself under that class from its next announcement (within
// Readvertise).
func (h *Host) SetComputeCPU(cpu types.MilliCPU) { h.computeCPU.Store(int64(cpu)) }

// advertise announces this host under the rendezvous, and a compute host
// under its ComputeKey too; it fails while the routing table is still
// empty.
func (h *Host) advertise(rd *drouting.RoutingDiscovery) bool {
	ctx, cancel := context.WithTimeout(h.ctx, roundTimeout)
	defer cancel()
	namespaces := []string{Rendezvous}
	if h.cfg.Compute {
		class := CPUClass(types.MilliCPU(h.computeCPU.Load()))
		namespaces = append(namespaces, ComputeKey(class, computeShard(h.host.ID())))
	}
	for _, ns := range namespaces {
		if _, err := rd.Advertise(ctx, ns); err != nil {
			h.cfg.Logger.Debug("p2p: advertise", "namespace", ns, "err", err)
			return false
		}
	}
	return true
}

// findPeers looks up the rendezvous and connects to up to DiscoveryPeers
// unconnected peers, and never past ConnsLow connections; it returns how
// many it connected to.
func (h *Host) findPeers(rd *drouting.RoutingDiscovery) int {
	room := h.cfg.ConnsLow - len(h.host.Network().Peers())
	if room <= 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(h.ctx, roundTimeout)
	defer cancel()
	found, err := rd.FindPeers(ctx, Rendezvous, discovery.Limit(h.cfg.DiscoveryPeers+1))
	if err != nil {
		h.cfg.Logger.Debug("p2p: find peers", "err", err)
		return 0
	}
	var todo []peer.AddrInfo
	for ai := range found {
		if ai.ID != h.host.ID() && h.host.Network().Connectedness(ai.ID) != network.Connected {
			todo = append(todo, ai)
		}
	}
	return h.connectAll(todo[:min(len(todo), h.cfg.DiscoveryPeers, room)])
}

// connectAll dials peers, a few at a time, and returns how many connected.
func (h *Host) connectAll(peers []peer.AddrInfo) int {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		n   int
		sem = make(chan struct{}, connectParallel)
	)
	for _, ai := range peers {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(h.ctx, connectTimeout)
			defer cancel()
			if err := h.host.Connect(ctx, ai); err != nil {
				h.cfg.Logger.Debug("p2p: connect", "peer", ai.ID, "err", err)
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
		})
	}
	wg.Wait()
	return n
}

// Provide announces in the DHT that this host holds the content c.
func (h *Host) Provide(ctx context.Context, c string) error {
	id, err := parseCID(c)
	if err != nil {
		return err
	}
	if err := h.dht.Provide(ctx, id, true); err != nil {
		return fmt.Errorf("p2p: provide %s: %w", c, err)
	}
	return nil
}

// FindProviders returns up to limit other peers the DHT knows to hold c. It
// returns as soon as it has limit of them or the lookup ends; when ctx ends
// first, it returns what it found, or ctx's error if that is nothing.
func (h *Host) FindProviders(ctx context.Context, c string, limit int) ([]PeerInfo, error) {
	id, err := parseCID(c)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("p2p: FindProviders limit must be positive, got %d", limit)
	}
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out []PeerInfo
	for ai := range h.dht.FindProvidersAsync(qctx, id, limit+1) { // +1: self may be one
		if ai.ID == h.host.ID() || len(out) == limit {
			continue
		}
		if len(ai.Addrs) == 0 {
			ai.Addrs = h.host.Peerstore().Addrs(ai.ID)
		}
		out = append(out, PeerInfo{ID: ai.ID.String(), Addrs: addrStrings(ai.Addrs)})
		if len(out) == limit {
			cancel()
		}
	}
	if len(out) == 0 && ctx.Err() != nil {
		return nil, fmt.Errorf("p2p: find providers of %s: %w", c, ctx.Err())
	}
	return out, nil
}

func parseCID(c string) (cid.Cid, error) {
	id, err := cid.Decode(c)
	if err != nil {
		return cid.Undef, fmt.Errorf("%w: %q: %w", ErrBadCID, c, err)
	}
	return id, nil
}

// parseAddrInfos parses full multiaddrs (with /p2p/<id>), merging addresses
// of the same peer.
func parseAddrInfos(addrs []string) ([]peer.AddrInfo, error) {
	mas := make([]ma.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrBadPeer, s, err)
		}
		mas = append(mas, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("%w: bootstrap addresses need /p2p/<id>: %w", ErrBadPeer, err)
	}
	return infos, nil
}

func addrStrings(mas []ma.Multiaddr) []string {
	out := make([]string, len(mas))
	for i, a := range mas {
		out[i] = a.String()
	}
	return out
}

package p2p

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/opendms/dms/types"
)

// groupPrefix is the DHT key of a gateway group, before its name.
const groupPrefix = "dms/gateway-group/"

// maxGroupName bounds the name of a gateway group.
const maxGroupName = 256

// groupCID returns the CID whose providers are the members of group name:
// that of "dms/gateway-group/<name>", named as routing discovery names a
// namespace.
func groupCID(name string) (string, error) {
	if name == "" || len(name) > maxGroupName {
		return "", fmt.Errorf("p2p: gateway group name of %d bytes, want 1 to %d", len(name), maxGroupName)
	}
	return types.CIDOf([]byte(groupPrefix + name)).String(), nil
}

// AdvertiseGroup announces this host as a member of gateway group name in
// the DHT (a provider record of the CID of "dms/gateway-group/<name>"),
// on a goroutine of the host, until ctx ends or the host closes. It
// returns at once: an error only for a bad name or a closed host. An
// announcement that fails (the routing table still empty) is retried
// DiscoveryMin apart, backing off to DiscoveryMax; one that succeeds is
// repeated as the rendezvous is (discover), up to Readvertise apart.
func (h *Host) AdvertiseGroup(ctx context.Context, name string) error {
	c, err := groupCID(name)
	if err != nil {
		return err
	}
	if !h.spawn(func() { h.advertiseGroup(ctx, c) }) {
		return ErrClosed
	}
	return nil
}

// advertiseGroup provides c until ctx ends or the host closes.
func (h *Host) advertiseGroup(ctx context.Context, c string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()
	retry, every := h.cfg.DiscoveryMin, min(firstReadvertise, h.cfg.Readvertise)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, roundTimeout)
		err := h.Provide(rctx, c)
		rcancel()
		if err != nil {
			h.cfg.Logger.Debug("p2p: advertise gateway group", "cid", c, "err", err)
			timer.Reset(retry)
			retry = min(2*retry, h.cfg.DiscoveryMax)
			continue
		}
		timer.Reset(every)
		retry, every = h.cfg.DiscoveryMin, min(2*every, h.cfg.Readvertise)
	}
}

// FindGroup returns up to limit members of gateway group name found in
// the DHT, without this host, as FindProviders does.
func (h *Host) FindGroup(ctx context.Context, name string, limit int) ([]PeerInfo, error) {
	c, err := groupCID(name)
	if err != nil {
		return nil, err
	}
	return h.FindProviders(ctx, c, limit)
}

// AddPeerAddr remembers the transport address of a full multiaddr
// ("/ip4/.../tcp/.../p2p/<id>") in the peerstore for an hour
// (peerstore.AddressTTL) and returns its PeerID. An address of this host
// is not added.
func (h *Host) AddPeerAddr(multiaddr string) (string, error) {
	a, err := ma.NewMultiaddr(multiaddr)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrBadPeer, multiaddr, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return "", fmt.Errorf("%w: %q needs /p2p/<id>: %w", ErrBadPeer, multiaddr, err)
	}
	if info.ID != h.host.ID() && len(info.Addrs) > 0 {
		h.host.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.AddressTTL)
	}
	return info.ID.String(), nil
}

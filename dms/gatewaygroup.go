package dms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/gateway/group"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/types"
)

// findGroupTimeout bounds the DHT search for a group's members by a
// gateway that joins it without peers.
const findGroupTimeout = 30 * time.Second

// joinGroup makes the gateway a member of the group gateway.group names:
// raft over the host's streams, calls forwarded between members, the
// membership advertised in the DHT. Nothing without a group.
func (d *DMS) joinGroup(ctx context.Context, g *gateway.Gateway) error {
	c := d.conf.Gateway.Group
	if c.Name == "" {
		return nil
	}
	var peers []string
	for _, a := range c.Peers {
		id, err := d.host.AddPeerAddr(a)
		if err != nil {
			return fmt.Errorf("dms: gateway.group.peers: %w", err)
		}
		if id != d.host.ID() {
			peers = append(peers, id)
		}
	}
	if len(peers) == 0 && c.Join {
		found, err := d.findGroup(ctx, c.Name)
		if err != nil {
			return err
		}
		peers = found
	}
	if err := d.host.AdvertiseGroup(d.ctx, c.Name); err != nil {
		return fmt.Errorf("dms: advertising gateway group %q: %w", c.Name, err)
	}
	grp, err := group.Open(group.Config{
		Name: c.Name, Self: d.host.ID(), Dir: filepath.Join(d.home, "gateway-group"), DB: d.db,
		Transport: groupTransport{h: d.host, prefix: "/dms/gw/", name: c.Name}, FSM: g.StateMachine(), Peers: peers, Join: c.Join,
		Logger: d.log.With("component", "gateway-group"),
	})
	if err != nil {
		return fmt.Errorf("dms: gateway group %q: %w", c.Name, err)
	}
	if err := g.Join(grp, c.Name, d.host.ID(), forwarder{d}); err != nil {
		return errors.Join(err, grp.Close())
	}
	d.grp = grp
	d.host.HandleForwards(g.ServeForward)
	d.log.Info("gateway group", "name", c.Name, "peers", len(peers), "join", c.Join)
	return nil
}

// findGroup looks the group's members up in the DHT, for a gateway that
// joins without peers: it must reach them (and they it) before it is
// added.
func (d *DMS) findGroup(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, findGroupTimeout)
	defer cancel()
	for {
		found, err := d.host.FindGroup(ctx, name, 16)
		if err == nil && len(found) > 0 {
			ids := make([]string, 0, len(found))
			for _, p := range found {
				ids = append(ids, p.ID)
			}
			return ids, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dms: no member of gateway group %q found in the DHT within %s (give --gateway-peers)", name, findGroupTimeout)
		case <-time.After(time.Second):
		}
	}
}

// groupTransport carries a group's raft and RPC connections over libp2p
// streams, one protocol per group and channel: a gateway of another group
// does not even speak this one's. The groups of gateways ("/dms/gw/")
// and of batch managers ("/dms/batch/") have prefixes of their own.
type groupTransport struct {
	h      *p2p.Host
	prefix string
	name   string
}

func (t groupTransport) proto(channel string) protocol.ID {
	return protocol.ID(t.prefix + t.name + "/" + channel + "/1.0.0")
}

func (t groupTransport) Listen(channel string) (net.Listener, error) {
	return t.h.Listen(t.proto(channel))
}

func (t groupTransport) Dial(ctx context.Context, member, channel string) (net.Conn, error) {
	return t.h.Dial(ctx, member, nil, t.proto(channel))
}

// forwarder forwards calls and fetches blobs between the members of a
// group.
type forwarder struct{ d *DMS }

func (f forwarder) Forward(ctx context.Context, to string, req *types.CallRequest) (*types.CallReply, error) {
	return f.d.host.Forward(ctx, to, nil, req)
}

// Fetch keeps blob c, fetched from the first member of from that holds
// it (verified against c).
func (f forwarder) Fetch(ctx context.Context, c string, from []string) error {
	var errs []error
	for _, p := range from {
		data, err := f.d.host.FetchBlob(ctx, p, nil, c, MaxBlobSize)
		if err == nil {
			_, err = f.d.blobs.Put(data)
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("dms: blob %s from the group: %w", c, errors.Join(errs...))
}

// AddPeerAddr takes a multiaddr with /p2p/ID, or a peer ID alone (found
// in the DHT when dialled).
func (f forwarder) AddPeerAddr(addr string) (string, error) {
	if !strings.Contains(addr, "/") {
		id, err := peer.Decode(addr)
		if err != nil {
			return "", fmt.Errorf("%q is neither a multiaddr nor a peer ID: %w", addr, err)
		}
		return id.String(), nil
	}
	return f.d.host.AddPeerAddr(addr)
}

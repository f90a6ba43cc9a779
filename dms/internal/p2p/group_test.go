package p2p

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestGatewayGroup: members of a gateway group find each other in the
// DHT, without themselves and without another group's members.
func TestGatewayGroup(t *testing.T) {
	hosts := startNetwork(t, 4)
	for i, name := range map[int]string{1: "eu", 2: "eu", 3: "us"} {
		if err := hosts[i].AdvertiseGroup(testCtx(t, time.Minute), name); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(ps []PeerInfo) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.ID)
		}
		slices.Sort(out)
		return out
	}
	want := func(hs ...*Host) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.ID())
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		from *Host
		name string
		want []string
	}{
		{hosts[0], "eu", want(hosts[1], hosts[2])},
		{hosts[1], "eu", want(hosts[2])},
		{hosts[0], "us", want(hosts[3])},
	} {
		var got []string
		waitFor(t, 20*time.Second, "group "+tc.name+" found", func() bool {
			ps, err := tc.from.FindGroup(testCtx(t, 5*time.Second), tc.name, 10)
			got = ids(ps)
			return err == nil && slices.Equal(got, tc.want)
		})
	}
	if err := hosts[0].AdvertiseGroup(context.Background(), ""); err == nil {
		t.Fatal("a group without a name advertised")
	}
}

// TestAddPeerAddr: a full multiaddr is remembered under its PeerID; one
// without /p2p, or that does not parse, is refused.
func TestAddPeerAddr(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	other := newTestHost(t, testConfig(t))
	addr := other.Addrs()[0]
	id, err := h.AddPeerAddr(addr)
	if err != nil || id != other.ID() {
		t.Fatalf("AddPeerAddr(%s) = %s, %v; want %s", addr, id, err, other.ID())
	}
	if known := h.host.Peerstore().Addrs(other.host.ID()); len(known) == 0 {
		t.Fatal("the address was not remembered")
	}
	if id, err := h.AddPeerAddr(h.Addrs()[0]); err != nil || id != h.ID() {
		t.Fatalf("own address: %s, %v", id, err)
	}
	for _, bad := range []string{"/ip4/127.0.0.1/tcp/4001", "not an address", ""} {
		if _, err := h.AddPeerAddr(bad); !errors.Is(err, ErrBadPeer) {
			t.Errorf("AddPeerAddr(%q): %v, want ErrBadPeer", bad, err)
		}
	}
}

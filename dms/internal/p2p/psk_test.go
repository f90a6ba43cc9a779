package p2p

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

func newPSK(t *testing.T) []byte {
	t.Helper()
	psk := make([]byte, pskSize)
	if _, err := rand.Read(psk); err != nil {
		t.Fatal(err)
	}
	return psk
}

// TestPrivateNetwork: hosts holding the same PSK connect and exchange bid
// requests; a host with another PSK, or with none, cannot connect to them,
// nor they to it.
func TestPrivateNetwork(t *testing.T) {
	psk := newPSK(t)
	private := func(key []byte, boot ...string) *Host {
		cfg := testConfig(t, boot...)
		cfg.PSK = key
		return newTestHost(t, cfg)
	}
	a := private(psk)
	if len(a.Addrs()) != 1 || !bytes.Contains([]byte(a.Addrs()[0]), []byte("/tcp/")) {
		t.Fatalf("a private host listens on %v, want one TCP address", a.Addrs())
	}
	b := private(psk, a.Addrs()...)
	waitFor(t, 10*time.Second, "the hosts with the same PSK to connect", func() bool { return len(a.Peers()) == 1 && len(b.Peers()) == 1 })
	got := make(chan *types.BidRequest, 1)
	if err := a.SubscribeBidRequests(func(_ string, _ *types.Envelope, r *types.BidRequest) { got <- r }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a on b's topic", func() bool { return b.TopicPeers() == 1 })
	ctx := testCtx(t, 10*time.Second)
	env := sealEnv(t, b.cfg.Key, &types.BidRequest{JobID: "private", Requester: b.ID()}, time.Now(), time.Minute)
	if err := b.PublishEnvelope(ctx, env); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.JobID != "private" {
			t.Fatalf("got %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("a bid request did not cross the private network")
	}

	// A failed handshake may only end at the deadline: 2s is over a hundred
	// times what a connection takes on loopback.
	for name, other := range map[string]*Host{
		"another PSK": private(newPSK(t)),
		"no PSK":      newTestHost(t, testConfig(t)),
	} {
		if err := other.host.Connect(testCtx(t, 2*time.Second), addrInfo(a)); err == nil {
			t.Errorf("a host with %s connected to the private network", name)
		}
		if err := a.host.Connect(testCtx(t, 2*time.Second), addrInfo(other)); err == nil {
			t.Errorf("the private network connected to a host with %s", name)
		}
	}
	if n := len(a.Peers()); n != 1 {
		t.Fatalf("the private host has %d peers, want 1", n)
	}
}

func TestPSKConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"short PSK":   {Key: newKey(t), PSK: []byte("too short")},
		"QUIC listen": {Key: newKey(t), PSK: newPSK(t), Listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}},
	} {
		if _, err := cfg.withDefaults(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: got %v, want ErrBadConfig", name, err)
		}
	}
	cfg, err := Config{Key: newKey(t), PSK: newPSK(t)}.withDefaults()
	if err != nil || len(cfg.Listen) != 1 || overUDP(cfg.Listen[0]) {
		t.Fatalf("default listen with a PSK: %v, %v", cfg.Listen, err)
	}
}

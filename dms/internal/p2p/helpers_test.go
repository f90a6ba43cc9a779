package p2p

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testConfig returns a config with fast discovery for loopback tests.
func testConfig(t testing.TB, bootstrap ...string) Config {
	return Config{
		Key:          newKey(t),
		Bootstrap:    bootstrap,
		DiscoveryMin: 20 * time.Millisecond,
		DiscoveryMax: 300 * time.Millisecond,
		IOTimeout:    5 * time.Second,
	}
}

// newTestHost starts a Host on loopback and closes it when the test ends.
func newTestHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return h
}

// newRawHost starts a bare libp2p host (TCP only, default limits) with key,
// to play a peer that does not follow the protocol.
func newRawHost(t testing.TB, key ed25519.PrivateKey, listen bool) host.Host {
	t.Helper()
	k, err := crypto.UnmarshalEd25519PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	opts := []libp2p.Option{libp2p.Identity(k), libp2p.Transport(tcp.NewTCPTransport), libp2p.DisableRelay(), libp2p.DisableMetrics()}
	if listen {
		opts = append(opts, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	} else {
		opts = append(opts, libp2p.NoListenAddrs)
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// limitedHost starts a Host whose clock stands still at now and that
// admits rate bid requests a second from each publisher, burst at once.
func limitedHost(t testing.TB, rate float64, burst int, now time.Time) *Host {
	t.Helper()
	cfg := testConfig(t)
	cfg.BidRequestRate, cfg.BidRequestBurst = rate, burst
	cfg.Clock = func() time.Time { return now }
	return newTestHost(t, cfg)
}

// rawTopic starts gossipsub on raw, a peer without the DMS validator that
// publishes whatever it is given, as a Host does (no gossipsub signature,
// messages named by their content) unless opts say otherwise, joins the
// bid-request topic, connects to h and waits until it sees h on the topic.
func rawTopic(t testing.TB, raw host.Host, h *Host, opts ...pubsub.Option) *pubsub.Topic {
	t.Helper()
	life, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	defaults := []pubsub.Option{pubsub.WithFloodPublish(true), pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithMessageIdFn(messageID)}
	ps, err := pubsub.NewGossipSub(life, raw, append(defaults, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(BidRequestTopic)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Connect(testCtx(t, 10*time.Second), addrInfo(h)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the Host in the raw peer's topic", func() bool { return len(topic.ListPeers()) == 1 })
	return topic
}

func addrInfo(h *Host) peer.AddrInfo {
	return peer.AddrInfo{ID: h.host.ID(), Addrs: h.host.Addrs()}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

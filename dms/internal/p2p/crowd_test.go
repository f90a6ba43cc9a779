package p2p

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

const crowdSize = 100

// TestCrowdJoin has 100 hosts dial one Host at the same moment, as when a
// devstack starts with one bootstrap node. With libp2p's default limits the
// transient scope (32 + 16 per GiB of memory/8: 80 on a 24 GiB machine)
// refused 20 of 100 TCP dialers, which then sat in dial backoff; with ours
// the resource manager refuses none.
//
// Over QUIC, accepted connections wait in two fixed queues, quic-go's (32,
// CONNECTION_REFUSED when full) and then libp2p quicreuse's (16, closed with
// "queue full" after the dialer saw its handshake succeed), neither
// configurable nor part of the resource manager: on a loaded machine a burst
// loses a few percent of its dialers that way. A Host redials its
// bootstrap peers whenever it knows no DHT server, as when it is alone,
// which the crowd mimics: every dialer must end up connected.
func TestCrowdJoin(t *testing.T) {
	for name, overQUIC := range map[string]bool{"tcp": false, "quic": true} {
		t.Run(name, func(t *testing.T) {
			boot := newTestHost(t, testConfig(t))
			redialed, took := joinCrowd(t, boot, overQUIC)
			waitFor(t, 10*time.Second, "the Host to see the whole crowd", func() bool { return len(boot.Peers()) == crowdSize })
			if b := boot.Stats().Blocked; b != (Blocked{}) {
				t.Fatalf("the resource manager refused: %+v", b)
			}
			t.Logf("%d hosts joined at once over %s in %s; %d redialed", crowdSize, name, took, redialed)
		})
	}
}

// joinCrowd starts crowdSize client hosts, has them all dial target at once,
// redials those that lost their connection until every one holds one, and
// returns how many needed a redial and how long the join took.
func joinCrowd(t *testing.T, target *Host, overQUIC bool) (int, time.Duration) {
	t.Helper()
	ai := addrInfo(target)
	crowd := make([]host.Host, crowdSize)
	for i := range crowd {
		crowd[i] = newLightHost(t, overQUIC)
	}
	ctx := testCtx(t, 30*time.Second)
	var retried atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range crowd {
		wg.Go(func() {
			<-start
			if !stayConnected(ctx, c, ai) {
				retried.Add(1)
			}
		})
	}
	begin := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(begin)
	for _, c := range crowd {
		if c.Network().Connectedness(ai.ID) != network.Connected {
			t.Fatalf("a crowd host could not connect: %v", ctx.Err())
		}
	}
	return int(retried.Load()), took
}

// stayConnected dials ai, every 50ms, until the connection survives its
// setup, and reports whether the first dial was enough.
func stayConnected(ctx context.Context, c host.Host, ai peer.AddrInfo) bool {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for first := true; ; first = false {
		if err := c.Connect(ctx, ai); err == nil && c.Network().Connectedness(ai.ID) == network.Connected {
			return first
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// newLightHost is a bare client host, dialing over TCP or QUIC only, with
// no limits of its own, closed when the test ends.
func newLightHost(t *testing.T, overQUIC bool) host.Host {
	t.Helper()
	transport := libp2p.Transport(tcp.NewTCPTransport)
	if overQUIC {
		transport = libp2p.Transport(quic.NewTransport)
	}
	h, err := libp2p.New(
		libp2p.NoListenAddrs,
		transport,
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

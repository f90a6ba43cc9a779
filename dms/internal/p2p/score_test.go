package p2p

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/types"
)

// scoreLog keeps what gossipsub's periodic score inspection reports at one
// host: the last snapshot and each peer's lowest score.
type scoreLog struct {
	mu     sync.Mutex
	rounds int
	last   map[peer.ID]*pubsub.PeerScoreSnapshot
	lowest map[peer.ID]float64
}

// withScoreLog has cfg's host report its peer scores every 50ms to the log.
func withScoreLog(cfg *Config) *scoreLog {
	l := &scoreLog{lowest: map[peer.ID]float64{}}
	cfg.scoreInspect, cfg.scoreInspectPeriod = l.inspect, 50*time.Millisecond
	return l
}

func (l *scoreLog) inspect(m map[peer.ID]*pubsub.PeerScoreSnapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rounds++
	l.last = m
	for p, s := range m {
		if low, ok := l.lowest[p]; !ok || s.Score < low {
			l.lowest[p] = s.Score
		}
	}
}

func (l *scoreLog) round() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rounds
}

// of returns p's last reported score and whether p is in the mesh.
func (l *scoreLog) of(p peer.ID) (score float64, inMesh, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.last[p]
	if !ok {
		return 0, false, false
	}
	ts := s.Topics[BidRequestTopic]
	return s.Score, ts != nil && ts.TimeInMesh > 0, true
}

// waitRounds waits until the log has received n more inspections.
func (l *scoreLog) waitRounds(t *testing.T, n int) {
	t.Helper()
	target := l.round() + n
	waitFor(t, 10*time.Second, fmt.Sprintf("%d score inspections", n), func() bool { return l.round() >= target })
}

// TestPeerScoresOfHonestTraffic runs 5 hosts that each publish bid requests
// and checks that no host ever scores a peer below zero, far from the
// graylist threshold, while scoring does run (some peers earn points).
func TestPeerScoresOfHonestTraffic(t *testing.T) {
	const n, each = 5, 10
	var hosts []*Host
	var logs []*scoreLog
	for i := range n {
		var boot []string
		if i > 0 {
			boot = hosts[0].Addrs()
		}
		cfg := testConfig(t, boot...)
		logs = append(logs, withScoreLog(&cfg))
		hosts = append(hosts, newTestHost(t, cfg))
	}
	var mu sync.Mutex
	got := 0
	all := make(chan struct{})
	for _, h := range hosts {
		err := h.SubscribeBidRequests(func(string, *types.Envelope, *types.BidRequest) {
			mu.Lock()
			defer mu.Unlock()
			if got++; got == n*n*each {
				close(all)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range hosts {
		waitFor(t, 20*time.Second, fmt.Sprintf("host %d to see %d topic peers", i, n-1), func() bool { return h.TopicPeers() == n-1 })
	}
	ctx := testCtx(t, 20*time.Second)
	for i := range each {
		for _, h := range hosts {
			req := &types.BidRequest{JobID: types.JobID(fmt.Sprint(h.ID(), i)), Requester: h.ID()}
			if err := h.PublishEnvelope(ctx, sealEnv(t, h.cfg.Key, req, time.Now(), time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatalf("%d of %d deliveries", got, n*n*each)
	}
	logs[0].waitRounds(t, 40) // 2s: two heartbeats, meshes grafted and scored
	best := math.Inf(-1)
	for i, l := range logs {
		l.mu.Lock()
		if len(l.lowest) != n-1 {
			t.Errorf("host %d scored %d peers, want %d", i, len(l.lowest), n-1)
		}
		for p, low := range l.lowest {
			if low < 0 {
				t.Errorf("host %d scored honest peer %s down to %g", i, p, low)
			}
			best = max(best, l.last[p].Score)
		}
		l.mu.Unlock()
		if s := hosts[i].Stats().Gossip; len(s) != 0 {
			t.Errorf("host %d refused honest bid requests: %v", i, s)
		}
	}
	if best <= 0 {
		t.Fatalf("no peer earned a positive score (best %g): is scoring on?", best)
	}
	t.Logf("best honest score %g, at most %g", best, float64(scoreMaxPositive))
}

// meshTracer records the peers that grafted and pruned a raw gossipsub peer.
type meshTracer struct {
	refusalTracer
	mu              sync.Mutex
	grafted, pruned map[peer.ID]bool
}

func newMeshTracer() *meshTracer {
	return &meshTracer{refusalTracer: refusalTracer{c: &counters{}}, grafted: map[peer.ID]bool{}, pruned: map[peer.ID]bool{}}
}

func (m *meshTracer) Graft(p peer.ID, _ string) { m.mu.Lock(); m.grafted[p] = true; m.mu.Unlock() }
func (m *meshTracer) Prune(p peer.ID, _ string) { m.mu.Lock(); m.pruned[p] = true; m.mu.Unlock() }

func (m *meshTracer) wasPruned(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pruned[p]
}

// TestPeerScoreInvalidPublisher has a peer in the Host's mesh publish one
// invalid bid request: its score goes negative at once and the Host prunes
// it from its mesh. Ten more put it below the graylist threshold.
func TestPeerScoreInvalidPublisher(t *testing.T) {
	cfg := testConfig(t)
	log := withScoreLog(&cfg)
	h := newTestHost(t, cfg)
	if err := h.SubscribeBidRequests(func(string, *types.Envelope, *types.BidRequest) {}); err != nil {
		t.Fatal(err)
	}
	tracer := newMeshTracer()
	raw := newRawHost(t, newKey(t), false)
	topic := rawTopic(t, raw, h, pubsub.WithRawTracer(tracer))
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Cancel)
	waitFor(t, 10*time.Second, "the raw peer in the Host's mesh", func() bool {
		score, inMesh, _ := log.of(raw.ID())
		return inMesh && score >= 0
	})

	ctx := testCtx(t, 20*time.Second)
	if err := topic.Publish(ctx, []byte("{not a bid request")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a negative score", func() bool { s, _, _ := log.of(raw.ID()); return s < 0 })
	waitFor(t, 5*time.Second, "the Host to prune the raw peer", func() bool { return tracer.wasPruned(h.host.ID()) })

	for i := range 10 {
		if err := topic.Publish(ctx, fmt.Appendf(nil, "{invalid %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "a score below the graylist threshold", func() bool {
		s, _, _ := log.of(raw.ID())
		return s < graylistThreshold
	})
	if n := h.Stats().Gossip[ReasonMalformed]; n != 11 {
		t.Fatalf("malformed %d, want 11", n)
	}
}

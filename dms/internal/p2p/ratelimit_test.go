package p2p

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/types"
)

func TestRateLimiter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	// 2/s, burst 3 for self and 3 + 2×1s of slack for others, 2 others at most.
	l := newRateLimiter("self", 2, 3, 2)
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	take := func(p peer.ID, n int) {
		t.Helper()
		for i := range n {
			if r := l.allow(p, 1, now); r != "" {
				t.Fatalf("%s, message %d: %s", p, i, r)
			}
		}
		if r := l.allow(p, 1, now); r != ReasonRateLimited {
			t.Fatalf("%s over its burst of %d: got %q, want rate_limited", p, n, r)
		}
	}
	take("self", 3)
	take(a, 5)
	take(b, 5)
	if r := l.allow(c, 1, now); r != ReasonOverloaded {
		t.Fatalf("a third publisher with the table full: got %q, want overloaded", r)
	}
	now = now.Add(500 * time.Millisecond) // one token each
	take(a, 1)
	take("self", 1)
	if r := l.allow(a, 1, now.Add(-time.Hour)); r != ReasonRateLimited {
		t.Fatalf("a clock that went back earns nothing: got %q", r)
	}
	// Idle for (burst+slack)/rate, the buckets are full again and are
	// forgotten at the next sweep, so c gets in.
	now = now.Add(2500 * time.Millisecond)
	if r := l.allow(c, 1, now); r != "" {
		t.Fatalf("after the idle publishers aged out: %q", r)
	}
	if n := l.tracked(); n != 1 {
		t.Fatalf("tracking %d publishers, want 1 (c)", n)
	}
	// A batch takes a token per request, all or none.
	if r := l.allow(c, 5, now); r != ReasonRateLimited {
		t.Fatalf("5 requests with 4 tokens left: %q", r)
	}
	if r := l.allow(c, 4, now); r != "" {
		t.Fatalf("4 requests with 4 tokens left: %q", r)
	}
}

// TestRateLimiterMemoryBound has 100000 publishers send one message each, a
// thousand a second: the table never holds more than the last few seconds'.
func TestRateLimiterMemoryBound(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newRateLimiter("self", 50, 100, maxRatedPeers)
	most := 0
	for i := range 100_000 {
		if r := l.allow(peer.ID(fmt.Sprint(i)), 1, now); r != "" {
			t.Fatalf("publisher %d: %s", i, r)
		}
		now = now.Add(time.Millisecond)
		most = max(most, l.tracked())
	}
	// A bucket one token short refills in 20ms, and sweeps run every
	// second: about a second's worth of publishers is tracked.
	if most > 1100 {
		t.Fatalf("tracked up to %d publishers at once", most)
	}
}

// TestBidRequestRateLimit has a peer publish more bid requests than its
// burst (3, and 1 of slack), with the clock stopped so no token is earned
// back: the Host delivers 4 and refuses the rest as rate_limited, without
// forwarding them. Its own publications are held to the burst of 3.
func TestBidRequestRateLimit(t *testing.T) {
	now := time.Now()
	h := limitedHost(t, 1, 3, now)
	delivered := make(chan types.JobID, 10)
	if err := h.SubscribeBidRequests(func(_ string, _ *types.Envelope, r *types.BidRequest) { delivered <- r.JobID }); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	topic := rawTopic(t, newRawHost(t, key, false), h)
	ctx := testCtx(t, 10*time.Second)
	for i := range 6 {
		req := &types.BidRequest{JobID: types.JobID(fmt.Sprint(i)), Requester: peerOf(t, key).String()}
		if err := topic.Publish(ctx, encode(t, sealEnv(t, key, req, now, time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "2 bid requests refused", func() bool { return h.Stats().Gossip[ReasonRateLimited] == 2 })
	for i := range 4 {
		select {
		case <-delivered:
		case <-ctx.Done():
			t.Fatalf("only %d of the 4 allowed delivered", i)
		}
	}
	if len(delivered) != 0 {
		t.Fatalf("%d bid requests over the limit delivered", len(delivered))
	}

	for i := range 4 {
		env := sealEnv(t, h.cfg.Key, &types.BidRequest{JobID: "own", Requester: h.ID()}, now, time.Minute)
		err := h.PublishEnvelope(ctx, env)
		if i < 3 && err != nil {
			t.Fatalf("own publication %d: %v", i, err)
		}
		if i == 3 && !errors.Is(err, ErrRateLimited) {
			t.Fatalf("own publication over the limit: got %v, want ErrRateLimited", err)
		}
	}
	if n := h.Stats().Gossip[ReasonRateLimited]; n != 3 {
		t.Fatalf("rate_limited %d, want 3", n)
	}
}

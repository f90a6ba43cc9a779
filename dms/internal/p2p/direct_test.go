package p2p

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// TestDirectBidRequestRefusals sends every payload the gossip validator
// refuses straight to a Host on BidRequestProtocol, from a peer that
// follows no rule: each is refused with the same reason as on the topic
// (forged, unsigned, expired, replayed, oversized and requester mismatch
// among them), counted in Stats.Streams, and reset without an ack; only
// the valid one reaches the handler, and is acked.
func TestDirectBidRequestRefusals(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	var delivered atomic.Int32
	h.ServeBidRequests(func(from string, _ *types.Envelope, r *types.BidRequest) {
		if r.JobID == "j" && from == r.Requester {
			delivered.Add(1)
		}
	})
	key := newKey(t)
	raw := newRawHost(t, key, false)
	if err := raw.Connect(testCtx(t, 10*time.Second), addrInfo(h)); err != nil {
		t.Fatal(err)
	}
	frame := func(b []byte) []byte { return append(binary.AppendUvarint(nil, uint64(len(b))), b...) }
	payloads := badPayloads(t, key, time.Now())
	if reply, err := rawExchange(t, raw, h, BidRequestProtocol, frame(payloads[""])); err != nil || len(reply) != 0 {
		t.Fatalf("valid bid request: reply %q, %v; want an ack", reply, err)
	}
	payloads[ReasonReplayed] = payloads[""]
	delete(payloads, "")
	for reason, p := range payloads {
		t.Run(string(reason), func(t *testing.T) {
			if reply, err := rawExchange(t, raw, h, BidRequestProtocol, frame(p)); err == nil {
				t.Errorf("got a reply %q, want a reset", reply)
			}
			waitFor(t, 5*time.Second, string(reason)+" counted", func() bool { return h.Stats().Streams[reason] == 1 })
		})
	}
	if n := delivered.Load(); n != 1 {
		t.Fatalf("delivered %d bid requests, want 1", n)
	}
	if got := h.Stats().Streams; len(got) != len(payloads) {
		t.Fatalf("refusals %v, want one for each of %d reasons", got, len(payloads))
	}
	if tr := h.Traffic(); tr.BidRequestsDirect != 1 || tr.BidRequestsGossip != 0 {
		t.Fatalf("traffic %+v, want 1 direct bid request", tr)
	}
}

// TestDirectBidRequestRateLimit checks that bid requests sent straight to
// a node draw on the publisher's token bucket like gossip does.
func TestDirectBidRequestRateLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.BidRequestRate, cfg.BidRequestBurst = 0.001, 1 // others: 1 + 0.001 tokens
	h := newTestHost(t, cfg)
	h.ServeBidRequests(func(string, *types.Envelope, *types.BidRequest) {})
	key := newKey(t)
	raw := newRawHost(t, key, false)
	if err := raw.Connect(testCtx(t, 10*time.Second), addrInfo(h)); err != nil {
		t.Fatal(err)
	}
	req := &types.BidRequest{JobID: "j", Requester: raw.ID().String()}
	if _, err := rawExchange(t, raw, h, BidRequestProtocol, sealedFrame(t, key, req)); err != nil {
		t.Fatalf("first bid request: %v", err)
	}
	if _, err := rawExchange(t, raw, h, BidRequestProtocol, sealedFrame(t, key, req)); err == nil {
		t.Fatal("second bid request acked, want a reset")
	}
	if n := h.Stats().Streams[ReasonRateLimited]; n != 1 {
		t.Fatalf("rate_limited count %d, want 1", n)
	}
}

// TestSampledBidRequests runs the requester's side: it finds the compute
// Hosts under their ComputeKeys (and not the Host that only submits),
// samples distinct ones uniformly among those whose CPU class may fit,
// sends a bid request to those only, and leaves out a peer that failed to
// take one.
func TestSampledBidRequests(t *testing.T) {
	boot := newTestHost(t, testConfig(t))
	plain := newTestHost(t, testConfig(t, boot.Addrs()...)) // does not compute
	computes := make([]*Host, 4)
	got := make([]atomic.Int32, len(computes))
	for i := range computes {
		cfg := testConfig(t, boot.Addrs()...)
		cfg.Compute, cfg.ComputeCPU = true, 2000 // class 2
		if i == 3 {
			cfg.ComputeCPU = 16000 // class 5
		}
		computes[i] = newTestHost(t, cfg)
		computes[i].ServeBidRequests(func(string, *types.Envelope, *types.BidRequest) { got[i].Add(1) })
	}
	cfg := testConfig(t, boot.Addrs()...)
	cfg.Sampling = true
	req := newTestHost(t, cfg)
	waitFor(t, 20*time.Second, "the requester to find the 4 compute hosts", func() bool { return req.Candidates(0) == len(computes) })
	if n := req.Candidates(3000); n != 4 {
		t.Fatalf("%d candidates for 3 cores, want 4: a node of 2 or 3 cores may fit", n)
	}
	if picks := req.Sample(4, 4000, false, nil); len(picks) != 1 || picks[0] != computes[3].ID() {
		t.Fatalf("Sample(4) for 4 cores = %v, want only the 16-core host", picks)
	}

	counts := map[string]int{}
	for range 400 {
		picks := req.Sample(2, 1000, false, nil)
		if len(picks) != 2 || picks[0] == picks[1] {
			t.Fatalf("Sample(2) = %v", picks)
		}
		for _, p := range picks {
			counts[p]++
		}
	}
	for _, c := range computes {
		if n := counts[c.ID()]; n < 120 || n > 280 { // 200 expected; sd 10
			t.Errorf("compute host picked %d times in 400 samples of 2 of 4: %v", n, counts)
		}
	}
	if picks := req.Sample(10, 0, true, map[string]bool{computes[0].ID(): true}); len(picks) != 4 || !slices.Contains(picks, req.ID()) || slices.Contains(picks, computes[0].ID()) {
		t.Fatalf("Sample(10, self, skip 0) = %v", picks)
	}

	ctx := testCtx(t, 10*time.Second)
	seal := func(job types.JobID) *types.Envelope {
		return sealEnv(t, req.cfg.Key, &types.BidRequest{JobID: job, Requester: req.ID()}, time.Now(), time.Minute)
	}
	reached, err := req.SendBidRequests(ctx, seal("j1"), []string{computes[1].ID(), computes[2].ID()})
	if err != nil || len(reached) != 2 {
		t.Fatalf("SendBidRequests reached %v, %v; want hosts 1 and 2", reached, err)
	}
	for i := range computes {
		want := int32(0)
		if i == 1 || i == 2 {
			want = 1
		}
		if got[i].Load() != want {
			t.Fatalf("compute host %d got %d bid requests, want %d", i, got[i].Load(), want)
		}
	}
	if n := req.Traffic().Frames[BidRequestProtocol]; n != 2 {
		t.Fatalf("requester sent %d frames on %s, want 2", n, BidRequestProtocol)
	}

	// A peer that serves no bid requests, and one that is gone, do not count
	// as reached, and are sampled no more.
	if err := computes[3].Close(); err != nil {
		t.Fatal(err)
	}
	// (A dial to the closed host's QUIC port gets no answer: bound it.)
	reached, err = req.SendBidRequests(testCtx(t, time.Second), seal("j2"), []string{plain.ID(), computes[3].ID()})
	if err != nil || len(reached) != 0 {
		t.Fatalf("SendBidRequests to a plain and a closed host reached %v, %v; want nobody", reached, err)
	}
	if picks := req.Sample(10, 0, false, nil); len(picks) != 3 || slices.Contains(picks, computes[3].ID()) {
		t.Fatalf("after the failure Sample(10) = %v, want the 3 live compute hosts", picks)
	}

	// The requester holds its own envelopes to the rules.
	forged := sealEnv(t, newKey(t), &types.BidRequest{JobID: "j3", Requester: req.ID()}, time.Now(), time.Minute)
	if _, err := req.SendBidRequests(ctx, forged, []string{computes[1].ID()}); !errors.Is(err, ErrSenderMismatch) {
		t.Fatalf("sending an envelope signed by another key: got %v, want ErrSenderMismatch", err)
	}
}

// CPU classes double with the cores; shards spread PeerIDs evenly.
func TestComputeKeys(t *testing.T) {
	for cpu, want := range map[types.MilliCPU]int{-1: 0, 0: 0, 999: 0, 1000: 1, 1999: 1, 2000: 2, 3999: 2, 4000: 3, 8000: 4, 64000: 7, 1 << 40: 7} {
		if got := CPUClass(cpu); got != want {
			t.Errorf("CPUClass(%d) = %d, want %d", cpu, got, want)
		}
	}
	if k := ComputeKey(3, 1); k != "dms/compute/v2/c3/s1" {
		t.Errorf("ComputeKey(3, 1) = %s", k)
	}
	counts := make([]int, ComputeShards)
	for range 4000 {
		counts[computeShard(newPublisher(t).id)]++
	}
	for s, n := range counts {
		if n < 850 || n > 1150 { // 1000 expected; sd 27
			t.Errorf("shard %d holds %d of 4000 PeerIDs: %v", s, n, counts)
		}
	}
}

package dms

import (
	"context"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// samplingNet starts n nodes, node 0 a requester only with
// WithBidSampling(d), the others computing.
func samplingNet(t *testing.T, n, d int) []*DMS {
	t.Helper()
	return relNet(t, n, func(i int) bool { return i != 0 }, func(i int) []Option {
		opts := []Option{WithLease(10 * time.Second)}
		if i == 0 {
			opts = append(opts, WithBidSampling(d))
		}
		return opts
	})
}

// runTiny submits a tiny job on d and waits until it completed.
func runTiny(t *testing.T, d *DMS) types.JobID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := d.Submit(ctx, tinySpec(t, 0, "sampled\n"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != types.JobCompleted {
		t.Fatalf("job ended %s: %s", job.State, job.Reason)
	}
	return types.JobID(job.ID)
}

// bidRequests sums the bid requests the nodes received, from the topic and
// sent straight to them, and returns who received any.
func bidRequests(nodes []*DMS) (gossip, direct uint64, got map[string]bool) {
	got = map[string]bool{}
	for _, d := range nodes {
		s := d.NetworkStats()
		gossip, direct = gossip+s.BidRequestsGossip, direct+s.BidRequestsDirect
		if s.BidRequestsGossip+s.BidRequestsDirect > 0 {
			got[d.host.ID()] = true
		}
	}
	return gossip, direct, got
}

// TestSampledBidRequest places and runs a job on a network of 8 nodes while
// asking only 2 of the 7 that compute: the requester found them in the DHT
// under the compute rendezvous, sent them the bid request directly, and
// closed the auction once both answered.
func TestSampledBidRequest(t *testing.T) {
	nodes := samplingNet(t, 8, 2)
	waitFor(t, 30*time.Second, "the requester to know the 7 compute nodes", func() bool {
		return nodes[0].NetworkStats().Candidates == 7
	})
	id := runTiny(t, nodes[0])
	gossip, direct, got := bidRequests(nodes)
	if gossip != 0 || direct != 2 || len(got) != 2 {
		t.Fatalf("bid requests: %d over gossip, %d direct, to %d nodes; want 2 direct to 2 nodes", gossip, direct, len(got))
	}
	job, err := nodes[0].GetJob(context.Background(), string(id))
	if err != nil {
		t.Fatal(err)
	}
	if !got[job.Node] {
		t.Fatalf("the job ran on %s, which was not asked", job.Node)
	}
	if s := nodes[0].NetworkStats(); s.GossipSent != 0 || s.Frames["/dms/bid-request/1.0.0"] != 2 {
		t.Fatalf("requester sent %d gossip copies and %d direct bid requests; want 0 and 2", s.GossipSent, s.Frames["/dms/bid-request/1.0.0"])
	}
}

// TestSamplingFallsBackToGossip asks for more nodes than compute: the
// requester knows too few candidates to sample, and publishes on the topic.
func TestSamplingFallsBackToGossip(t *testing.T) {
	nodes := samplingNet(t, 3, 5)
	runTiny(t, nodes[0])
	gossip, direct, got := bidRequests(nodes)
	if gossip != 2 || direct != 0 || len(got) != 2 {
		t.Fatalf("bid requests: %d over gossip, %d direct, to %d nodes; want 2 over gossip", gossip, direct, len(got))
	}
}

func TestWithBidSamplingBounds(t *testing.T) {
	for _, d := range []int{-1, MaxBidSampling + 1} {
		if _, err := newConfig([]Option{WithHome("x"), WithBidSampling(d)}); err == nil {
			t.Errorf("WithBidSampling(%d) accepted", d)
		}
	}
	if _, err := newConfig([]Option{WithHome("x"), WithConnLimits(10, 10)}); err == nil {
		t.Error("WithConnLimits(10, 10) accepted")
	}
}

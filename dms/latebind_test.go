package dms

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// TestLateBidPlacesAWaitingJob: a provider with room for one job at a
// time runs a long one; a second job finds it busy and waits for capacity,
// asking again once a second by now. The moment the second job begins one
// of those pauses, the first is cancelled: the provider offers itself at
// once (a late bid, node/latebind.go), and the second job is placed on it
// by that bid, before its next auction.
func TestLateBidPlacesAWaitingJob(t *testing.T) {
	provHome, _ := newHome(t)
	reqHome, _ := newHome(t)
	prov := startNode(t, provHome, WithLease(10*time.Second))
	req := startNode(t, reqHome, WithCompute(false), WithLease(10*time.Second), WithBootstrap(prov.host.Addrs()...))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return req.host.TopicPeers() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	info, err := prov.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	whole := func(sleep time.Duration) *Handle {
		spec := tinySpec(t, sleep, "done\n")
		spec.Resources.CPU = info.Registered.CPU // the whole node
		h, err := req.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	long := whole(time.Minute)
	waitFor(t, time.Minute, "the long job running", func() bool {
		j, err := req.GetJob(ctx, long.ID)
		return err == nil && j.State == types.JobRunning
	})
	short := whole(0)
	// After 2 s of waiting, the pauses between its auctions are a second
	// (100 ms, doubling): catch the job as one begins.
	waitFor(t, time.Minute, "the short job waiting for capacity for 2s", func() bool {
		j, err := req.GetJob(ctx, short.ID)
		return err == nil && j.State == types.JobPending && time.Since(j.CreatedAt) > 2*time.Second
	})
	last, _ := req.GetJob(ctx, short.ID)
	waitFor(t, 10*time.Second, "the short job's next pause", func() bool {
		j, err := req.GetJob(ctx, short.ID)
		if err != nil || j.UpdatedAt.Equal(last.UpdatedAt) {
			return false
		}
		last = j
		return j.State == types.JobPending
	})
	if err := req.CancelJob(ctx, long.ID); err != nil {
		t.Fatal(err)
	}
	j, err := short.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != types.JobCompleted || len(j.Attempts) != 1 || !j.Attempts[0].Late || j.Attempts[0].Node != prov.host.ID() {
		t.Fatalf("the short job: %s (%s), attempts %+v; want one attempt, a late bid of the provider", j.State, j.Reason, j.Attempts)
	}
}

// The placement strategy is read from the config: binpack by default,
// spread on request, anything else refused naming the key.
func TestPlacementConfig(t *testing.T) {
	home, _ := newHome(t)
	cfg, err := LoadConfig(home)
	if err != nil || cfg.Placement != "" {
		t.Fatalf("a new home: placement %q, %v", cfg.Placement, err)
	}
	rewriteConfig(t, home, func(c *Config) { c.Placement = PlaceSpread })
	if cfg, err := LoadConfig(home); err != nil || cfg.Placement != PlaceSpread {
		t.Fatalf("spread: %q, %v", cfg.Placement, err)
	}
	if d := startNode(t, home); d.orch == nil {
		t.Fatal("no orchestrator")
	}
	rewriteConfig(t, home, func(c *Config) { c.Placement = "pack" })
	if _, err := LoadConfig(home); err == nil || !strings.Contains(err.Error(), `placement "pack": want binpack or spread`) {
		t.Fatalf("an unknown strategy: %v", err)
	}
}

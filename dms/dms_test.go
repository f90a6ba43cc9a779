package dms

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// testNet starts n real nodes over loopback, each in its own home; nodes
// 1..n-1 bootstrap from node 0. compute(i) false makes node i a requester
// only. Tests run under -race, whose GC pauses can outlast the 1s default
// lease and declare a healthy node lost, so these nodes use a 10s lease;
// lease_test.go tests detection with relNet and the default.
func testNet(t *testing.T, n int, compute func(i int) bool) []*DMS {
	t.Helper()
	return relNet(t, n, compute, func(int) []Option { return []Option{WithLease(10 * time.Second)} })
}

// relNet starts a test network with per-node options: n real nodes over loopback, 1..n-1
// bootstrapping from node 0; compute(i) false makes node i a requester only.
func relNet(t *testing.T, n int, compute func(i int) bool, extra func(i int) []Option) []*DMS {
	t.Helper()
	return growNet(t, n, compute, func(i int, _ []*DMS) []Option { return extra(i) })
}

// growNet is relNet whose options of node i may depend on the nodes
// started before it.
func growNet(t *testing.T, n int, compute func(i int) bool, extra func(i int, started []*DMS) []Option) []*DMS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes := make([]*DMS, n)
	computing := 0
	for i := range n {
		home := filepath.Join(t.TempDir(), "home")
		if _, err := Init(ctx, home, InitOptions{BenchDuration: 10 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		opts := append([]Option{WithHome(home), WithAPI(""), WithCompute(compute(i))}, extra(i, nodes[:i])...)
		// Every node bootstraps from all the nodes before it, so the test
		// network is whole once they start: with node 0 alone, the DHT's
		// rendezvous had to bring every pair together, and under -race
		// beside other packages 10 nodes sometimes took over 90 s (the
		// discovery rounds back off to a minute). Discovery from one
		// bootstrap node is the fault tests' and the devstack's.
		for _, prev := range nodes[:i] {
			opts = append(opts, WithBootstrap(prev.host.Addrs()...))
		}
		d, err := New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
		nodes[i] = d
		if compute(i) {
			computing++
		}
	}
	for i, d := range nodes {
		want := computing
		if compute(i) {
			want-- // a node is not its own topic peer
		}
		deadline := time.Now().Add(90 * time.Second)
		for d.host.TopicPeers() < want {
			if time.Now().After(deadline) {
				// Which peers it misses, and whether it is connected to them.
				var missing []string
				on := d.host.TopicPeerIDs()
				for j, o := range nodes {
					if j != i && compute(j) && !slices.Contains(on, o.host.ID()) {
						missing = append(missing, fmt.Sprintf("node %d (connected %v, it sees node %d on the topic: %v)",
							j, d.host.Connected(o.host.ID()), i, slices.Contains(o.host.TopicPeerIDs(), d.host.ID())))
					}
				}
				t.Fatalf("timed out after 90s waiting for node %d to see the %d other computing nodes on the topic: it sees %d, misses %s; %+v",
					i, want, len(on), strings.Join(missing, ", "), d.NetworkStats())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func helloSpec(t *testing.T) *jobs.Spec {
	t.Helper()
	spec, err := jobs.ParseFile("../examples/hello/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestFiveNodesPlaceAndRunAJob(t *testing.T) {
	nodes := testNet(t, 5, func(i int) bool { return i != 0 }) // node 0 only submits
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := nodes[0].Submit(ctx, helloSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	var states []types.JobState
	for j := range h.Events() {
		if len(states) == 0 || states[len(states)-1] != j.State {
			states = append(states, j.State)
		}
	}
	job, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != types.JobCompleted || job.Result == nil || job.Result.ExitCode != 0 {
		t.Fatalf("job ended %s (%s), result %+v; states %v", job.State, job.Reason, job.Result, states)
	}
	if job.Node == "" || job.Node == nodes[0].host.ID() {
		t.Fatalf("job ran on %q: the requester offers no compute", job.Node)
	}
	out, err := h.Stdout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "hello from dms") {
		t.Fatalf("stdout = %q", out)
	}
	if !containsInOrder(states, types.JobBidding, types.JobRunning, types.JobCompleted) {
		t.Fatalf("states seen: %v", states)
	}
	// The provider keeps the allocation's record, and released its capability.
	for _, d := range nodes[1:] {
		if d.host.ID() != job.Node {
			continue
		}
		info, err := d.Node(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Available != info.Registered || info.Running != 0 {
			t.Fatalf("after the job the provider has %s of %s available, %d running", info.Available, info.Registered, info.Running)
		}
	}
}

func containsInOrder(got []types.JobState, want ...types.JobState) bool {
	i := 0
	for _, s := range got {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestUnplaceableJobFailsWithReasons(t *testing.T) {
	nodes := testNet(t, 3, func(int) bool { return true })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := helloSpec(t)
	spec.Resources.Memory = 900 << 40
	start := time.Now()
	h, err := nodes[1].Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	job, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != types.JobFailed || !strings.Contains(job.Reason, "memory: need 900 TiB") {
		t.Fatalf("job %s: %q", job.State, job.Reason)
	}
	if took := time.Since(start); took > time.Duration(spec.BidWindow)+5*time.Second {
		t.Fatalf("failing took %s, bid window %s", took, time.Duration(spec.BidWindow))
	}
}

func TestAPIOfARunningNode(t *testing.T) {
	nodes := testNet(t, 2, func(int) bool { return true })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := nodes[0].Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.PeerID == "" || !strings.HasPrefix(info.DID, "did:key:z6Mk") || len(info.Addrs) == 0 || info.ID.CapabilityCID == "" {
		t.Fatalf("node info %+v", info)
	}
	if !strings.HasSuffix(info.Addrs[0], "/p2p/"+info.PeerID) {
		t.Fatalf("addr %s lacks /p2p/<id>", info.Addrs[0])
	}
	// The CID in a node's identity names the signed record it publishes:
	// another node fetches it by that CID and verifies it.
	signed, err := nodes[1].GetBlob(ctx, info.ID.CapabilityCID)
	if err != nil {
		t.Fatalf("fetching the capability record %s: %v", info.ID.CapabilityCID, err)
	}
	env, err := types.UnmarshalEnvelope(signed)
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := env.Open(time.Now()); err != nil || msg.(*types.CapabilityRecord).PeerID != info.PeerID {
		t.Fatalf("the capability record: %v, %v", msg, err)
	}
	peers, err := nodes[0].Peers(ctx)
	if err != nil || len(peers) == 0 {
		t.Fatalf("peers %v, %v", peers, err)
	}
	if _, err := nodes[0].GetJob(ctx, "no-such-job"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
	spec := helloSpec(t)
	spec.Module = "examples/hello/hello.wasm-not-uploaded"
	if _, err := nodes[0].SubmitJob(ctx, spec); !errors.Is(err, jobs.ErrInvalidSpec) {
		t.Fatalf("local module path over the API: %v", err)
	}
}

func TestInitRefusesExistingHome(t *testing.T) {
	home := t.TempDir()
	ctx := context.Background()
	first, err := Init(ctx, home, InitOptions{BenchDuration: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(ctx, home, InitOptions{BenchDuration: time.Millisecond}); !errors.Is(err, ErrHomeExists) {
		t.Fatalf("second init: %v", err)
	}
	second, err := Init(ctx, home, InitOptions{Force: true, BenchDuration: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(home, keyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, st.Mode())
	}
	if first.PeerID == second.PeerID {
		t.Fatal("--force kept the old identity")
	}
	if _, err := New(WithHome(t.TempDir())); !errors.Is(err, ErrNoHome) {
		t.Fatalf("New on an empty home: %v", err)
	}
}

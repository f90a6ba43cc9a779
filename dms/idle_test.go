package dms

import (
	"context"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
)

// The idle section survives the config template; idle-only with docker
// on, or with a bad field, is refused naming it.
func TestIdleConfig(t *testing.T) {
	home, _ := newHome(t)
	cfg, err := LoadConfig(home)
	if err != nil || cfg.Offer.Idle != node.DefaultOffer().Idle || cfg.Offer.Idle.Enabled {
		t.Fatalf("a fresh home's idle section: %+v, %v", cfg.Offer.Idle, err)
	}
	idle := node.IdleConfig{Enabled: true, Threshold: "40%", Period: "1m0s", StopWithin: "1s", Policy: node.IdleStop}
	rewriteConfig(t, home, func(c *Config) { c.Offer.Idle = idle })
	if cfg, err = LoadConfig(home); err != nil || cfg.Offer.Idle != idle {
		t.Fatalf("after editing: %+v, %v", cfg.Offer.Idle, err)
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"docker on": {func(c *Config) { c.Docker.Mode = DockerOn }, "an idle-only node runs no container jobs"},
		"throttle":  {func(c *Config) { c.Offer.Idle.Policy = "throttle" }, "offer.idle.policy: throttle is not offered"},
	} {
		bad := cfg
		tc.edit(&bad)
		if err := writeConfig(home, bad); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(home); err == nil || !strings.Contains(err.Error(), "config.yaml") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming the config file and %q", name, err, tc.want)
		}
	}

	other, _ := newHome(t)
	if _, err := New(WithHome(other), WithIdleOnly(node.IdleConfig{Threshold: "0.5"})); err == nil || !strings.Contains(err.Error(), "WithIdleOnly: offer.idle.threshold") {
		t.Fatalf("WithIdleOnly with a bad threshold: %v", err)
	}
	if _, err := New(WithHome(other), WithIdleOnly(node.IdleConfig{}), WithDocker(DockerConfig{Mode: DockerOn})); err == nil || !strings.Contains(err.Error(), "docker.mode: on") {
		t.Fatalf("WithIdleOnly with docker on: %v", err)
	}
}

// An idle-only node gives way to its host's owner, for real: the test
// loads the host with busy-loop processes, which the node sees as other
// processes' CPU. A unit running when the load starts is stopped, failed
// as the node's fault, and its job completes on the other node; while the
// load lasts the idle-only node declines, saying why; once it ends, the
// node bids again after the period. The other node is the requester,
// priced out of the jobs at first, and of the second job for good. Only the waits for the host to be idle
// depend on the machine: a host that other work keeps busy skips the test.
func TestIdleOnlyNodeGivesWayToItsOwner(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("idle_only reads Linux's /proc")
	}
	reqHome, _ := newHome(t)
	idleHome, _ := newHome(t)
	rewriteConfig(t, reqHome, func(c *Config) { c.Offer.Price = 100 * types.Credit })
	policy := node.IdleConfig{Threshold: "40%", Period: "1s", StopWithin: "1s"}
	req := startNode(t, reqHome, WithLease(10*time.Second))
	idle := startNode(t, idleHome, WithLease(10*time.Second), WithBootstrap(req.host.Addrs()...), WithIdleOnly(policy))
	for _, d := range []*DMS{req, idle} {
		waitFor(t, 60*time.Second, "the other node on the topic", func() bool { return d.host.TopicPeers() >= 1 })
	}
	waitIdle(t, idle, 2*time.Minute)

	// A unit runs on the idle-only node; the requester lowers its price.
	spec := tinySpec(t, 8*time.Second, "done\n")
	spec.Constraints.MaxPrice = 10 * types.Credit
	h, err := req.Submit(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	first := stateWith(t, h.Events(), types.JobRunning, "", 2*time.Minute)
	if first.Node != idle.host.ID() {
		t.Fatalf("the job runs on %s, not on the idle-only node", first.Node)
	}
	rewriteConfig(t, reqHome, func(c *Config) { c.Offer.Price = 2 * types.Credit })
	if err := req.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The owner comes back: the unit stops and its job runs on the requester.
	stopLoad := loadHost(t, 4*runtime.NumCPU())
	loaded := time.Now()
	pending := nextState(t, h.Events(), types.JobPending)
	again := nextState(t, h.Events(), types.JobRunning)
	rescheduled := time.Since(loaded)
	alloc := allocationOf(t, idle, first.Attempts[len(first.Attempts)-1].AllocationID)
	stopped := alloc.EndedAt.Sub(loaded)
	busy := "host busy: other processes use "
	if alloc.State != types.AllocFailed || !strings.HasPrefix(alloc.Reason, "stopped for the host's owner (idle_only): "+busy) {
		t.Fatalf("the unit ended %s: %s", alloc.State, alloc.Reason)
	}
	if again.Node != req.host.ID() || !strings.Contains(pending.Reason, busy) {
		t.Fatalf("after the stop: pending %q, then running on %s", pending.Reason, again.Node)
	}
	if a := again.Attempts[0]; a.Charge != "reschedule" || !strings.Contains(a.Reason, busy) {
		t.Fatalf("the first attempt: %+v", a)
	}
	host := idleOf(t, idle)
	if host.Idle || host.Stopped != 1 || !strings.HasPrefix(host.Reason, busy) || host.Others <= 0.4 {
		t.Fatalf("the idle-only node's host while loaded: %+v", host)
	}
	// Bounds of the policy, with room for a loaded machine: the load is
	// seen within two samples (half of stop_within), the unit stops in
	// milliseconds.
	if stopped > 5*time.Second {
		t.Fatalf("the unit stopped %s after the load began; stop_within is %s", stopped, policy.StopWithin)
	}

	// While loaded, the idle-only node declines a job only it could run.
	spec2 := tinySpec(t, 0, "idle again\n")
	spec2.Constraints.MaxPrice = 1_500_000 // the requester asks 2
	h2, err := req.Submit(context.Background(), spec2)
	if err != nil {
		t.Fatal(err)
	}
	waiting := stateWith(t, h2.Events(), types.JobPending, busy, 30*time.Second)

	// The owner leaves: the node bids again after the period.
	stopLoad()
	unloaded := time.Now()
	waitIdle(t, idle, 2*time.Minute)
	bidding := time.Since(unloaded)
	ran := stateWith(t, h2.Events(), types.JobRunning, "", 2*time.Minute)
	placed := time.Since(unloaded)
	if ran.Node != idle.host.ID() {
		t.Fatalf("the second job runs on %s", ran.Node)
	}
	for _, hh := range []*Handle{h, h2} {
		if j := waitEnd(t, hh); j.State != types.JobCompleted {
			t.Fatalf("job %s ended %s: %s", j.ID, j.State, j.Reason)
		}
	}
	t.Logf("load -> unit stopped %s, -> running on the other node %s; unloaded -> bidding %s (period %s), -> second job placed %s",
		stopped.Round(time.Millisecond), rescheduled.Round(time.Millisecond), bidding.Round(time.Millisecond), policy.Period, placed.Round(time.Millisecond))
	t.Logf("first attempt: %s", again.Attempts[0].Reason)
	t.Logf("while loaded: %s", waiting.Reason)
}

// loadHost starts n busy-loop processes, and returns what kills them and
// waits until they are gone (also done when the test ends).
func loadHost(t *testing.T, n int) (stop func()) {
	t.Helper()
	var cmds []*exec.Cmd
	stop = func() {
		for _, cmd := range cmds {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		cmds = nil
	}
	t.Cleanup(stop)
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	return stop
}

// idleOf returns an idle-only node's view of its host.
func idleOf(t *testing.T, d *DMS) api.IdleInfo {
	t.Helper()
	info, err := d.Node(context.Background())
	if err != nil || info.Idle == nil {
		t.Fatalf("node info %+v, %v", info, err)
	}
	return *info.Idle
}

// waitIdle waits until the idle-only node d bids. A host that other work
// (a shared machine) keeps busy for all of limit skips the test: it can
// tell nothing then.
func waitIdle(t *testing.T, d *DMS, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		host := idleOf(t, d)
		switch {
		case host.Idle:
			return
		case time.Now().After(deadline):
			t.Skipf("the host stayed busy with other work for %s (%s): this test needs it idle", limit, host.Reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stateWith reads a job's events until one in state want whose reason
// holds reason, for at most limit.
func stateWith(t *testing.T, events <-chan api.Job, want types.JobState, reason string, limit time.Duration) api.Job {
	t.Helper()
	timeout := time.After(limit)
	for {
		select {
		case j, ok := <-events:
			switch {
			case !ok:
				t.Fatalf("the job ended before %s (%q)", want, reason)
			case j.State == want && strings.Contains(j.Reason, reason):
				return j
			case j.State.Terminal():
				t.Fatalf("job %s (%s) before %s", j.State, j.Reason, want)
			}
		case <-timeout:
			t.Fatalf("no %s (%q) within %s", want, reason, limit)
		}
	}
}

package dms

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// reopen restarts a closed node from its home, as a daemon restarted after
// a crash would be.
func reopen(t *testing.T, d *DMS, opts ...Option) *DMS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	back, err := New(append([]Option{WithHome(d.home), WithAPI(""), WithCompute(d.conf.Compute), WithLease(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	if err := back.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return back
}

// A requester that stops while its jobs run takes them back when it starts
// again: it re-attaches to the allocation still running and learns the end
// of the one that finished meanwhile; neither runs a second time.
func TestRestartedRequesterTakesBackItsJobs(t *testing.T) {
	nodes := testNet(t, 3, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	long, err := req.Submit(ctx, tinySpec(t, 4*time.Second, "long\n"))
	if err != nil {
		t.Fatal(err)
	}
	short, err := req.Submit(ctx, tinySpec(t, 300*time.Millisecond, "short\n"))
	if err != nil {
		t.Fatal(err)
	}
	nextState(t, long.Events(), types.JobRunning)
	nextState(t, short.Events(), types.JobRunning)
	req.Close()
	time.Sleep(time.Second) // the short job ends while its requester is away

	back := reopen(t, req, WithBootstrap(nodes[1].host.Addrs()...))
	for id, out := range map[string]string{long.ID: "long\n", short.ID: "short\n"} {
		events, err := back.WatchJob(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var job api.Job
		for job = range events {
		}
		if job.State != types.JobCompleted || len(job.Attempts) != 1 {
			t.Fatalf("job %s after the restart: %s (%s), attempts %+v", id, job.State, job.Reason, job.Attempts)
		}
		stdout, err := back.GetBlob(ctx, job.Result.Stdout)
		if err != nil || string(stdout) != out {
			t.Fatalf("stdout of %s: %q, %v", id, stdout, err)
		}
		runs := 0
		for _, d := range nodes[1:] {
			for _, a := range allocations(t, d) {
				if a.JobID == types.JobID(id) {
					runs++
				}
			}
		}
		if runs != 1 {
			t.Fatalf("job %s has %d allocations across the providers, want 1", id, runs)
		}
	}
}

// A requester that stops while its job is being auctioned auctions it
// again when it starts, once it has found its peers: auctioned at once,
// the job would reach nobody and fail for the requester's restart. It runs
// once; a lock confirmed for the lost auction is never invoked.
func TestRestartedRequesterAuctionsOnceItHasPeers(t *testing.T) {
	nodes := testNet(t, 3, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := tinySpec(t, 0, "once\n")
	spec.BidWindow, spec.EnoughBids = jobs.Duration(3*time.Second), 5 // more than there are nodes: the window runs out
	h, err := req.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if j, err := req.GetJob(ctx, h.ID); err != nil || j.State != types.JobBidding {
		t.Fatalf("before the restart: %+v, %v; want it bidding", j, err)
	}
	req.Close()

	back := reopen(t, req, WithBootstrap(nodes[1].host.Addrs()...))
	events, err := back.WatchJob(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	var job api.Job
	for job = range events {
	}
	if job.State != types.JobCompleted || len(job.Attempts) != 2 || !strings.Contains(job.Attempts[0].Reason, "restarted during the auction") {
		t.Fatalf("after the restart: %s (%s), attempts %+v", job.State, job.Reason, job.Attempts)
	}
	ran := 0
	for _, d := range nodes[1:] {
		for _, a := range allocations(t, d) {
			if a.JobID == types.JobID(h.ID) && !a.StartedAt.IsZero() {
				ran++
			}
		}
	}
	if ran != 1 {
		t.Fatalf("the job started %d times across the providers, want once", ran)
	}
}

// A provider that restarts records the allocation it was running as
// failed and holds no capability for it; its requester, which saw the
// stream break, places the job again.
func TestRestartedProviderReportsItsRunningAllocationFailed(t *testing.T) {
	nodes := testNet(t, 4, func(i int) bool { return i != 0 })
	h, first := runningSleep(t, nodes[0])
	prov := byPeer(t, nodes, first.Node)
	prov.Close()
	back := reopen(t, prov, WithBootstrap(nodes[0].host.Addrs()...))
	// The job runs again, anywhere: the restarted provider may win it too.
	job := waitEnd(t, h)
	if job.State != types.JobCompleted || len(job.Attempts) != 2 || job.Attempts[0].State != "failed" {
		t.Fatalf("job %s (%s) on %s, attempts %+v", job.State, job.Reason, job.Node, job.Attempts)
	}
	waitReleased(t, back)
	a := allocationOf(t, back, first.Attempts[0].AllocationID)
	if a.State != types.AllocFailed || !strings.Contains(a.Reason, "node restarted") {
		t.Fatalf("the restarted provider's record: %+v", a)
	}
	info, err := back.Node(context.Background())
	if err != nil || info.Running != 0 || info.Available != info.Registered {
		t.Fatalf("the restarted provider holds capability: %+v, %v", info, err)
	}
}

// A requester remembers across a restart which peers failed it: the
// reputation goes to rep/<peer> records and comes back, decayed by the
// time that passed, and a forgotten peer's record is deleted.
func TestRestartedRequesterRemembersPeersReputation(t *testing.T) {
	d := testNet(t, 1, func(int) bool { return false })[0]
	at := time.Now()
	err := jobStore{d: d}.SavePeers([]orchestrator.PeerRecord{
		{Peer: "liar", Penalty: 2, At: at, Last: orchestrator.EventLost, Events: map[orchestrator.PeerEvent]int{orchestrator.EventLost: 1}, Unheard: true},
		{Peer: "gone", Penalty: 1, At: at, Last: orchestrator.EventSilent},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := (jobStore{d: d}).SavePeers(nil, []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	back := reopen(t, d)
	rep, err := back.Reputation(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 1 || rep[0].ID != "liar" || !rep[0].Poor || !rep[0].Unheard || rep[0].Penalty > 2 || rep[0].Penalty < 1.9 ||
		rep[0].Events["lost"] != 1 || rep[0].LastEvent != "lost" {
		t.Fatalf("reputation after a restart %+v", rep)
	}
}

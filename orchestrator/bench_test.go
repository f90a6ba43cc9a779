package orchestrator

import (
	"fmt"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// Benchmarks of the requester's pure state machines, on virtual time: what
// one auction and one job cost in CPU, without the network.

// benchBids returns n well-formed bids for job j1 from peers n1..n<n>, with
// prices, scores and loads spread so that ranking has work to do.
func benchBids(n int) []types.Bid {
	bids := make([]types.Bid, n)
	for i := range bids {
		bids[i] = mkBid("j1", fmt.Sprintf("12D3KooWPeer%03d", i), int64(1+i%7), float64(10+i%13), float64(i%10)/10)
	}
	return bids
}

func benchRequest() types.BidRequest {
	return types.BidRequest{JobID: "j1", Requester: "me", Executor: "wasm", Resources: types.Resources{CPU: 1000, Memory: 64 << 20}}
}

// BenchmarkAuction runs one whole auction: the window opens, five bids
// arrive (the fifth closes it), the best is offered the job and confirms,
// and the four losers are released.
func BenchmarkAuction(b *testing.B) {
	bids, req, rank := benchBids(5), benchRequest(), DefaultRanking()
	cfg := AuctionConfig{Enough: len(bids)}
	b.ReportAllocs()
	for b.Loop() {
		a, err := NewAuction(req, cfg, rank, t0)
		if err != nil {
			b.Fatal(err)
		}
		now := t0
		for _, bid := range bids {
			now = now.Add(ms)
			a.Bid(bid, now)
		}
		acts := a.Actions()
		accept, ok := acts[len(acts)-1].(SendAccept)
		if !ok {
			b.Fatalf("after five bids: %v", actionStrings(acts))
		}
		a.Confirmed(types.Confirm{JobID: "j1", AllocationID: accept.Accept.AllocationID, Epoch: 1, LockExpiry: now.Add(time.Minute)}, now.Add(ms))
		if acts := a.Actions(); !a.Done() || len(acts) != len(bids) {
			b.Fatalf("after the confirm: %v", actionStrings(acts))
		}
	}
}

// BenchmarkRank ranks the bids of one auction with the default ranking.
func BenchmarkRank(b *testing.B) {
	for _, n := range []int{5, 100} {
		bids, rank := benchBids(n), DefaultRanking()
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got := rank.Rank(bids); len(got) != n {
					b.Fatalf("ranked %d of %d bids", len(got), n)
				}
			}
		})
	}
}

// BenchmarkJob runs a job from Start to completed: publish, five nodes
// reached, five bids, confirm, running, completed with a result. With
// snapshots, the job's Info is taken after every event, as the
// orchestrator's loop does to save and announce each change.
func BenchmarkJob(b *testing.B) {
	spec := testSpec()
	spec.EnoughBids = 5
	bids := benchBids(5)
	reached := make([]string, len(bids))
	for i, bid := range bids {
		reached[i] = bid.Node.PeerID
	}
	result := &types.Result{Stdout: "bafyout", Stderr: "bafyerr", Files: map[string]string{"out.txt": "bafyfile"}, DurationMillis: 3}
	for _, snapshots := range []bool{false, true} {
		b.Run(map[bool]string{false: "pure", true: "snapshots"}[snapshots], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchJob(b, spec, bids, reached, result, snapshots)
			}
		})
	}
}

func benchJob(b *testing.B, spec JobSpec, bids []types.Bid, reached []string, result *types.Result, snapshots bool) {
	j, err := NewJob(spec, JobConfig{Requester: "me"}, t0)
	if err != nil {
		b.Fatal(err)
	}
	now, d := t0, jobDriver{job: j, snapshots: snapshots}
	tick := func() time.Time { now = now.Add(ms); return now }
	j.Start(tick())
	d.drain()
	j.Published(1, reached, tick())
	d.drain()
	for _, bid := range bids {
		j.Bid(bid, tick())
		d.drain()
	}
	j.Confirmed(types.Confirm{JobID: spec.ID, AllocationID: d.alloc, Epoch: 1, LockExpiry: now.Add(time.Minute)}, tick())
	d.drain()
	j.Status(types.Status{JobID: spec.ID, AllocationID: d.alloc, State: types.AllocRunning}, tick())
	d.drain()
	j.Status(types.Status{JobID: spec.ID, AllocationID: d.alloc, State: types.AllocCompleted, Result: result}, tick())
	d.drain()
	if j.info.State != types.JobCompleted {
		b.Fatalf("job %s: %s", j.info.State, j.info.Reason)
	}
}

// jobDriver plays the shell: it drains the job's actions after each event,
// noting the allocation offered, and takes a snapshot if asked to.
type jobDriver struct {
	job       *Job
	snapshots bool
	alloc     types.AllocationID
}

func (d *jobDriver) drain() {
	for _, act := range d.job.Actions() {
		if acc, ok := act.(SendAccept); ok {
			d.alloc = acc.Accept.AllocationID
		}
	}
	if d.snapshots {
		_ = d.job.Info()
	}
}

// BenchmarkArmManyJobs measures one event of the orchestrator's loop while
// many jobs are active: the event reaches one job (a Tick with nothing due,
// then the flush every job event gets), and the loop re-arms its timer on
// the earliest deadline of all of them. Every job sits in an auction with
// an hour-long window, its bid request never published.
func BenchmarkArmManyJobs(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			net := newFakeNet()
			net.gate = make(chan struct{}) // never opened: publishes wait for Close
			o, err := New(Config{Self: "requester", Defaults: Defaults{BidWindow: time.Hour}}, net, nil)
			if err != nil {
				b.Fatal(err)
			}
			net.o = o
			defer o.Close()
			ctx := b.Context()
			ids := make([]types.JobID, n)
			for i := range ids {
				info, err := o.Submit(ctx, spec(64<<20, 0))
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = info.ID
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				id := ids[i%n]
				i++
				err := o.call(ctx, func(now time.Time) error {
					e := o.jobs[id]
					e.job.Tick(now)
					o.flush(e)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

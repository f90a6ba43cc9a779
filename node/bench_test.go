package node

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Benchmarks of a provider's hot paths: the bid decision, the capability
// ledger, and the Node actor's answers to a requester.

var benchReasons []string

// BenchmarkDecide runs the default bid pipeline on a snapshot: a request
// that passes every check (the node bids), and one that fails the last
// check, resources, because the node is busy (the node declines, saying why).
func BenchmarkDecide(b *testing.B) {
	checks := DefaultChecks()
	busy := testRequest()
	busy.Resources.Memory = 2 * gib
	for name, req := range map[string]*types.BidRequest{"bid": testRequest(), "busy": busy} {
		b.Run(name, func(b *testing.B) {
			s := testSnapshot()
			b.ReportAllocs()
			for b.Loop() {
				benchReasons = Decide(checks, req, s)
			}
		})
	}
	if got := Decide(checks, testRequest(), testSnapshot()); got != nil {
		b.Fatalf("the fitting request was declined: %q", got)
	}
	if got := Decide(checks, busy, testSnapshot()); len(got) != 1 {
		b.Fatalf("the busy request: %q", got)
	}
}

// BenchmarkLedgerCycle is one allocation's whole life in the ledger: the
// hold behind the bid, the lock at Accept, the start at Invocation and the
// release at the end, beside ten other running allocations.
func BenchmarkLedgerCycle(b *testing.B) {
	l := NewLedger(res(64, 256*gib))
	now := t0
	for i := range 10 {
		alloc := types.AllocationID(fmt.Sprintf("other-%d", i))
		lk := holdLock(b, l, alloc, types.JobID(alloc), "peer", res(1, gib), now, time.Minute)
		if _, err := l.Start(alloc, lk.Epoch, now); err != nil {
			b.Fatal(err)
		}
	}
	need := res(2, 4*gib)
	b.ReportAllocs()
	for b.Loop() {
		lk := holdLock(b, l, "a", "j", "peer", need, now, 10*time.Second)
		if _, err := l.Start("a", lk.Epoch, now); err != nil {
			b.Fatal(err)
		}
		if _, ok := l.Release("a"); !ok {
			b.Fatal("nothing to release")
		}
	}
}

// newBenchNode is newHarness for a benchmark: a Node with an in-memory
// store, fake network and fake executor, closed when b ends, that names an
// allocation after its job.
func newBenchNode(b *testing.B) (*Node, *fakeNet) { return newBenchNodeIDs(b, jobNamesAlloc) }

// newBenchNodeIDs is newBenchNode naming allocations with newID.
func newBenchNodeIDs(b *testing.B, newID func(types.JobID) types.AllocationID) (*Node, *fakeNet) {
	b.Helper()
	net := &fakeNet{requester: newMemBlobs(), sent: make(chan types.Message, 64)}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	n, err := New(system, Config{
		ID:        types.NodeID{PeerID: "12D3KooWProvider"},
		Record:    types.CapabilityRecord{Offered: offered, Price: types.Credit, Executors: []string{"wasm"}},
		Executors: map[string]jobs.Executor{"wasm": fakeExec{}},
		WorkDir:   b.TempDir(), Clock: time.Now, NewID: newID,
	}, net, newMemStore(), newMemBlobs())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	return n, net
}

// BenchmarkNodeInfo is one ask of the Node actor that does nearly nothing:
// the floor under every request a requester makes of a node.
func BenchmarkNodeInfo(b *testing.B) {
	n, _ := newBenchNode(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.Info(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNodeAcceptCancel is a bid, an Accept (lock and persist,
// answered with a Confirm) and a Cancel of that allocation (release, and
// the record's deletion with an audit entry) per op.
func BenchmarkNodeAcceptCancel(b *testing.B) {
	n, net := newBenchNode(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++ // an allocation ID is never used twice
		id := types.AllocationID(fmt.Sprint("a", i))
		r := types.Resources{CPU: 1000, Memory: 1 << 20}
		n.HandleBidRequest(requester, &types.BidRequest{JobID: types.JobID(id), Requester: requester, Executor: "wasm", Resources: r, Deadline: time.Now().Add(time.Hour)})
		<-net.sent
		acc := &types.Accept{JobID: types.JobID(id), AllocationID: id, Resources: r}
		cancel := &types.Cancel{JobID: types.JobID(id), AllocationID: id, Reason: "bench"}
		msg, err := n.Accept(ctx, requester, acc)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := msg.(*types.Confirm); !ok {
			b.Fatalf("accept answered %#v", msg)
		}
		st, err := n.Cancel(ctx, requester, cancel)
		if err != nil {
			b.Fatal(err)
		}
		if st.(*types.Status).State != types.AllocCancelled {
			b.Fatalf("cancel answered %#v", st)
		}
	}
}

// BenchmarkNodeBidRequest is a bid request handled by the Node actor up to
// the bid it sends: snapshot, checks, hold. The request is for the same job
// every time, so each hold (of a new allocation: an allocation ID never
// repeats) replaces the last.
func BenchmarkNodeBidRequest(b *testing.B) {
	n, net := newBenchNodeIDs(b, randomID)
	req := &types.BidRequest{JobID: "j", Requester: requester, Executor: "wasm", Resources: types.Resources{CPU: 1000, Memory: 1 << 20}, Deadline: time.Now().Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		n.HandleBidRequest(requester, req)
		if m := <-net.sent; m.Kind() != types.KindBid {
			b.Fatalf("no bid: %+v", m)
		}
	}
}

// BenchmarkRunSupervision compares two ways to contain a panic in an
// allocation's run, over 10,000 runs of a program that does nothing: a
// goroutine whose run recovers (what the Node does), and a child actor per
// run under a protoactor supervisor that stops it, protoactor's own
// supervision. Besides the time per run it reports the heap that stays in
// use once the runs are over: each actor puts a key in the actor system's
// process registry, whose 32,768 maps keep their storage once used.
func BenchmarkRunSupervision(b *testing.B) {
	const runs = 10_000
	for _, mode := range []string{"goroutine", "child-actor"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
				before := heapInUse()
				start := time.Now()
				if mode == "goroutine" {
					runGoroutines(runs)
				} else {
					runChildActors(b, system, runs)
				}
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/runs, "ns/run")
				b.ReportMetric(float64(heapInUse()-before)/(1<<20), "MiB-kept")
				system.Shutdown()
			}
		})
	}
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// runGoroutines runs n times a goroutine that recovers, one at a time.
func runGoroutines(n int) {
	done := make(chan types.Status)
	for range n {
		go func() {
			var st types.Status
			defer func() {
				if r := recover(); r != nil {
					st.State = types.AllocFailed
				}
				done <- st
			}()
			st.State = types.AllocCompleted
		}()
		<-done
	}
}

// runChildActors has a parent actor spawn n children, one at a time, each
// running its program as it starts and reporting to its parent; the
// parent's supervisor would stop a child that panicked.
func runChildActors(b *testing.B, system *actor.ActorSystem, n int) {
	done := make(chan types.Status)
	child := actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*actor.Started); ok {
			c.Send(c.Parent(), types.Status{State: types.AllocCompleted})
			c.Stop(c.Self())
		}
	})
	stop := actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })
	parent := actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case string:
			c.Spawn(child)
		case types.Status:
			done <- m
		}
	}, actor.WithSupervisor(stop))
	pid := system.Root.Spawn(parent)
	for range n {
		system.Root.Send(pid, "run")
		<-done
	}
	if err := system.Root.PoisonFuture(pid).Wait(); err != nil {
		b.Fatal(err)
	}
}

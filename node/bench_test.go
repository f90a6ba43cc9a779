package node

import (
	"context"
	"fmt"
	"log/slog"
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
		lk, err := l.Lock(alloc, types.JobID(alloc), "peer", res(1, gib), now, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.Start(alloc, lk.Epoch, now); err != nil {
			b.Fatal(err)
		}
	}
	need := res(2, 4*gib)
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Hold("j", need, now, now.Add(3*time.Second)); err != nil {
			b.Fatal(err)
		}
		lk, err := l.Lock("a", "j", "peer", need, now, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.Start("a", lk.Epoch, now); err != nil {
			b.Fatal(err)
		}
		if _, ok := l.Release("a"); !ok {
			b.Fatal("nothing to release")
		}
	}
}

// newBenchNode is newHarness for a benchmark: a Node with an in-memory
// store, fake network and fake executor, closed when b ends.
func newBenchNode(b *testing.B) (*Node, *fakeNet) {
	b.Helper()
	net := &fakeNet{requester: newMemBlobs(), sent: make(chan types.Message, 64)}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	n, err := New(system, Config{
		ID:        types.NodeID{PeerID: "12D3KooWProvider"},
		Record:    types.CapabilityRecord{Offered: offered, Price: 1, Executors: []string{"wasm"}},
		Executors: map[string]jobs.Executor{"wasm": fakeExec{}},
		WorkDir:   b.TempDir(), Clock: time.Now,
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

// BenchmarkNodeAcceptCancel is an Accept (lock and persist, answered with a
// Confirm) and a Cancel of that allocation (release and persist) per op.
func BenchmarkNodeAcceptCancel(b *testing.B) {
	n, _ := newBenchNode(b)
	ctx := context.Background()
	acc := &types.Accept{JobID: "j", AllocationID: "a1", Resources: types.Resources{CPU: 1000, Memory: 1 << 20}}
	cancel := &types.Cancel{JobID: "j", AllocationID: "a1", Reason: "bench"}
	b.ReportAllocs()
	for b.Loop() {
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
// every time, so each hold replaces the last.
func BenchmarkNodeBidRequest(b *testing.B) {
	n, net := newBenchNode(b)
	req := &types.BidRequest{JobID: "j", Requester: requester, Executor: "wasm", Resources: types.Resources{CPU: 1000, Memory: 1 << 20}, Deadline: time.Now().Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		n.HandleBidRequest(requester, req)
		if _, ok := (<-net.sent).(*types.Bid); !ok {
			b.Fatal("no bid")
		}
	}
}

package node

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

const (
	allowed   = "12D3KooWAllowed"
	stranger  = "12D3KooWStranger"
	refusedTo = "admission: requester 12D3KooWStranger is not on this node's allowlist"
)

func TestAdmission(t *testing.T) {
	var open Admission
	if !open.Open() || !open.Admits(stranger) || open.String() != "open" {
		t.Fatalf("the zero Admission is not open: %v", open)
	}
	list := Allowlist(allowed, "12D3KooWOther")
	if list.Open() || !list.Admits(allowed) || list.Admits(stranger) || list.Admits("") {
		t.Fatalf("allowlist %v", list)
	}
	if got := list.refusal(stranger); got != refusedTo {
		t.Fatalf("refusal %q", got)
	}
	if err := list.check(stranger); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("check: %v", err)
	}
	if none := Allowlist(); none.Open() || none.Admits(allowed) {
		t.Fatal("an empty allowlist admits someone")
	}
}

// TestAdmissionCheckComesFirst: a refused requester reads only that it is
// refused, even when other checks would fail too.
func TestAdmissionCheckComesFirst(t *testing.T) {
	s := testSnapshot()
	s.Admission = Allowlist(allowed)
	req := testRequest()
	req.Requester, req.Executor = stranger, "docker"
	if got := Decide(DefaultChecks(), req, s); !slices.Equal(got, []string{refusedTo}) {
		t.Fatalf("Decide = %q", got)
	}
	req.Requester, req.Executor = allowed, "wasm"
	if got := Decide(DefaultChecks(), req, s); got != nil {
		t.Fatalf("an admitted requester was declined: %q", got)
	}
}

// newAdmissionNode starts a Node with adm on st.
func newAdmissionNode(t *testing.T, st *memStore, adm Admission) (*Node, *fakeNet) {
	t.Helper()
	net := &fakeNet{requester: newMemBlobs(), sent: make(chan types.Message, 8)}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	n, err := New(system, Config{
		ID:        types.NodeID{PeerID: "12D3KooWProvider"},
		Record:    types.CapabilityRecord{Offered: offered, Price: types.Credit, Executors: []string{"wasm"}},
		Executors: map[string]jobs.Executor{"wasm": fakeExec{}},
		Admission: adm,
		WorkDir:   t.TempDir(), Clock: time.Now, NewID: jobNamesAlloc,
	}, net, st, newMemBlobs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, net
}

// TestAdmissionRefusesBidAcceptAndInvoke: a requester off the allowlist gets
// a Decline saying so, not marked busy (it would never get a bid), and its
// Accept and Invocation are refused too, since it can send them without a bid.
func TestAdmissionRefusesBidAcceptAndInvoke(t *testing.T) {
	n, net := newAdmissionNode(t, newMemStore(), Allowlist(allowed))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bidRequest := func(from string) types.Message {
		n.HandleBidRequest(from, &types.BidRequest{JobID: "j", Requester: from, Executor: "wasm",
			Resources: types.Resources{CPU: 1000, Memory: 1 << 20}, Deadline: time.Now().Add(time.Minute)})
		return <-net.sent
	}
	if d, ok := bidRequest(stranger).(*types.Decline); !ok || !slices.Equal(d.Reasons, []string{refusedTo}) || d.Busy {
		t.Fatalf("the stranger's bid request: %#v", d)
	}
	if b, ok := bidRequest(allowed).(*types.Bid); !ok || b.JobID != "j" {
		t.Fatalf("the allowed requester's bid request: %#v", b)
	}

	res := types.Resources{CPU: 1000, Memory: 1 << 20}
	reply, err := n.Accept(ctx, stranger, &types.Accept{JobID: "j", AllocationID: "a1", Resources: res})
	if r, ok := reply.(*types.Reject); err != nil || !ok || r.Reason != refusedTo || r.AllocationID != "a1" {
		t.Fatalf("the stranger's accept: %#v, %v", reply, err)
	}
	err = n.Invoke(ctx, stranger, &types.Invocation{AllocationID: "a1"}, func(*types.Status) error { return nil })
	if !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("the stranger's invocation: %v", err)
	}
	if c, ok := bidAndAccept(t, n, net, allowed, "a2", res).(*types.Confirm); !ok || c.Epoch == 0 {
		t.Fatalf("the allowed requester's accept: %#v", c)
	}
}

// TestAdmissionAfterRestart: a lock confirmed while the node was open
// survives a restart under an allowlist that leaves its requester out, but
// cannot be invoked.
func TestAdmissionAfterRestart(t *testing.T) {
	st := newMemStore()
	n, net := newAdmissionNode(t, st, Admission{})
	c, ok := bidAndAccept(t, n, net, stranger, "a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	if !ok {
		t.Fatalf("accept while open: %#v", c)
	}
	n.Close()
	n, _ = newAdmissionNode(t, st, Allowlist(allowed))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := n.Invoke(ctx, stranger, &types.Invocation{AllocationID: "a1", Epoch: c.Epoch,
		Task: types.Task{Executor: "wasm", Resources: types.Resources{CPU: 1000}}}, func(*types.Status) error { return nil })
	if !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("invoking a restored lock of a requester no longer admitted: %v", err)
	}
}

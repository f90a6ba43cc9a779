package node

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// A panicking executor fails its allocation, as the node's fault, and the
// node lives on: the capability is free and the next job runs.
func TestPanickingExecutorFailsOnlyItsAllocation(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	c := h.accept("a1", types.Resources{CPU: 2000, Memory: 1 << 20}).(*types.Confirm)
	sts, err := h.invoke("a1", c.Epoch, "panic")
	if err != nil {
		t.Fatal(err)
	}
	last := sts[len(sts)-1]
	if last.State != types.AllocFailed || last.Fault != types.FaultNode || !strings.Contains(last.Reason, "panicked: the executor lost its mind") {
		t.Fatalf("last status %+v", last)
	}
	var rec Allocation
	if ok, _ := h.store.Lookup(AllocationPrefix+"a1", &rec); !ok || rec.State != types.AllocFailed || rec.Fault != types.FaultNode {
		t.Fatalf("record %+v", rec)
	}
	c = h.accept("a2", types.Resources{CPU: 2000, Memory: 1 << 20}).(*types.Confirm)
	if sts, err := h.invoke("a2", c.Epoch, "x"); err != nil || sts[len(sts)-1].State != types.AllocCompleted {
		t.Fatalf("the next job after the panic: %+v, %v", sts, err)
	}
}

// A panic in the node's own step is contained too: the request that
// caused it is answered with ErrInternal at once, and the node serves the
// next one.
func TestPanickingStepAnswersItsRequestAndTheNodeGoesOn(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	_, err := h.node.ask(h.ctx(), func(*Machine, Ticket, time.Time) { panic("a bug") }, nil)
	if !errors.Is(err, ErrInternal) {
		t.Fatalf("err = %v, want ErrInternal", err)
	}
	if c, ok := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm); !ok || c.Epoch == 0 {
		t.Fatalf("the node after the panic: %#v", c)
	}
}

// failingStore is a Store whose writes fail while full is set.
type failingStore struct {
	*memStore
	mu   sync.Mutex
	full bool
}

func (f *failingStore) Put(key string, v any) error {
	f.mu.Lock()
	full := f.full
	f.mu.Unlock()
	if full {
		return errors.New("no space left on device")
	}
	return f.memStore.Put(key, v)
}

func (f *failingStore) Write(put map[string]any, del []string) error {
	f.mu.Lock()
	full := f.full
	f.mu.Unlock()
	if full {
		return errors.New("no space left on device")
	}
	return f.memStore.Write(put, del)
}

// A node whose disk is full promises nothing it cannot record: the accept
// is rejected saying why, nothing stays locked (the bid's hold stands), and
// once the disk has room the same accept succeeds.
func TestFullDiskRejectsAccepts(t *testing.T) {
	st := &failingStore{memStore: newMemStore(), full: true}
	h := newHarnessWith(t, st, 0)
	r, ok := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Reject)
	if !ok || !strings.Contains(r.Reason, "not recorded") || !strings.Contains(r.Reason, "no space left") {
		t.Fatalf("want a reject saying why, got %#v", r)
	}
	if in, _ := h.node.Info(h.ctx()); in.Locked != 0 || in.Holds != 1 {
		t.Fatalf("an unrecorded lock holds capability: %+v", in)
	}
	st.mu.Lock()
	st.full = false
	st.mu.Unlock()
	again, err := h.node.Accept(h.ctx(), requester, &types.Accept{JobID: "a1", AllocationID: "a1", Resources: types.Resources{CPU: 1000, Memory: 1 << 20}})
	if _, ok := again.(*types.Confirm); err != nil || !ok {
		t.Fatal("the accept after the disk freed up was not confirmed")
	}
}

// The mailbox is bounded without spinning: while the actor is busy and
// mailboxSize messages wait, a bid request is dropped (and counted) and a
// request gives up when its context ends, instead of blocking for good.
func TestFullMailboxDropsBidsAndHonoursContexts(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	busy, free := make(chan struct{}), make(chan struct{})
	h.node.post(event{fn: func(*Machine, time.Time) { close(busy); <-free }})
	<-busy
	req := &types.BidRequest{JobID: "j", Requester: requester, Executor: "wasm", Resources: types.Resources{CPU: 100, Memory: 1 << 20}, Deadline: time.Now().Add(time.Minute)}
	for range mailboxSize + 10 {
		h.node.HandleBidRequest(requester, req)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.node.Accept(ctx, requester, &types.Accept{JobID: "j", AllocationID: "a1", Resources: types.Resources{CPU: 100}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an accept to a full mailbox: %v, want the context's deadline", err)
	}
	close(free)
	in, err := h.node.Info(h.ctx())
	if err != nil || in.Dropped != 10 {
		t.Fatalf("info %+v, %v: want 10 bid requests dropped", in, err)
	}
}

package node

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// While an allocation runs, Invoke repeats its status every quarter of the
// invocation's lease, and stops with the allocation.
func TestInvokeSendsHeartbeatsEveryQuarterLease(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	var mu sync.Mutex
	var got []types.Status
	done := make(chan error, 1)
	go func() {
		done <- h.node.Invoke(h.ctx(), requester, &types.Invocation{
			JobID: "j", AllocationID: "a1", Epoch: c.Epoch, Lease: 200 * time.Millisecond,
			Task: types.Task{Executor: "wasm", Module: h.module, Args: []string{"block"}, Resources: types.Resources{CPU: 1000, Memory: 1 << 20}},
		}, func(st *types.Status) error {
			mu.Lock()
			got = append(got, *st)
			mu.Unlock()
			return nil
		})
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitUntil(t, func() bool { return count() >= 5 }) // running, then four heartbeats 50ms apart
	if _, err := h.node.Cancel(h.ctx(), requester, &types.Cancel{AllocationID: "a1", Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	last := got[len(got)-1]
	for _, st := range got[:len(got)-1] {
		if st.State != types.AllocRunning || st.AllocationID != "a1" {
			t.Fatalf("heartbeat %+v", st)
		}
	}
	if last.State != types.AllocCancelled {
		t.Fatalf("last status %+v", last)
	}
}

func TestHeartbeatInterval(t *testing.T) {
	n := &Node{cfg: Config{Heartbeat: defaultHeartbeat}}
	for lease, want := range map[time.Duration]time.Duration{
		0:                      defaultHeartbeat,
		time.Second:            250 * time.Millisecond,
		40 * time.Millisecond:  MinHeartbeat,
		time.Hour:              MaxHeartbeat,
		-time.Second:           defaultHeartbeat,
		100 * time.Millisecond: 25 * time.Millisecond,
	} {
		if got := n.heartbeat(&types.Invocation{Lease: lease}); got != want {
			t.Errorf("lease %s: heartbeat every %s, want %s", lease, got, want)
		}
	}
}

// A node that closes breaks its invocation streams at once rather than
// leaving them quiet until the requester's lease runs out.
func TestInvokeEndsWhenTheNodeCloses(t *testing.T) {
	h := newHarness(t, newMemStore(), 0)
	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	done := make(chan error, 1)
	go func() {
		_, err := h.invoke("a1", c.Epoch, "block")
		done <- err
	}()
	waitUntil(t, func() bool { in, _ := h.node.Info(h.ctx()); return in.Running == 1 })
	h.node.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Invoke returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Invoke still running after Close")
	}
}

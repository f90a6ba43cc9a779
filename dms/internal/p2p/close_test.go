package p2p

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// TestCloseStopsGoroutines closes a host in the middle of everything it
// runs (discovery, a subscription, a stream handler blocked on its context)
// and checks that none of its goroutines outlives Close. Its peer is a bare
// libp2p host, so the Host under test is the only one in the process.
func TestCloseStopsGoroutines(t *testing.T) {
	h, err := New(context.Background(), testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SubscribeBidRequests(func(string, *types.Envelope, *types.BidRequest) {}); err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	var finished atomic.Bool
	h.HandleStream(InvokeProtocol, func(ctx context.Context, _ string, _ *types.Envelope, _ types.Message, _ func(types.Message) error) error {
		close(entered)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // a slow cleanup Close must wait for
		finished.Store(true)
		return ctx.Err()
	})
	key := newKey(t)
	raw := newRawHost(t, key, false)
	ctx := testCtx(t, 10*time.Second)
	if err := raw.Connect(ctx, addrInfo(h)); err != nil {
		t.Fatal(err)
	}
	s, err := raw.NewStream(ctx, h.host.ID(), InvokeProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write(sealedFrame(t, key, &types.Invocation{JobID: "j"})); err != nil {
		t.Fatal(err)
	}
	<-entered

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Fatal("Close returned before the handler did")
	}
	if stacks := hostGoroutines(); len(stacks) > 0 {
		t.Fatalf("goroutines of the closed host still run:\n%s", strings.Join(stacks, "\n\n"))
	}
	if err := h.SubscribeBidRequests(func(string, *types.Envelope, *types.BidRequest) {}); err == nil {
		t.Fatal("subscribed on a closed host")
	}
}

// hostGoroutines returns the stacks of goroutines running code of a *Host.
func hostGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "internal/p2p.(*Host)") {
			out = append(out, g)
		}
	}
	return out
}

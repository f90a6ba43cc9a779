package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/opendms/dms/types"
)

// BenchmarkRequest measures a request/response round trip between two
// connected Hosts, for an accept (signed, confirmed signed) and a cancel
// (neither signed on a pair stream): "pair", as Request sends it, on the
// pair's long-lived stream; "stream", as to a peer that serves only the
// protocols of a message each, on a new stream of the request's protocol,
// both messages sealed and verified.
func BenchmarkRequest(b *testing.B) {
	server := newTestHost(b, testConfig(b))
	client := newTestHost(b, testConfig(b, server.Addrs()...))
	server.Handle(AcceptProtocol, func(_ context.Context, _ string, _ *types.Envelope, msg types.Message) (types.Message, error) {
		return &types.Confirm{JobID: msg.(*types.Accept).JobID}, nil
	})
	server.Handle(CancelProtocol, func(_ context.Context, _ string, _ *types.Envelope, msg types.Message) (types.Message, error) {
		return &types.Status{JobID: msg.(*types.Cancel).JobID, State: types.AllocRunning}, nil
	})
	ctx := testCtx(b, time.Minute)
	for _, m := range []struct {
		proto protocol.ID
		msg   types.Message
	}{
		{AcceptProtocol, &types.Accept{JobID: "j", AllocationID: "a"}},
		{CancelProtocol, &types.Cancel{JobID: "j", AllocationID: "a"}},
	} {
		for _, way := range []string{"pair", "stream"} {
			send := func() error {
				_, err := client.Request(ctx, server.ID(), server.Addrs(), m.proto, m.msg)
				return err
			}
			if way == "stream" {
				send = func() error {
					_, _, err := client.request(ctx, server.ID(), nil, m.proto, func(s network.Stream) error { return client.writeMessage(s, m.msg) })
					return err
				}
			}
			b.Run(string(m.msg.Kind())+"/"+way, func(b *testing.B) {
				if err := send(); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if err := send(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkStreamFrame measures one pushed running Status frame (a
// heartbeat), written and read bare on the invocation stream.
func BenchmarkStreamFrame(b *testing.B) {
	node := newTestHost(b, testConfig(b))
	requester := newTestHost(b, testConfig(b, node.Addrs()...))
	node.HandleStream(InvokeProtocol, func(ctx context.Context, _ string, _ *types.Envelope, _ types.Message, send func(types.Message) error) error {
		for ctx.Err() == nil {
			if err := send(&types.Status{JobID: "j", State: types.AllocRunning}); err != nil {
				return nil
			}
		}
		return nil
	})
	ctx := testCtx(b, time.Minute)
	st, err := requester.OpenStream(ctx, node.ID(), node.Addrs(), InvokeProtocol, &types.Invocation{JobID: "j"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for b.Loop() {
		if _, err := st.Recv(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGossipRepair measures, with the default GossipRepair (2s), the
// time from gossipsub losing a connected peer to both being on each other's
// topic again, for each way gossipsub loses one (no spare fault: the first
// hand-back succeeds), and from gossipsub forgetting a peer's topics to the
// same. Starting the hosts is not timed.
func BenchmarkGossipRepair(b *testing.B) {
	for _, f := range gossipFaults {
		f.openFails, f.resets = min(f.openFails, f.lost), min(f.resets, f.lost)
		b.Run(f.name, func(b *testing.B) {
			benchRejoin(b, func() gossipPair { return loseGossipPeer(b, f, 0) })
		})
	}
	b.Run("topics forgotten", func(b *testing.B) {
		benchRejoin(b, func() gossipPair { return forgetGossipTopics(b, 0) })
	})
}

// benchRejoin reports the mean time from the pair lose returns to both
// being on each other's topic again; lose itself is not timed.
func benchRejoin(b *testing.B, lose func() gossipPair) {
	var total time.Duration
	for range b.N {
		b.StopTimer()
		g := lose()
		b.StartTimer()
		lost := time.Now()
		waitFor(b, 30*time.Second, "a and b on each other's topic", g.onEachOthersTopic)
		total += time.Since(lost)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/rejoin")
}

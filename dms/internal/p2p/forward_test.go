package p2p

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// leader answers a forwarded call as the queue's leader would: with its
// stdin, and the instance that ran it.
func leader(_ context.Context, _ string, req *types.CallRequest) *types.CallReply {
	return &types.CallReply{Status: types.CallOK, Stdout: req.Stdin, Node: "12D3KooWProvider", Job: "job/" + string(req.Allocation)}
}

// forwardPair starts a gateway serving forwards with fn and another
// connected to it.
func forwardPair(t testing.TB, fn CallHandler) (to, from *Host) {
	t.Helper()
	to = newTestHost(t, testConfig(t))
	from = newTestHost(t, testConfig(t, to.Addrs()...))
	to.HandleForwards(fn)
	return to, from
}

func forward(t testing.TB, from, to *Host, stdin string) *types.CallReply {
	t.Helper()
	req := &types.CallRequest{Allocation: "acct/fn/3", Stdin: []byte(stdin)}
	reply, err := from.Forward(testCtx(t, 10*time.Second), to.ID(), to.Addrs(), req)
	if err != nil {
		t.Fatalf("forward %q: %v", stdin, err)
	}
	if reply.Status != types.CallOK || string(reply.Stdout) != stdin || reply.Node != "12D3KooWProvider" || reply.Job != "job/acct/fn/3" {
		t.Fatalf("forward %q: got %+v", stdin, reply)
	}
	return reply
}

// TestForwardMultiplexed: concurrent forwards share one stream, each gets
// its own reply with the instance that ran it, and they are counted as
// forwards, not calls.
func TestForwardMultiplexed(t *testing.T) {
	const n = 50
	to, from := forwardPair(t, leader)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { forward(t, from, to, fmt.Sprint("forward ", i)) })
	}
	wg.Wait()
	st := from.Stats()
	if st.Forwards.StreamsOut != 1 || st.Forwards.InFlightOut != 0 || st.Calls.StreamsOut != 0 {
		t.Fatalf("forwarder stats: forwards %+v, calls %+v; want one forward stream", st.Forwards, st.Calls)
	}
	if st := to.Stats(); st.Forwards.StreamsIn != 1 || st.Calls.StreamsIn != 0 {
		t.Fatalf("leader stats: forwards %+v, calls %+v", st.Forwards, st.Calls)
	}
	tr := from.Traffic()
	if tr.Frames[ForwardProtocol] != n || tr.Frames[CallProtocol] != 0 || tr.ForwardBytes == 0 || tr.CallBytes != 0 {
		t.Fatalf("forwarder traffic %+v, want %d forward frames", tr, n)
	}
	if !from.host.ConnManager().IsProtected(to.host.ID(), keepTag) || !to.host.ConnManager().IsProtected(from.host.ID(), keepTag) {
		t.Fatal("a connection with forward streams is not protected from trimming")
	}
}

// TestForwardRefusal: a leader's refusal crosses with its HTTP status and
// retry-after; one the encoding refuses (not an HTTP error status) reaches
// the forwarder as a node error instead of never.
func TestForwardRefusal(t *testing.T) {
	to, from := forwardPair(t, func(_ context.Context, _ string, req *types.CallRequest) *types.CallReply {
		if string(req.Stdin) == "bad" {
			return &types.CallReply{Status: types.CallBusy, Code: 200}
		}
		return &types.CallReply{Status: types.CallBusy, Code: 429, RetryAfter: 3 * time.Second}
	})
	ctx := testCtx(t, 10*time.Second)
	reply, err := from.Forward(ctx, to.ID(), to.Addrs(), &types.CallRequest{Allocation: "a/f/1"})
	if err != nil || reply.Code != 429 || reply.RetryAfter != 3*time.Second {
		t.Fatalf("refused forward: %v, %+v", err, reply)
	}
	reply, err = from.Forward(ctx, to.ID(), nil, &types.CallRequest{Allocation: "a/f/1", Stdin: []byte("bad")})
	if err != nil || reply.Status != types.CallNodeError || reply.Code != 0 {
		t.Fatalf("forward answered with a bad code: %v, %+v", err, reply)
	}
}

// TestForwardReceiverKilled: when the leader goes away, every forward in
// flight to it fails at once with ErrCallStream.
func TestForwardReceiverKilled(t *testing.T) {
	to, from := forwardPair(t, blocking)
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := from.Forward(testCtx(t, 30*time.Second), to.ID(), to.Addrs(), &types.CallRequest{Allocation: "a/f/1", Stdin: []byte("block")})
			errs <- err
		}()
	}
	waitFor(t, 10*time.Second, "forwards running", func() bool { return to.Stats().Forwards.InFlightIn == n })
	start := time.Now()
	if err := to.Close(); err != nil {
		t.Fatal(err)
	}
	failAll(t, errs, n)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("in-flight forwards failed %s after the leader closed", d)
	}
	waitFor(t, 5*time.Second, "the connection unprotected", func() bool {
		return !from.host.ConnManager().IsProtected(to.host.ID(), keepTag)
	})
}

// TestForwardsAndCallsApart: one host serving calls and forwards answers
// each with its own handler on its own streams, counts each apart, and a
// host that serves only calls refuses forwards.
func TestForwardsAndCallsApart(t *testing.T) {
	server, client := callPair(t, echo)
	server.HandleForwards(leader)
	call(t, client, server, "a call")
	forward(t, client, server, "a forward")
	if st := client.Stats(); st.Calls.StreamsOut != 1 || st.Forwards.StreamsOut != 1 {
		t.Fatalf("client stats: calls %+v, forwards %+v; want a stream of each", st.Calls, st.Forwards)
	}
	if st := server.Stats(); st.Calls.StreamsIn != 1 || st.Forwards.StreamsIn != 1 {
		t.Fatalf("server stats: calls %+v, forwards %+v; want a stream of each", st.Calls, st.Forwards)
	}
	callsOnly, other := callPair(t, echo)
	_, err := other.Forward(testCtx(t, 10*time.Second), callsOnly.ID(), callsOnly.Addrs(), &types.CallRequest{Allocation: "a/f/1"})
	if !errors.Is(err, ErrCallStream) {
		t.Fatalf("forward to a host serving only calls: %v, want ErrCallStream", err)
	}
	// A replayed Seq on a forward stream is refused and counted as a forward's.
	raw := newRawHost(t, newKey(t), false)
	if err := raw.Connect(testCtx(t, 10*time.Second), addrInfo(server)); err != nil {
		t.Fatal(err)
	}
	s, err := raw.NewStream(testCtx(t, 10*time.Second), server.host.ID(), ForwardProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	_, _ = s.Write(append(requestFrame(t, 2), requestFrame(t, 2)...))
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(s)
	for err == nil {
		_, err = readReply(r)
	}
	waitFor(t, 5*time.Second, "the replay counted", func() bool { return server.Stats().Forwards.Refused[ReasonReplayed] == 1 })
	if st := server.Stats().Calls; len(st.Refused) != 0 {
		t.Fatalf("a forward's refusal counted as a call's: %+v", st)
	}
}

// BenchmarkForwardRoundTrip measures one gateway's forwards, one after
// another, and from 16*GOMAXPROCS callers at once.
func BenchmarkForwardRoundTrip(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(tr, func(b *testing.B) {
			cfg := testConfig(b)
			cfg.Listen = []string{map[string]string{"tcp": "/ip4/127.0.0.1/tcp/0", "quic": "/ip4/127.0.0.1/udp/0/quic-v1"}[tr]}
			to := newTestHost(b, cfg)
			to.HandleForwards(leader)
			from := newTestHost(b, testConfig(b, to.Addrs()...))
			req := &types.CallRequest{Allocation: "acct/fn/3", Stdin: bytes.Repeat([]byte{'x'}, 100)}
			ctx := context.Background()
			if _, err := from.Forward(ctx, to.ID(), to.Addrs(), req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.Run("serial", func(b *testing.B) {
				for b.Loop() {
					if _, err := from.Forward(ctx, to.ID(), nil, req); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := from.Forward(ctx, to.ID(), nil, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

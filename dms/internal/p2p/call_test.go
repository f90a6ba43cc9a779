package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/opendms/dms/types"
)

// echo answers a call with its stdin.
func echo(_ context.Context, _ string, req *types.CallRequest) *types.CallReply {
	return &types.CallReply{Status: types.CallOK, Stdout: req.Stdin}
}

// callPair starts a server serving fn and a client connected to it.
func callPair(t testing.TB, fn CallHandler) (server, client *Host) {
	t.Helper()
	server = newTestHost(t, testConfig(t))
	client = newTestHost(t, testConfig(t, server.Addrs()...))
	server.HandleCalls(fn)
	return server, client
}

func call(t testing.TB, client, server *Host, stdin string) *types.CallReply {
	t.Helper()
	reply, err := client.Call(testCtx(t, 10*time.Second), server.ID(), server.Addrs(), &types.CallRequest{Allocation: "a", Stdin: []byte(stdin)})
	if err != nil {
		t.Fatalf("call %q: %v", stdin, err)
	}
	if reply.Status != types.CallOK || string(reply.Stdout) != stdin {
		t.Fatalf("call %q: got %s %q", stdin, reply.Status, reply.Stdout)
	}
	return reply
}

// TestCallMultiplexed sends many calls at once: they share one stream, the
// server holds every one until all arrived and answers them last first,
// and each caller gets its own answer.
func TestCallMultiplexed(t *testing.T) {
	const n = 50 // under callStreamBusy: one stream
	var (
		mu      sync.Mutex
		arrived []uint64
		gates   = map[uint64]chan struct{}{}
		all     = make(chan struct{})
	)
	server, client := callPair(t, func(ctx context.Context, _ string, req *types.CallRequest) *types.CallReply {
		gate := make(chan struct{})
		mu.Lock()
		arrived, gates[req.Seq] = append(arrived, req.Seq), gate
		if len(arrived) == n {
			close(all)
		}
		mu.Unlock()
		<-gate
		return echo(ctx, "", req)
	})
	go func() { // answer last first, one at a time
		<-all
		slices.Sort(arrived)
		for _, seq := range slices.Backward(arrived) {
			close(gates[seq])
			time.Sleep(time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { call(t, client, server, fmt.Sprint("call ", i)) })
	}
	wg.Wait()
	if st := client.Stats().Calls; st.StreamsOut != 1 || st.InFlightOut != 0 {
		t.Fatalf("client call stats %+v, want one stream, nothing in flight", st)
	}
	if st := server.Stats().Calls; st.StreamsIn != 1 || len(st.Refused) != 0 {
		t.Fatalf("server call stats %+v, want one stream, no refusal", st)
	}
	if got := client.Traffic().Frames[CallProtocol]; got != n {
		t.Fatalf("client sent %d call frames, want %d", got, n)
	}
}

// TestCallFromConnection: the handler is told the PeerID the connection
// authenticated.
func TestCallFromConnection(t *testing.T) {
	froms := make(chan string, 1)
	server, client := callPair(t, func(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
		froms <- from
		return echo(ctx, from, req)
	})
	call(t, client, server, "x")
	if from := <-froms; from != client.ID() {
		t.Fatalf("handler told the call came from %s, want %s", from, client.ID())
	}
}

// rawCalls opens a call stream to h from a bare libp2p host.
func rawCalls(t *testing.T, raw host.Host, h *Host) (network.Stream, *bufio.Reader) {
	t.Helper()
	s, err := raw.NewStream(testCtx(t, 10*time.Second), h.host.ID(), CallProtocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	return s, bufio.NewReader(s)
}

func requestFrame(t *testing.T, seq uint64) []byte {
	t.Helper()
	b, err := (&types.CallRequest{Seq: seq, Allocation: "a", Stdin: []byte("in")}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
}

// readReply reads one call reply from a raw stream.
func readReply(r *bufio.Reader) (*types.CallReply, error) {
	b, err := ReadFrame(r, types.MaxCallFrame)
	if err != nil {
		return nil, err
	}
	reply := new(types.CallReply)
	return reply, reply.UnmarshalBinary(b)
}

// TestCallRefusals plays a requester that breaks the protocol: a repeated
// or decreasing Seq, a frame that does not decode, and one announced over
// the limit each reset the stream, counted by reason, and the host serves
// a proper call afterwards.
func TestCallRefusals(t *testing.T) {
	server, client := callPair(t, echo)
	raw := newRawHost(t, newKey(t), false)
	if err := raw.Connect(testCtx(t, 10*time.Second), addrInfo(server)); err != nil {
		t.Fatal(err)
	}
	replyFrame, _ := (&types.CallReply{Seq: 1, Status: types.CallOK}).AppendBinary(nil)
	cases := []struct {
		name   string
		frames [][]byte
		reason Reason
	}{
		{"replayed", [][]byte{requestFrame(t, 1), requestFrame(t, 1)}, ReasonReplayed},
		{"decreasing", [][]byte{requestFrame(t, 5), requestFrame(t, 4)}, ReasonReplayed},
		{"seq zero", [][]byte{requestFrame(t, 0)}, ReasonReplayed},
		{"garbage", [][]byte{{4, 0xff, 0xfe, 0xfd, 0xfc}}, ReasonMalformed},
		{"empty", [][]byte{{0}}, ReasonMalformed},
		{"a reply", [][]byte{append([]byte{byte(len(replyFrame))}, replyFrame...)}, ReasonMalformed},
		{"oversized", [][]byte{binary.AppendUvarint(nil, types.MaxCallFrame+1)}, ReasonOversized},
		{"overlong length", [][]byte{{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}}, ReasonOversized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := server.Stats().Calls.Refused[tc.reason]
			s, r := rawCalls(t, raw, server)
			for _, f := range tc.frames {
				if _, err := s.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			for replies := 0; err == nil; replies++ {
				if _, err = readReply(r); err == nil && replies == len(tc.frames)-1 {
					t.Fatal("every frame was answered")
				}
			}
			waitFor(t, 5*time.Second, "the refusal counted", func() bool {
				return server.Stats().Calls.Refused[tc.reason] == before+1
			})
			call(t, client, server, "still serving")
		})
	}
}

// TestCallStreamsPerPeer: a peer holds at most maxCallStreamsPerPeer call
// streams; one more is reset and counted as overloaded.
func TestCallStreamsPerPeer(t *testing.T) {
	server, _ := callPair(t, echo)
	raw := newRawHost(t, newKey(t), false)
	if err := raw.Connect(testCtx(t, 10*time.Second), addrInfo(server)); err != nil {
		t.Fatal(err)
	}
	for i := range maxCallStreamsPerPeer + 1 {
		s, r := rawCalls(t, raw, server)
		if _, err := s.Write(requestFrame(t, 1)); err != nil {
			t.Fatal(err)
		}
		_, err := readReply(r)
		if (err != nil) != (i == maxCallStreamsPerPeer) {
			t.Fatalf("stream %d: %v", i+1, err)
		}
	}
	if got := server.Stats().Calls.Refused[ReasonOverloaded]; got != 1 {
		t.Fatalf("refused %d streams as overloaded, want 1", got)
	}
}

// TestCallHungHandler: a handler that does not answer holds up neither
// the other calls nor its caller past its deadline; its late answer is
// dropped and the stream lives on.
func TestCallHungHandler(t *testing.T) {
	release := make(chan struct{})
	server, client := callPair(t, func(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
		if string(req.Stdin) == "hang" {
			<-release
		}
		return echo(ctx, from, req)
	})
	call(t, client, server, "first")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	hung := make(chan error, 1)
	go func() {
		_, err := client.Call(ctx, server.ID(), nil, &types.CallRequest{Allocation: "a", Stdin: []byte("hang")})
		hung <- err
	}()
	for i := range 20 {
		call(t, client, server, fmt.Sprint("meanwhile ", i))
	}
	if err := <-hung; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung call: %v, want its deadline", err)
	}
	close(release) // the late answer
	call(t, client, server, "after")
	waitFor(t, 5*time.Second, "the late reply", func() bool { return server.Stats().Calls.InFlightIn == 0 })
	call(t, client, server, "after the late reply")
	if st := client.Stats().Calls; st.StreamsOut != 1 {
		t.Fatalf("client call stats %+v: want the one stream kept", st)
	}
}

// blocked starts calls that the server holds until its host closes, and
// waits until they all run.
func blocked(t *testing.T, server, client *Host, n int) chan error {
	t.Helper()
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := client.Call(testCtx(t, 30*time.Second), server.ID(), server.Addrs(), &types.CallRequest{Allocation: "a", Stdin: []byte("block")})
			errs <- err
		}()
	}
	waitFor(t, 10*time.Second, "calls running", func() bool { return server.Stats().Calls.InFlightIn == int64(n) })
	return errs
}

// failAll checks that n calls fail with ErrCallStream, at once.
func failAll(t *testing.T, errs chan error, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrCallStream) {
				t.Fatalf("pending call: %v, want ErrCallStream", err)
			}
		case <-timeout:
			t.Fatal("pending calls did not fail with their stream")
		}
	}
}

func blocking(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
	if string(req.Stdin) == "block" {
		<-ctx.Done()
	}
	return echo(ctx, from, req)
}

// TestCallConnectionLost: when the connection to the server is cut, every
// call pending on it fails at once with ErrCallStream, and the next call
// opens a new stream.
func TestCallConnectionLost(t *testing.T) {
	server, client := callPair(t, blocking)
	errs := blocked(t, server, client, 10)
	if err := server.host.Network().ClosePeer(client.host.ID()); err != nil {
		t.Fatal(err)
	}
	failAll(t, errs, 10)
	waitFor(t, 5*time.Second, "the broken stream dropped", func() bool { return client.Stats().Calls.StreamsOut == 0 })
	call(t, client, server, "again")
	if st := client.Stats().Calls; st.StreamsOut != 1 {
		t.Fatalf("client call stats %+v, want a new stream", st)
	}
}

// TestCallServerCloses: a server that closes fails its pending calls with
// ErrCallStream, and Close waits for its handlers; a call to it once it
// is gone fails with ErrCallStream too.
func TestCallServerCloses(t *testing.T) {
	var finished atomic.Int32
	cfg := testConfig(t)
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"} // a dial to a closed QUIC port waits 5s
	server := newTestHost(t, cfg)
	client := newTestHost(t, testConfig(t, server.Addrs()...))
	server.HandleCalls(func(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
		reply := blocking(ctx, from, req)
		time.Sleep(20 * time.Millisecond) // a slow cleanup Close must wait for
		finished.Add(1)
		return reply
	})
	errs := blocked(t, server, client, 5)
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if got := finished.Load(); got != 5 {
		t.Fatalf("Close returned with %d of 5 handlers finished", got)
	}
	failAll(t, errs, 5)
	_, err := client.Call(testCtx(t, 10*time.Second), server.ID(), nil, &types.CallRequest{Allocation: "a"})
	if !errors.Is(err, ErrCallStream) {
		t.Fatalf("call to a closed server: %v, want ErrCallStream", err)
	}
}

// TestCallLargeFrames: a body and an output over the buffers cross intact,
// and a request over types.MaxCallFrame fails without breaking the stream.
func TestCallLargeFrames(t *testing.T) {
	server, client := callPair(t, echo)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	call(t, client, server, string(big))
	_, err := client.Call(testCtx(t, 10*time.Second), server.ID(), nil, &types.CallRequest{Allocation: "a", Stdin: make([]byte, types.MaxCallFrame)})
	if !errors.Is(err, errFrameOver) {
		t.Fatalf("call over the frame limit: %v", err)
	}
	call(t, client, server, "small")
	if st := client.Stats().Calls; st.StreamsOut != 1 {
		t.Fatalf("client call stats %+v, want the stream kept", st)
	}
}

// TestCallAfterClose: Call on a closed host fails with ErrClosed.
func TestCallAfterClose(t *testing.T) {
	server, client := callPair(t, echo)
	call(t, client, server, "x")
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := client.Call(context.Background(), server.ID(), nil, &types.CallRequest{})
	if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrCallStream) {
		t.Fatalf("call from a closed host: %v", err)
	}
}

// benchCall starts a server with a trivial handler and a client, over
// transport (tcp or quic), and returns a call with a 100-byte body.
func benchCall(b *testing.B, transport string) (to string, client *Host, req *types.CallRequest) {
	cfg := testConfig(b)
	cfg.Listen = []string{map[string]string{"tcp": "/ip4/127.0.0.1/tcp/0", "quic": "/ip4/127.0.0.1/udp/0/quic-v1"}[transport]}
	server := newTestHost(b, cfg)
	server.HandleCalls(echo)
	client = newTestHost(b, testConfig(b, server.Addrs()...))
	req = &types.CallRequest{Allocation: "alloc", Stdin: bytes.Repeat([]byte{'x'}, 100)}
	if _, err := client.Call(testCtx(b, 10*time.Second), server.ID(), server.Addrs(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	return server.ID(), client, req
}

var benchTransports = []string{"tcp", "quic"}

// BenchmarkCallRoundTrip measures one caller's calls, one after another.
func BenchmarkCallRoundTrip(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(tr, func(b *testing.B) {
			to, client, req := benchCall(b, tr)
			ctx := context.Background()
			start := time.Now()
			for b.Loop() {
				if _, err := client.Call(ctx, to, nil, req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
		})
	}
}

// BenchmarkCallParallel measures calls from 16*GOMAXPROCS callers at once.
func BenchmarkCallParallel(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(tr, func(b *testing.B) {
			to, client, req := benchCall(b, tr)
			ctx := context.Background()
			b.SetParallelism(16)
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.Call(ctx, to, nil, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
		})
	}
}

// TestCallMoreStreams: with every stream busy, Call opens another, up to
// maxCallStreamsOut, and spreads calls over them.
func TestCallMoreStreams(t *testing.T) {
	release := make(chan struct{})
	server, client := callPair(t, func(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
		<-release
		return echo(ctx, from, req)
	})
	const n = 3 * callStreamBusy
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { call(t, client, server, fmt.Sprint(i)) })
	}
	waitFor(t, 10*time.Second, "every call running", func() bool { return server.Stats().Calls.InFlightIn == n })
	close(release)
	wg.Wait()
	if st := client.Stats().Calls; st.StreamsOut < 2 || st.StreamsOut > maxCallStreamsOut {
		t.Fatalf("client call stats %+v, want 2 to %d streams", st, maxCallStreamsOut)
	}
}

// rawCallServer serves CallProtocol on a bare libp2p host with answer,
// which gets each request and writes what it likes.
func rawCallServer(t *testing.T, answer func(s network.Stream, req *types.CallRequest)) host.Host {
	t.Helper()
	raw := newRawHost(t, newKey(t), true)
	raw.SetStreamHandler(CallProtocol, func(s network.Stream) {
		r := bufio.NewReader(s)
		for {
			b, err := ReadFrame(r, types.MaxCallFrame)
			if err != nil {
				_ = s.Reset()
				return
			}
			req := new(types.CallRequest)
			if err := req.UnmarshalBinary(b); err != nil {
				_ = s.Reset()
				return
			}
			answer(s, req)
		}
	})
	return raw
}

func writeReply(s network.Stream, r *types.CallReply) {
	b, _ := r.AppendBinary(nil)
	_ = WriteFrame(s, b)
}

// TestCallBadReplies: a reply to a call not in flight, or one that does
// not decode, breaks the stream: the pending calls fail with
// ErrCallStream (and ErrBadReply), and the next call opens a new stream.
func TestCallBadReplies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(s network.Stream, req *types.CallRequest)
	}{
		{"unknown seq", func(s network.Stream, req *types.CallRequest) {
			writeReply(s, &types.CallReply{Seq: req.Seq + 100, Status: types.CallOK})
		}},
		{"undecodable", func(s network.Stream, _ *types.CallRequest) { _ = WriteFrame(s, []byte{types.FrameCallReply, 1}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bad atomic.Bool
			bad.Store(true)
			raw := rawCallServer(t, func(s network.Stream, req *types.CallRequest) {
				if bad.Load() {
					tc.reply(s, req)
					return
				}
				writeReply(s, &types.CallReply{Seq: req.Seq, Status: types.CallOK, Stdout: req.Stdin})
			})
			client := newTestHost(t, testConfig(t))
			addrs := []string{raw.Addrs()[0].String()}
			_, err := client.Call(testCtx(t, 10*time.Second), raw.ID().String(), addrs, &types.CallRequest{Stdin: []byte("x")})
			if !errors.Is(err, ErrCallStream) || !errors.Is(err, ErrBadReply) {
				t.Fatalf("call answered badly: %v, want ErrCallStream and ErrBadReply", err)
			}
			bad.Store(false)
			reply, err := client.Call(testCtx(t, 10*time.Second), raw.ID().String(), addrs, &types.CallRequest{Stdin: []byte("y")})
			if err != nil || string(reply.Stdout) != "y" {
				t.Fatalf("call on a new stream: %v, %+v", err, reply)
			}
		})
	}
}

// TestCallStreamReset: a provider that resets the stream fails every call
// pending on it at once.
func TestCallStreamReset(t *testing.T) {
	var (
		mu      sync.Mutex
		pending int
	)
	raw := rawCallServer(t, func(s network.Stream, _ *types.CallRequest) {
		mu.Lock()
		defer mu.Unlock()
		if pending++; pending == 5 {
			_ = s.Reset()
		}
	})
	client := newTestHost(t, testConfig(t))
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, err := client.Call(testCtx(t, 10*time.Second), raw.ID().String(), []string{raw.Addrs()[0].String()}, &types.CallRequest{})
			errs <- err
		}()
	}
	failAll(t, errs, 5)
}

// TestCallRefusedStream: a provider that resets call streams at once
// fails each call with ErrCallStream, and the pool keeps no dead stream:
// once the provider serves again, so do calls.
func TestCallRefusedStream(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	raw := newRawHost(t, newKey(t), true)
	raw.SetStreamHandler(CallProtocol, func(s network.Stream) {
		if refuse.Load() {
			_ = s.Reset()
			return
		}
		r := bufio.NewReader(s)
		for {
			b, err := ReadFrame(r, types.MaxCallFrame)
			req := new(types.CallRequest)
			if err != nil || req.UnmarshalBinary(b) != nil {
				_ = s.Reset()
				return
			}
			writeReply(s, &types.CallReply{Seq: req.Seq, Status: types.CallOK, Stdout: req.Stdin})
		}
	})
	client := newTestHost(t, testConfig(t))
	addrs := []string{raw.Addrs()[0].String()}
	for range 3 {
		_, err := client.Call(testCtx(t, 10*time.Second), raw.ID().String(), addrs, &types.CallRequest{})
		if !errors.Is(err, ErrCallStream) {
			t.Fatalf("call on a refused stream: %v, want ErrCallStream", err)
		}
	}
	refuse.Store(false)
	reply, err := client.Call(testCtx(t, 10*time.Second), raw.ID().String(), addrs, &types.CallRequest{Stdin: []byte("y")})
	if err != nil || string(reply.Stdout) != "y" {
		t.Fatalf("call once the provider serves: %v, %+v", err, reply)
	}
}

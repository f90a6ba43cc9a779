package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/opendms/dms/types"
)

// rawExchange sends frame bytes to h over proto from raw and returns the
// reply frame, or the error the stream ended with.
func rawExchange(t *testing.T, raw host.Host, h *Host, proto protocol.ID, out []byte) ([]byte, error) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	s, err := raw.NewStream(ctx, h.host.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write(out); err != nil {
		return nil, err
	}
	_ = s.CloseWrite()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	return ReadFrame(bufio.NewReader(s), types.MaxEnvelopeSize)
}

func sealedFrame(t *testing.T, key []byte, msg types.Message) []byte {
	t.Helper()
	return envFrame(t, sealEnv(t, key, msg, time.Now(), time.Minute))
}

// envFrame frames env as it is, valid or not.
func envFrame(t *testing.T, env *types.Envelope) []byte {
	t.Helper()
	b := encode(t, env)
	return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
}

// badFrames returns, for a sender with key, one request frame per reason an
// inbound stream is refused for; ReasonReplayed maps to valid, which must be
// sent first.
func badFrames(t *testing.T, key []byte, valid []byte) map[Reason][]byte {
	accept := &types.Accept{JobID: "j"}
	forged := sealEnv(t, key, accept, time.Now(), time.Minute)
	forged.Body = []byte(`{"job_id":"k"}`)
	unsigned := sealEnv(t, key, accept, time.Now(), time.Minute)
	unsigned.Sig = nil
	return map[Reason][]byte{
		ReasonBadSignature:   envFrame(t, forged),
		ReasonUnsigned:       envFrame(t, unsigned),
		ReasonExpired:        envFrame(t, sealEnv(t, key, accept, time.Now(), -time.Second)),
		ReasonBadExpiry:      envFrame(t, sealEnv(t, key, accept, time.Now(), 365*24*time.Hour)),
		ReasonReplayed:       valid,
		ReasonOversized:      binary.AppendUvarint(nil, 1<<40),
		ReasonSenderMismatch: sealedFrame(t, newKey(t), accept),
		ReasonWrongKind:      sealedFrame(t, key, &types.Bid{JobID: "j"}),
		ReasonMalformed:      binary.AppendUvarint(nil, 0),
	}
}

// TestStreamRefusals plays a peer that breaks the rules: each refusal
// (forged, unsigned, expired, replayed and oversized requests among them)
// resets the stream before the handler runs, and is counted by its reason.
func TestStreamRefusals(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	var calls atomic.Int32
	h.Handle(AcceptProtocol, func(context.Context, string, *types.Envelope, types.Message) (types.Message, error) {
		calls.Add(1)
		return &types.Confirm{}, nil
	})
	key := newKey(t)
	raw := newRawHost(t, key, false)
	if err := raw.Connect(testCtx(t, 10*time.Second), addrInfo(h)); err != nil {
		t.Fatal(err)
	}

	valid := sealedFrame(t, key, &types.Accept{JobID: "j"})
	if _, err := rawExchange(t, raw, h, AcceptProtocol, valid); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	frames := badFrames(t, key, valid)
	for reason, frame := range frames {
		t.Run(string(reason), func(t *testing.T) {
			if reply, err := rawExchange(t, raw, h, AcceptProtocol, frame); err == nil {
				t.Errorf("got a reply %q", reply)
			}
			waitFor(t, 5*time.Second, string(reason)+" counted", func() bool { return h.Stats().Streams[reason] == 1 })
		})
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	if got := h.Stats().Streams; len(got) != len(frames) {
		t.Fatalf("refusals %v, want one for each of %d reasons", got, len(frames))
	}
}

// TestInboundStreamLimit holds the only handler slot and checks that a second
// stream is refused after IOTimeout.
func TestInboundStreamLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxInboundStreams, cfg.IOTimeout = 1, 200*time.Millisecond
	h := newTestHost(t, cfg)
	entered, release := make(chan struct{}), make(chan struct{})
	h.Handle(TraceProtocol, func(ctx context.Context, _ string, _ *types.Envelope, _ types.Message) (types.Message, error) {
		entered <- struct{}{}
		<-release
		return &types.TraceSpans{}, nil
	})
	c := newTestHost(t, testConfig(t))
	ctx := testCtx(t, 10*time.Second)
	first := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, h.ID(), h.Addrs(), TraceProtocol, &types.TraceQuery{})
		first <- err
	}()
	<-entered
	if _, err := c.Request(ctx, h.ID(), nil, TraceProtocol, &types.TraceQuery{}); !errors.Is(err, ErrNoReply) {
		t.Fatalf("second request: got %v, want ErrNoReply", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := h.Stats().Streams[ReasonOverloaded]; n != 1 {
		t.Fatalf("overloaded count %d, want 1", n)
	}
}

// TestInboundStreamsPerPeer: a peer that opens many streams and sends
// nothing on them holds at most MaxInboundStreamsPerPeer of a protocol's
// handler slots, so another peer's request is served at once rather than
// after the hog's streams time out.
func TestInboundStreamsPerPeer(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxInboundStreams, cfg.MaxInboundStreamsPerPeer, cfg.IOTimeout = 4, 2, time.Minute
	h := newTestHost(t, cfg)
	h.Handle(TraceProtocol, func(context.Context, string, *types.Envelope, types.Message) (types.Message, error) {
		return &types.TraceSpans{}, nil
	})
	ctx := testCtx(t, 20*time.Second)
	hog := newRawHost(t, newKey(t), false)
	if err := hog.Connect(ctx, addrInfo(h)); err != nil {
		t.Fatal(err)
	}
	for range 2 * cfg.MaxInboundStreams {
		s, err := hog.NewStream(ctx, h.host.ID(), TraceProtocol)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		if _, err := s.Write([]byte{}); err != nil { // opens the stream on the wire, sends no frame
			t.Fatal(err)
		}
	}
	c := newTestHost(t, testConfig(t))
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second) // well under the hog's IOTimeout
	defer cancel()
	if _, err := c.Request(rctx, h.ID(), h.Addrs(), TraceProtocol, &types.TraceQuery{}); err != nil {
		t.Fatalf("a request beside a peer holding %d idle streams: %v", 2*cfg.MaxInboundStreams, err)
	}
}

// TestReplyFromWrongKey checks the requester's side: a reply must verify and
// come from the peer asked.
func TestReplyFromWrongKey(t *testing.T) {
	key := newKey(t)
	raw := newRawHost(t, key, true)
	forged := sealedFrame(t, newKey(t), &types.TraceSpans{})
	raw.SetStreamHandler(TraceProtocol, func(s network.Stream) {
		defer s.Close()
		if _, err := ReadFrame(bufio.NewReader(s), types.MaxEnvelopeSize); err != nil {
			return
		}
		_, _ = s.Write(forged)
	})
	c := newTestHost(t, testConfig(t))
	addrs := addrStrings(raw.Addrs())
	_, err := c.Request(testCtx(t, 10*time.Second), raw.ID().String(), addrs, TraceProtocol, &types.TraceQuery{})
	if !errors.Is(err, ErrBadReply) || !errors.Is(err, ErrSenderMismatch) {
		t.Fatalf("got %v, want ErrBadReply and ErrSenderMismatch", err)
	}
}

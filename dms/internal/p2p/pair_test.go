package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/opendms/dms/types"
)

// servePairTest serves the protocols PairProtocol carries as a node does:
// an accept is confirmed (signed), a cancel answered with a running
// status (not signed) and a status query with a final one (signed); a
// bid or decline is acked. It counts the requests its handlers saw.
func servePairTest(h *Host) *atomic.Int32 {
	var seen atomic.Int32
	h.Handle(AcceptProtocol, func(_ context.Context, _ string, env *types.Envelope, msg types.Message) (types.Message, error) {
		seen.Add(1)
		if env == nil {
			return nil, errors.New("an accept came without its envelope")
		}
		a := msg.(*types.Accept)
		return &types.Confirm{JobID: a.JobID, AllocationID: a.AllocationID, Epoch: 7}, nil
	})
	h.Handle(CancelProtocol, func(_ context.Context, _ string, env *types.Envelope, msg types.Message) (types.Message, error) {
		seen.Add(1)
		if env != nil {
			return nil, errors.New("a cancel came signed")
		}
		c := msg.(*types.Cancel)
		return &types.Status{JobID: c.JobID, AllocationID: c.AllocationID, State: types.AllocRunning}, nil
	})
	h.Handle(StatusProtocol, func(_ context.Context, _ string, _ *types.Envelope, msg types.Message) (types.Message, error) {
		seen.Add(1)
		q := msg.(*types.StatusQuery)
		return &types.Status{JobID: q.JobID, AllocationID: q.AllocationID, State: types.AllocCompleted}, nil
	})
	h.Handle(BidProtocol, func(context.Context, string, *types.Envelope, types.Message) (types.Message, error) {
		seen.Add(1)
		return nil, nil
	})
	return &seen
}

// The request/response messages between two peers share a long-lived
// stream (a few under load) instead of one stream each; what must be
// signed comes signed (its envelope returned), the rest comes bare.
func TestPairRequestsShareStreams(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	seen := servePairTest(h)
	c := newTestHost(t, testConfig(t))
	ctx := testCtx(t, 20*time.Second)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := types.AllocationID(fmt.Sprint("a", i))
			var err error
			switch i % 4 {
			case 0:
				env, reply, e := c.RequestSigned(ctx, h.ID(), h.Addrs(), AcceptProtocol, &types.Accept{JobID: "j", AllocationID: id})
				if cf, ok := reply.(*types.Confirm); e == nil && (!ok || cf.AllocationID != id || cf.Epoch != 7 || env == nil) {
					e = fmt.Errorf("accept %s: %#v, envelope %v", id, reply, env)
				}
				err = e
			case 1:
				env, reply, e := c.RequestSigned(ctx, h.ID(), h.Addrs(), CancelProtocol, &types.Cancel{JobID: "j", AllocationID: id})
				if st, ok := reply.(*types.Status); e == nil && (!ok || st.AllocationID != id || st.State != types.AllocRunning || env != nil) {
					e = fmt.Errorf("cancel %s: %#v, envelope %v", id, reply, env)
				}
				err = e
			case 2:
				env, reply, e := c.RequestSigned(ctx, h.ID(), h.Addrs(), StatusProtocol, &types.StatusQuery{JobID: "j", AllocationID: id})
				if st, ok := reply.(*types.Status); e == nil && (!ok || st.AllocationID != id || st.State != types.AllocCompleted || env == nil) {
					e = fmt.Errorf("status %s: %#v, envelope %v", id, reply, env)
				}
				err = e
			case 3:
				reply, e := c.Request(ctx, h.ID(), h.Addrs(), BidProtocol, &types.Decline{JobID: "j"})
				if e == nil && reply != nil {
					e = fmt.Errorf("decline: a reply %#v, want an ack", reply)
				}
				err = e
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := seen.Load(); got != n {
		t.Fatalf("handlers saw %d requests, want %d", got, n)
	}
	st := c.Stats().Pairs
	if st.StreamsOut < 1 || st.StreamsOut > maxCallStreamsOut {
		t.Fatalf("%d pair streams open for %d requests, want 1..%d", st.StreamsOut, n, maxCallStreamsOut)
	}
	if f := c.Traffic().Frames; f[AcceptProtocol]+f[CancelProtocol]+f[StatusProtocol]+f[BidProtocol] != 0 || f[PairProtocol] != n {
		t.Fatalf("frames sent by protocol: %v, want %d on %s only", f, n, PairProtocol)
	}
}

// rawPair speaks PairProtocol by hand, as a peer that breaks its rules.
type rawPair struct {
	t   *testing.T
	s   network.Stream
	r   *bufio.Reader
	seq uint64
}

func openRawPair(t *testing.T, h *Host) (*rawPair, []byte) {
	t.Helper()
	key := newKey(t)
	raw := newRawHost(t, key, false)
	ctx := testCtx(t, 10*time.Second)
	if err := raw.Connect(ctx, addrInfo(h)); err != nil {
		t.Fatal(err)
	}
	s, err := raw.NewStream(ctx, h.host.ID(), PairProtocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	return &rawPair{t: t, s: s, r: bufio.NewReader(s)}, key
}

// send writes a request frame of Seq seq (the next one when 0) holding
// payload.
func (p *rawPair) send(seq uint64, payload []byte) {
	p.t.Helper()
	if seq == 0 {
		seq = p.seq + 1
	}
	p.seq = max(p.seq, seq)
	b, err := (&types.CallRequest{Seq: seq, Stdin: payload}).AppendBinary(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := WriteFrame(p.s, b); err != nil {
		p.t.Fatal(err)
	}
}

// reply reads the next reply frame, or the error the stream broke with.
func (p *rawPair) reply() (*types.CallReply, error) {
	_ = p.s.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := ReadFrame(p.r, types.MaxCallFrame)
	if err != nil {
		return nil, err
	}
	r := new(types.CallReply)
	return r, r.UnmarshalBinary(b)
}

// bare is a message in the bare form, kind and JSON body as given.
func bare(kind types.Kind, body string) []byte {
	b := binary.AppendUvarint([]byte{pairBare}, uint64(len(kind)))
	return append(append(b, kind...), cborFromJSON(body)...)
}

// cborFromJSON writes each JSON value in js as CBOR, one after the other,
// so that bodies are written by hand in a form people read.
func cborFromJSON(js string) []byte {
	var out []byte
	dec := json.NewDecoder(strings.NewReader(js))
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			return out
		}
		b, err := cbor.Marshal(v)
		if err != nil {
			panic(err)
		}
		out = append(out, b...)
	}
}

// sealed is msg in the sealed form, signed with key.
func sealed(t *testing.T, env *types.Envelope) []byte {
	return append([]byte{pairSealed}, encode(t, env)...)
}

// Each request that breaks the rules of PairProtocol is refused before
// its handler runs and counted by reason; the stream stays up for the
// next request, which is served.
func TestPairRefusals(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	seen := servePairTest(h)
	p, key := openRawPair(t, h)
	accept := &types.Accept{JobID: "j", AllocationID: "a"}
	valid := sealEnv(t, key, accept, time.Now(), time.Minute)
	forged := sealEnv(t, key, accept, time.Now(), time.Minute)
	forged.Body = []byte(`{"job_id":"k"}`)
	idx := func(proto int, msg []byte) []byte { return append([]byte{byte(proto)}, msg...) }
	const acceptIdx, cancelIdx, statusIdx = 2, 3, 4
	cases := []struct {
		name    string
		payload []byte
		reason  Reason
	}{
		{"valid", idx(acceptIdx, sealed(t, valid)), ""},
		{"replayed envelope", idx(acceptIdx, sealed(t, valid)), ReasonReplayed},
		{"forged", idx(acceptIdx, sealed(t, forged)), ReasonBadSignature},
		{"someone else's", idx(acceptIdx, sealed(t, sealEnv(t, newKey(t), accept, time.Now(), time.Minute))), ReasonSenderMismatch},
		{"expired", idx(acceptIdx, sealed(t, sealEnv(t, key, accept, time.Now(), -time.Second))), ReasonExpired},
		{"an accept unsigned", idx(acceptIdx, bare(types.KindAccept, `{"job_id":"j","allocation_id":"b"}`)), ReasonUnsigned},
		{"a bid on the cancel protocol", idx(cancelIdx, bare(types.KindBid, `{}`)), ReasonWrongKind},
		{"unknown field", idx(cancelIdx, bare(types.KindCancel, `{"job_id":"j","evil":1}`)), ReasonMalformed},
		{"data after the body", idx(cancelIdx, bare(types.KindCancel, `{"job_id":"j"} {}`)), ReasonMalformed},
		{"no body", idx(statusIdx, bare(types.KindStatusQuery, ``)), ReasonMalformed},
		{"kind longer than the message", idx(statusIdx, []byte{pairBare, 200, 'x'}), ReasonMalformed},
		{"an ack as a request", idx(statusIdx, []byte{pairAck}), ReasonMalformed},
		{"unknown form", idx(statusIdx, []byte{9, '{', '}'}), ReasonMalformed},
		{"no protocol", idx(0, bare(types.KindCancel, `{}`)), ReasonMalformed},
		{"a protocol it does not carry", idx(len(pairProtos)+1, bare(types.KindCancel, `{}`)), ReasonMalformed},
		{"empty", nil, ReasonMalformed},
		{"a cancel, well formed", idx(cancelIdx, bare(types.KindCancel, `{"job_id":"j","allocation_id":"a"}`)), ""},
	}
	want := map[Reason]uint64{}
	handled := int32(0)
	for _, c := range cases {
		p.send(0, c.payload)
		r, err := p.reply()
		if err != nil {
			t.Fatalf("%s: the stream broke: %v", c.name, err)
		}
		if c.reason == "" {
			handled++
			if r.Status != types.CallOK {
				t.Fatalf("%s: %v %q", c.name, r.Status, r.Error)
			}
			continue
		}
		want[c.reason]++
		if r.Status != types.CallNodeError {
			t.Fatalf("%s: answered %v, want a refusal", c.name, r.Status)
		}
		if got := h.Stats().Streams[c.reason]; got != want[c.reason] {
			t.Fatalf("%s: %s counted %d times, want %d (%v)", c.name, c.reason, got, want[c.reason], h.Stats().Streams)
		}
	}
	if got := seen.Load(); got != handled {
		t.Fatalf("handlers ran %d times, want %d", got, handled)
	}
}

// A frame whose Seq is not above the last on its stream is a replay: the
// stream is reset, the refusal counted, and the frame never handled.
func TestPairSeqReplay(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	seen := servePairTest(h)
	p, _ := openRawPair(t, h)
	cancel := []byte{3}
	cancel = append(cancel, bare(types.KindCancel, `{"job_id":"j","allocation_id":"a"}`)...)
	p.send(5, cancel)
	if r, err := p.reply(); err != nil || r.Status != types.CallOK {
		t.Fatalf("first: %+v %v", r, err)
	}
	p.send(5, cancel)
	if r, err := p.reply(); err == nil {
		t.Fatalf("a replayed frame was answered: %+v", r)
	}
	waitFor(t, 5*time.Second, "replay counted", func() bool { return h.Stats().Pairs.Refused[ReasonReplayed] == 1 })
	if n := seen.Load(); n != 1 {
		t.Fatalf("handled %d times, want 1", n)
	}
}

// The requester's side: a reply that must be signed and is not, or that
// another key signed, is refused as a bad reply.
func TestPairBadReplies(t *testing.T) {
	key := newKey(t)
	raw := newRawHost(t, key, true)
	var reply []byte
	var mu sync.Mutex
	raw.SetStreamHandler(PairProtocol, func(s network.Stream) {
		defer s.Close()
		r := bufio.NewReader(s)
		for {
			b, err := ReadFrame(r, types.MaxCallFrame)
			if err != nil {
				return
			}
			var req types.CallRequest
			if err := req.UnmarshalBinary(b); err != nil {
				return
			}
			mu.Lock()
			out, _ := (&types.CallReply{Seq: req.Seq, Status: types.CallOK, Stdout: reply}).AppendBinary(nil)
			mu.Unlock()
			_ = WriteFrame(s, out)
		}
	})
	c := newTestHost(t, testConfig(t))
	addrs := addrStrings(raw.Addrs())
	ctx := testCtx(t, 10*time.Second)
	for _, tc := range []struct {
		name  string
		reply []byte
		want  error
	}{
		{"a final status unsigned", bare(types.KindStatus, `{"job_id":"j","allocation_id":"a","state":"completed"}`), ErrBadReply},
		{"a status another key signed", sealed(t, sealEnv(t, newKey(t), &types.Status{State: types.AllocCompleted}, time.Now(), time.Minute)), ErrSenderMismatch},
		{"a confirm to a status query", sealed(t, sealEnv(t, key, &types.Confirm{}, time.Now(), time.Minute)), ErrWrongKind},
		{"garbage", []byte{pairBare, 1}, ErrBadReply},
	} {
		mu.Lock()
		reply = tc.reply
		mu.Unlock()
		_, err := c.Request(ctx, raw.ID().String(), addrs, StatusProtocol, &types.StatusQuery{AllocationID: "a"})
		if !errors.Is(err, ErrBadReply) || !errors.Is(err, tc.want) {
			t.Fatalf("%s: got %v, want ErrBadReply and %v", tc.name, err, tc.want)
		}
	}
	mu.Lock()
	reply = bare(types.KindStatus, `{"job_id":"j","allocation_id":"a","state":"running"}`)
	mu.Unlock()
	if st, err := c.Request(ctx, raw.ID().String(), addrs, StatusProtocol, &types.StatusQuery{AllocationID: "a"}); err != nil || st.(*types.Status).State != types.AllocRunning {
		t.Fatalf("a running status, bare: %#v %v", st, err)
	}
}

// A peer that serves a message's own protocol, not PairProtocol (an
// implementation of the simpler protocols only): the request goes there, signed as that protocol wants,
// whether identify has told the requester so yet or not.
func TestPairFallsBackToOwnProtocol(t *testing.T) {
	key := newKey(t)
	raw := newRawHost(t, key, true)
	var streams atomic.Int32
	raw.SetStreamHandler(StatusProtocol, func(s network.Stream) {
		defer s.Close()
		streams.Add(1)
		b, err := ReadFrame(bufio.NewReader(s), types.MaxEnvelopeSize)
		if err != nil {
			return
		}
		if _, err := types.UnmarshalEnvelope(b); err != nil { // signed, as the protocol wants
			return
		}
		_, _ = s.Write(sealedFrame(t, key, &types.Status{State: types.AllocRunning}))
	})
	c := newTestHost(t, testConfig(t))
	addrs := addrStrings(raw.Addrs())
	for i := range 3 {
		reply, err := c.Request(testCtx(t, 10*time.Second), raw.ID().String(), addrs, StatusProtocol, &types.StatusQuery{AllocationID: "a"})
		if st, ok := reply.(*types.Status); err != nil || !ok || st.State != types.AllocRunning {
			t.Fatalf("request %d: %#v %v", i, reply, err)
		}
	}
	if n := streams.Load(); n != 3 {
		t.Fatalf("%d status streams, want 3", n)
	}
}

// On an invocation stream the heartbeats come bare and the final status
// signed; a provider that sends its final status unsigned is refused.
func TestInvokeStreamSignsTheFinalStatusOnly(t *testing.T) {
	key := newKey(t)
	raw := newRawHost(t, key, true)
	serve := func(frames ...[]byte) network.StreamHandler {
		return func(s network.Stream) {
			defer s.Close()
			if _, err := ReadFrame(bufio.NewReader(s), types.MaxTaskEnvelopeSize); err != nil {
				return
			}
			for _, f := range frames {
				if err := WriteFrame(s, f); err != nil {
					return
				}
			}
		}
	}
	running := bare(types.KindStatus, `{"job_id":"j","allocation_id":"a","state":"running"}`)
	final := sealed(t, sealEnv(t, key, &types.Status{JobID: "j", AllocationID: "a", State: types.AllocCompleted}, time.Now(), time.Minute))
	c := newTestHost(t, testConfig(t))
	addrs := addrStrings(raw.Addrs())
	ctx := testCtx(t, 10*time.Second)
	recvAll := func() ([]types.AllocationState, error) {
		st, err := c.OpenStream(ctx, raw.ID().String(), addrs, InvokeProtocol, &types.Invocation{JobID: "j", AllocationID: "a"})
		if err != nil {
			return nil, err
		}
		defer st.Close()
		var states []types.AllocationState
		for {
			msg, err := st.Recv(ctx)
			if errors.Is(err, io.EOF) {
				return states, nil
			}
			if err != nil {
				return states, err
			}
			states = append(states, msg.(*types.Status).State)
		}
	}
	raw.SetStreamHandler(InvokeProtocol, serve(running, running, final))
	if got, err := recvAll(); err != nil || !slices.Equal(got, []types.AllocationState{types.AllocRunning, types.AllocRunning, types.AllocCompleted}) {
		t.Fatalf("version 2: %v %v", got, err)
	}
	raw.SetStreamHandler(InvokeProtocol, serve(running, bare(types.KindStatus, `{"job_id":"j","allocation_id":"a","state":"completed"}`)))
	if got, err := recvAll(); !errors.Is(err, ErrBadReply) || len(got) != 1 {
		t.Fatalf("an unsigned final status: %v %v, want one status then ErrBadReply", got, err)
	}
}

package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"golang.org/x/sync/semaphore"

	"github.com/opendms/dms/types"
)

// CallProtocol carries the calls of warm instances from their requester to
// their provider: one long-lived stream holds many CallRequest frames and,
// in any order, their CallReply frames. Its frames are not envelopes: the
// stream's connection authenticates the requester (DESIGN.md, what is
// signed), and a Seq strictly increasing on the stream keeps a frame from
// being replayed on it. Version 2 added the request's optional trace
// context, which version 1 refuses as trailing bytes: the versions do not
// mix.
const CallProtocol protocol.ID = "/dms/call/2.0.0"

// Bounds of the call streams.
const (
	// maxCallsPerStream bounds the requests a served stream runs at once,
	// and maxCallBytesPerStream their frames' bytes (one frame over it
	// runs alone); past either, its reader stops reading (backpressure
	// on the requester).
	maxCallsPerStream     = 1024
	maxCallBytesPerStream = 4 * types.MaxCallFrame
	// maxCallStreamsPerPeer bounds the call streams one peer holds open
	// to a host; one more is reset at once.
	maxCallStreamsPerPeer = 8
	// maxCallStreamsOut bounds the call streams Call keeps to one peer.
	maxCallStreamsOut = 4
	// callStreamBusy is the calls in flight on the least loaded stream
	// to a peer past which Call opens another, up to maxCallStreamsOut.
	callStreamBusy = 64
	// callFrameInline is the size up to which a frame's body is allocated
	// at once; a larger one grows with the bytes received.
	callFrameInline = 64 << 10
	// callBufSize is the buffered reader and writer of a call stream.
	callBufSize = 16 << 10
)

// CallHandler answers one call from the peer from, the PeerID the
// stream's connection authenticated. It runs on a goroutine of its own,
// concurrently with the other calls of the stream; ctx ends when the
// stream breaks or the host closes. The reply's Seq is set to the
// request's; a nil reply answers CallNodeError. req.Stdin aliases the
// frame read, which the handler may keep.
type CallHandler func(ctx context.Context, from string, req *types.CallRequest) *types.CallReply

// callService is one protocol of call streams, CallProtocol or
// ForwardProtocol (forward.go): the same frames, bounds and refusals,
// counted apart. Its outbound streams are pooled by protocol and peer
// (callPools).
type callService struct {
	proto protocol.ID
	stats callCounters
	// frames and bytes count the frames sent and their bytes (Traffic).
	frames, bytes *atomic.Uint64
	// keep protects the connections of its streams from the connection
	// manager while they are open (conn.go).
	keep bool
}

// HandleCalls serves CallProtocol with fn. A peer holds at most
// maxCallStreamsPerPeer call streams, each running at most
// maxCallsPerStream calls, of maxCallBytesPerStream request bytes, at
// once. A frame that does not decode, is over types.MaxCallFrame, or whose
// Seq is not above the last one on its stream resets the stream, counted
// by reason in Stats().Calls.Refused.
func (h *Host) HandleCalls(fn CallHandler) { h.handleCalls(&h.calls, fn) }

// handleCalls serves svc's protocol with fn, as HandleCalls.
func (h *Host) handleCalls(svc *callService, fn CallHandler) {
	peers := newPeerSlots(maxCallStreamsPerPeer)
	h.host.SetStreamHandler(svc.proto, h.inbound(false, func(ctx context.Context, s network.Stream) {
		p := s.Conn().RemotePeer()
		own := peers.of(p)
		defer peers.done(p)
		select {
		case own <- struct{}{}:
		default:
			h.refuseCalls(svc, s, reject(ReasonOverloaded, fmt.Errorf("p2p: %d %s streams from %s", maxCallStreamsPerPeer, svc.proto, p)))
			return
		}
		defer func() { <-own }()
		if svc.keep {
			defer h.keep(p)()
		}
		h.serveCalls(ctx, svc, s, fn)
	}))
}

// callServer serves one inbound call stream.
type callServer struct {
	h     *Host
	svc   *callService
	from  string
	fn    CallHandler
	in    *frameReader
	out   *frameWriter
	slots chan struct{}
	bytes *semaphore.Weighted
	wg    sync.WaitGroup
}

// serveCalls reads requests until the stream ends, runs each on its own
// goroutine and waits for them. A clean end (the requester closed its
// side) lets the running calls answer; anything else cancels them.
func (h *Host) serveCalls(ctx context.Context, svc *callService, s network.Stream, fn CallHandler) {
	svc.stats.streamsIn.Add(1)
	defer svc.stats.streamsIn.Add(-1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &callServer{
		h: h, svc: svc, from: s.Conn().RemotePeer().String(), fn: fn,
		in:    newFrameReader(s, h.cfg.IOTimeout),
		out:   newFrameWriter(h, svc, s, func(error) { _ = s.Reset() }),
		slots: make(chan struct{}, maxCallsPerStream),
		bytes: semaphore.NewWeighted(maxCallBytesPerStream),
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	err := c.readLoop(ctx)
	if err != nil {
		cancel()
		h.refuseCalls(svc, s, err)
	}
	c.wg.Wait()
	if stop() {
		_ = s.Close()
	}
}

// readLoop reads requests and starts their calls, waiting for a slot
// when maxCallsPerStream run; it returns nil when the requester closed
// its side.
func (c *callServer) readLoop(ctx context.Context) error {
	var last uint64
	for {
		b, err := c.in.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		req := new(types.CallRequest)
		if err := req.UnmarshalBinary(b); err != nil {
			return reject(ReasonMalformed, err)
		}
		if req.Seq <= last {
			return reject(ReasonReplayed, fmt.Errorf("p2p: call seq %d after %d", req.Seq, last))
		}
		last = req.Seq
		if err := c.acquire(ctx, len(b)); err != nil {
			return err
		}
		c.wg.Add(1)
		go c.serve(ctx, req, len(b))
	}
}

// acquire waits for a call slot and room for a frame of n bytes.
func (c *callServer) acquire(ctx context.Context, n int) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := c.bytes.Acquire(ctx, int64(n)); err != nil {
		<-c.slots
		return err
	}
	return nil
}

// serve runs one call, whose frame has n bytes, and writes its reply; it
// gives its slot back once the reply is written.
func (c *callServer) serve(ctx context.Context, req *types.CallRequest, n int) {
	defer c.wg.Done()
	defer func() { <-c.slots }()
	defer c.bytes.Release(int64(n))
	c.svc.stats.inFlightIn.Add(1)
	reply := c.fn(ctx, c.from, req)
	c.svc.stats.inFlightIn.Add(-1)
	if ctx.Err() != nil {
		// The stream is being reset (the host is closing, or the stream was
		// refused): a reply of a call cut off by that is not an answer, and
		// the requester must see the stream fail rather than a reply that
		// raced the reset.
		return
	}
	if reply == nil {
		reply = &types.CallReply{Status: types.CallNodeError, Error: "p2p: the call handler gave no reply"}
	}
	reply.Seq = req.Seq
	if err := c.out.send(reply); errors.Is(err, errFrameOver) || errors.Is(err, types.ErrBadCallFrame) {
		_ = c.out.send(&types.CallReply{Seq: req.Seq, Status: types.CallNodeError, Error: err.Error()})
	}
}

// refuseCalls counts why a call stream of svc was refused and resets it.
// A transport failure (the peer went away, the host closed) is not
// counted.
func (h *Host) refuseCalls(svc *callService, s network.Stream, err error) {
	if re, ok := errors.AsType[*RejectError](err); ok {
		svc.stats.refused.add(re.Reason)
	} else if errors.Is(err, ErrFrameTooLarge) {
		svc.stats.refused.add(ReasonOversized)
	}
	h.cfg.Logger.Debug("p2p: call stream ended", "protocol", svc.proto, "peer", s.Conn().RemotePeer(), "err", err)
	_ = s.Reset()
}

// errFrameOver means a call frame encoded over types.MaxCallFrame; it was
// not sent.
var errFrameOver = errors.New("p2p: call frame over types.MaxCallFrame")

// frameBufs holds encoding buffers of call frames up to callFrameInline.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// binaryAppender is a call frame's message.
type binaryAppender interface {
	AppendBinary(b []byte) ([]byte, error)
}

// encodeFrame appends m's frame (uvarint length, then m) to (*buf)[:0]
// with a single copy of m (frameRoom, then frameLength).
func encodeFrame(buf *[]byte, m binaryAppender) ([]byte, error) {
	b, err := m.AppendBinary(frameRoom(buf))
	*buf = b
	if err != nil {
		return nil, err
	}
	return frameLength(b)
}

// frameRoom returns (*buf)[:0] with room for the longest length prefix,
// after which a frame's message is encoded.
func frameRoom(buf *[]byte) []byte {
	return append((*buf)[:0], make([]byte, binary.MaxVarintLen32)...)
}

// frameLength writes the length of the message encoded after frameRoom
// just before it and returns the frame.
func frameLength(b []byte) ([]byte, error) {
	const room = binary.MaxVarintLen32
	n := len(b) - room
	if n > types.MaxCallFrame {
		return nil, fmt.Errorf("%w: %d bytes", errFrameOver, n)
	}
	var l [room]byte
	k := binary.PutUvarint(l[:], uint64(n))
	copy(b[room-k:], l[:k])
	return b[room-k:], nil
}

// putFrameBuf returns buf to the pool unless it grew large.
func putFrameBuf(buf *[]byte) {
	if cap(*buf) <= callFrameInline {
		frameBufs.Put(buf)
	}
}

// frameWriter writes the frames of one call stream, from any goroutine:
// frames go to a buffer, which the writer that finds no other waiting
// flushes, so that frames written together share a write to the stream.
// A write that makes no progress for IOTimeout (at least half of it)
// fails; the first error sticks, and broken is called with it once.
type frameWriter struct {
	h       *Host
	svc     *callService
	s       network.Stream
	broken  func(error)
	waiting atomic.Int32
	mu      sync.Mutex // guards the rest
	w       *bufio.Writer
	until   time.Time // the stream's write deadline
	err     error
}

func newFrameWriter(h *Host, svc *callService, s network.Stream, broken func(error)) *frameWriter {
	return &frameWriter{h: h, svc: svc, s: s, broken: broken, w: bufio.NewWriterSize(s, callBufSize)}
}

// send encodes m and writes it as one frame; errFrameOver leaves the
// stream usable.
func (fw *frameWriter) send(m binaryAppender) error {
	buf := frameBufs.Get().(*[]byte)
	defer putFrameBuf(buf)
	b, err := encodeFrame(buf, m)
	if err != nil {
		return err
	}
	fw.waiting.Add(1)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.write(b, fw.waiting.Add(-1) == 0)
}

// write writes frame b (none if empty), then flushes the buffer when
// flush is set; fw.mu is held.
func (fw *frameWriter) write(b []byte, flush bool) error {
	if fw.err != nil {
		return fw.err // broken was told
	}
	flush = flush && fw.w.Buffered()+len(b) > 0
	if flush || len(b) > fw.w.Available() {
		fw.err = fw.deadline()
	}
	if fw.err == nil && len(b) > 0 {
		_, fw.err = fw.w.Write(b)
	}
	if fw.err == nil && flush {
		fw.err = fw.w.Flush()
	}
	if fw.err != nil {
		fw.broken(fw.err)
		return fw.err
	}
	if len(b) == 0 {
		return nil
	}
	fw.svc.frames.Add(1)
	fw.svc.bytes.Add(uint64(len(b)))
	return nil
}

// deadline gives the writes to come between IOTimeout/2 and IOTimeout:
// it moves the stream's write deadline IOTimeout ahead only once less
// than half of that is left, since every move costs yamux a timer.
func (fw *frameWriter) deadline() error {
	now := time.Now()
	if fw.until.Sub(now) >= fw.h.cfg.IOTimeout/2 {
		return nil
	}
	fw.until = now.Add(fw.h.cfg.IOTimeout)
	return fw.s.SetWriteDeadline(fw.until)
}

// frameReader reads the frames of one call stream. It waits for a frame
// as long as the stream lives (a warm instance's stream idles between
// calls), but once a frame has begun, each read of it must make progress
// within its timeout; a frame's buffer grows with the bytes received.
type frameReader struct {
	s       network.Stream
	timeout time.Duration
	armed   bool
	r       *bufio.Reader
}

func newFrameReader(s network.Stream, timeout time.Duration) *frameReader {
	fr := &frameReader{s: s, timeout: timeout}
	fr.r = bufio.NewReaderSize(fr, callBufSize)
	return fr
}

// Read reads from the stream, with a deadline while armed.
func (fr *frameReader) Read(p []byte) (int, error) {
	if fr.armed {
		if err := fr.s.SetReadDeadline(time.Now().Add(fr.timeout)); err != nil {
			return 0, err
		}
	}
	return fr.s.Read(p)
}

// next reads one frame: io.EOF when the stream ended cleanly between
// frames; ErrFrameTooLarge, before reading it, for one over
// types.MaxCallFrame.
func (fr *frameReader) next() ([]byte, error) {
	n, err := readLength(fr.r)
	switch {
	case errors.Is(err, io.EOF):
		return nil, io.EOF
	case err != nil:
		return nil, fmt.Errorf("p2p: call frame length: %w", err)
	case n > types.MaxCallFrame:
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, types.MaxCallFrame)
	case int(n) <= fr.r.Buffered():
		b := make([]byte, n)
		_, _ = io.ReadFull(fr.r, b) // buffered: cannot fail
		return b, nil
	}
	return fr.body(int(n))
}

// readLength reads a frame's uvarint length, of at most
// binary.MaxVarintLen32 bytes (MaxCallFrame needs 4): a longer one is
// ErrFrameTooLarge.
func readLength(r io.ByteReader) (uint64, error) {
	var n uint64
	for i := range binary.MaxVarintLen32 {
		c, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: a length of over %d bytes", ErrFrameTooLarge, binary.MaxVarintLen32)
}

// body reads a frame of n bytes not yet buffered, with a deadline.
func (fr *frameReader) body(n int) ([]byte, error) {
	fr.armed = true
	defer func() {
		fr.armed = false
		_ = fr.s.SetReadDeadline(time.Time{})
	}()
	b := make([]byte, 0, min(n, callFrameInline))
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(cap(b), n-len(b)))
		}
		m, err := fr.r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("p2p: call frame body: %w", err)
		}
	}
	return b, nil
}

// CallStats describes the call streams of a host of one protocol
// (CallProtocol, or ForwardProtocol: then read HandleForwards for
// HandleCalls, Forward for Call).
type CallStats struct {
	// StreamsIn and StreamsOut count the call streams open: served by
	// HandleCalls and opened by Call.
	StreamsIn, StreamsOut int64
	// InFlightIn counts the calls running in the CallHandler; InFlightOut
	// the calls waiting in Call.
	InFlightIn, InFlightOut int64
	// Refused counts the inbound call streams reset for breaking the
	// protocol (malformed, oversized, replayed: a Seq not above the last)
	// or over the per-peer bound (overloaded), by reason.
	Refused map[Reason]uint64
}

// callCounters holds a host's CallStats counters.
type callCounters struct {
	streamsIn, streamsOut   atomic.Int64
	inFlightIn, inFlightOut atomic.Int64
	refused                 counters
}

func (c *callCounters) snapshot() CallStats {
	return CallStats{
		StreamsIn: c.streamsIn.Load(), StreamsOut: c.streamsOut.Load(),
		InFlightIn: c.inFlightIn.Load(), InFlightOut: c.inFlightOut.Load(),
		Refused: c.refused.snapshot(),
	}
}

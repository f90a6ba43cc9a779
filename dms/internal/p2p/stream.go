package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/opendms/dms/types"
)

// The DMS envelope protocols. Each stream carries one request envelope and
// then either one reply frame (request/response) or a sequence of frames
// (InvokeProtocol), each a length-prefixed signed envelope, encoded as CBOR
// (types/codec.go: the major versions moved with the encoding, from JSON). CallProtocol
// (call.go) is not one of them: its frames are not envelopes. Request
// sends the request/response messages of a pair of peers on PairProtocol
// (pair.go) instead, where only what must be signed is.
const (
	BidProtocol    protocol.ID = "/dms/bid/4.0.0"    // Bid or Decline -> ack
	AcceptProtocol protocol.ID = "/dms/accept/3.0.0" // Accept -> Confirm or Reject
	// InvokeProtocol carries an Invocation -> Status or Reject frames
	// until the handler returns. Its frames are PairProtocol's messages:
	// the final status is a signed envelope, a running one (a heartbeat)
	// or a Reject is bare, authenticated by the connection, which holds
	// the stream to one peer, and the stream's order.
	InvokeProtocol protocol.ID = "/dms/invoke/3.0.0"
	CancelProtocol protocol.ID = "/dms/cancel/2.0.0" // Cancel -> Status, Reject or ack
	StatusProtocol protocol.ID = "/dms/status/2.0.0" // StatusQuery -> Status or Reject
	BlobProtocol   protocol.ID = "/dms/blob/2.0.0"   // BlobRequest -> header frame, raw bytes
	// ReceiptProtocol carries a provider's signed Receipt of an
	// allocation to its requester -> its countersignature (ReceiptAck) or
	// a Reject saying why it is refused.
	ReceiptProtocol protocol.ID = "/dms/receipt/3.0.0"
	// BidRequestProtocol carries a requester's signed BidRequest straight
	// to one compute node, in sampled mode (direct.go) -> ack.
	BidRequestProtocol protocol.ID = "/dms/bid-request/3.0.0"
	// TraceProtocol carries a requester's TraceQuery to a node its job
	// touched -> the spans of that trace the requester's messages started
	// there (TraceSpans).
	TraceProtocol protocol.ID = "/dms/trace/2.0.0"
	// RecordProtocol carries a node's capability record to a peer ->
	// the peer's own: how connected peers learn what each other offers.
	RecordProtocol protocol.ID = "/dms/record/2.0.0"
)

// protocolKinds returns the kinds a DMS protocol carries as request and as
// reply. Anything else is refused before a handler sees it. For a protocol
// not listed here both are nil, which admits every kind. An ack (no reply
// message) is always admitted. CallProtocol carries no envelope: served or
// requested as an envelope protocol by mistake, it admits none.
func protocolKinds(p protocol.ID) (req, reply []types.Kind) {
	switch p {
	case BidProtocol:
		return []types.Kind{types.KindBid, types.KindDecline}, []types.Kind{}
	case AcceptProtocol:
		return []types.Kind{types.KindAccept}, []types.Kind{types.KindConfirm, types.KindReject}
	case InvokeProtocol:
		return []types.Kind{types.KindInvocation}, []types.Kind{types.KindStatus, types.KindReject}
	case CancelProtocol:
		return []types.Kind{types.KindCancel}, []types.Kind{types.KindStatus, types.KindReject}
	case StatusProtocol:
		return []types.Kind{types.KindStatusQuery}, []types.Kind{types.KindStatus, types.KindReject}
	case BlobProtocol:
		return []types.Kind{types.KindBlobRequest}, []types.Kind{}
	case BidRequestProtocol:
		return []types.Kind{types.KindBidRequest}, []types.Kind{}
	case RecordProtocol:
		return []types.Kind{types.KindCapability}, []types.Kind{types.KindCapability}
	case ReceiptProtocol:
		return []types.Kind{types.KindReceipt}, []types.Kind{types.KindReceiptAck, types.KindReject}
	case TraceProtocol:
		return []types.Kind{types.KindTraceQuery}, []types.Kind{types.KindTraceSpans}
	case CallProtocol:
		return []types.Kind{}, []types.Kind{}
	}
	return nil, nil
}

// frameLimit is the largest frame a stream carrying kinds may send: the
// largest envelope of those kinds (types.EnvelopeLimit), or of any kind
// when kinds is nil (it admits every kind). An Invocation or a Status may
// be types.MaxTaskEnvelopeSize; the frames of every other protocol stay
// within types.MaxEnvelopeSize.
func frameLimit(kinds []types.Kind) int {
	if kinds == nil {
		return types.MaxTaskEnvelopeSize
	}
	limit := types.MaxEnvelopeSize
	for _, k := range kinds {
		limit = max(limit, types.EnvelopeLimit(k))
	}
	return limit
}

// bidRequestKinds are the kinds of the bid-request topic and of
// BidRequestProtocol.
var bidRequestKinds = []types.Kind{types.KindBidRequest}

// Handler answers one verified request from the peer from. A nil reply is an
// ack: the requester's Request returns (nil, nil). A refusal the requester
// should read is a reply message (Reject, Decline); a Go error resets the
// stream, and the requester sees ErrNoReply, not the error.
type Handler func(ctx context.Context, from string, env *types.Envelope, msg types.Message) (types.Message, error)

// Handle serves proto as request/response with fn. The handler's context
// ends after RequestTimeout or on Close. A protocol PairProtocol carries
// is served on it too.
func (h *Host) Handle(proto protocol.ID, fn Handler) {
	if pairIndex(proto) > 0 {
		h.mu.Lock()
		if h.handlers == nil {
			h.handlers = make(map[protocol.ID]Handler)
		}
		h.handlers[proto] = fn
		h.mu.Unlock()
	}
	req, _ := protocolKinds(proto)
	h.host.SetStreamHandler(proto, h.inbound(true, func(ctx context.Context, s network.Stream) {
		h.serveUnary(ctx, s, req, fn)
	}))
}

func (h *Host) serveUnary(ctx context.Context, s network.Stream, kinds []types.Kind, fn Handler) {
	env, msg, err := h.readRequest(s, kinds)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	reply, err := fn(ctx, s.Conn().RemotePeer().String(), env, msg)
	if err != nil {
		h.cfg.Logger.Warn("p2p: handler failed", "protocol", s.Protocol(), "peer", s.Conn().RemotePeer(), "err", err)
		_ = s.Reset()
		return
	}
	if err := h.writeMessage(s, reply); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// Request sends msg to peer to over proto and returns the verified reply, or
// (nil, nil) for an ack. addrs, if any, are added to the peerstore so the
// peer can be dialed. Without a deadline on ctx, RequestTimeout applies.
func (h *Host) Request(ctx context.Context, to string, addrs []string, proto protocol.ID, msg types.Message) (types.Message, error) {
	_, reply, err := h.RequestSigned(ctx, to, addrs, proto, msg)
	return reply, err
}

// RequestSigned is Request, returning the reply's verified envelope too:
// evidence to keep (a countersigned receipt); nil for a reply that is not
// signed (types.Signed). The requests of a protocol PairProtocol carries
// go on the pair's long-lived streams.
func (h *Host) RequestSigned(ctx context.Context, to string, addrs []string, proto protocol.ID, msg types.Message) (*types.Envelope, types.Message, error) {
	if msg == nil {
		return nil, nil, errNilRequest
	}
	if i := pairIndex(proto); i > 0 {
		return h.pairRequest(ctx, to, addrs, i, proto, msg)
	}
	return h.request(ctx, to, addrs, proto, func(s network.Stream) error { return h.writeMessage(s, msg) })
}

// request opens a stream, sends the request with write and reads the reply.
func (h *Host) request(ctx context.Context, to string, addrs []string, proto protocol.ID, write func(network.Stream) error) (*types.Envelope, types.Message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.RequestTimeout)
		defer cancel()
	}
	s, err := h.openStream(ctx, to, addrs, proto)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if err := write(s); err != nil {
		_ = s.Reset()
		return nil, nil, fmt.Errorf("p2p: %s to %s: %w", proto, to, orCtx(ctx, err))
	}
	_ = s.CloseWrite()
	_, kinds := protocolKinds(proto)
	env, reply, err := h.readReply(bufio.NewReader(s), s.Conn().RemotePeer(), kinds)
	if err != nil {
		_ = s.Reset()
		return nil, nil, fmt.Errorf("p2p: %s to %s: %w", proto, to, orCtx(ctx, err))
	}
	_ = s.Close()
	return env, reply, nil
}

// StreamHandler serves one verified request by pushing messages with send,
// which is safe for concurrent use. Returning nil ends the stream cleanly
// (the opener's Recv returns io.EOF after the last frame); an error resets
// it, and frames the opener has not read yet may be lost (QUIC discards them
// on reset): send a terminal Status, then return nil. ctx ends when the
// opener closes or loses the stream, or on Close.
type StreamHandler func(ctx context.Context, from string, env *types.Envelope, msg types.Message, send func(types.Message) error) error

// HandleStream serves proto as a one-request, many-replies stream with fn.
// Its streams last as long as what they follow (an invocation stream, as
// long as its job), so one peer may hold many: they are bounded only by
// MaxInboundStreams.
func (h *Host) HandleStream(proto protocol.ID, fn StreamHandler) {
	req, _ := protocolKinds(proto)
	handler := h.inbound(false, func(ctx context.Context, s network.Stream) {
		h.serveStream(ctx, s, req, fn)
	})
	h.host.SetStreamHandler(proto, handler)
}

func (h *Host) serveStream(ctx context.Context, s network.Stream, kinds []types.Kind, fn StreamHandler) {
	env, msg, err := h.readRequest(s, kinds)
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watched := make(chan struct{})
	go func() { // owned here: serveStream waits for it below
		defer close(watched)
		watchClose(s)
		cancel()
	}()
	out := &sender{h: h, s: s}
	err = fn(ctx, s.Conn().RemotePeer().String(), env, msg, out.send)
	out.close()
	if err != nil {
		h.cfg.Logger.Warn("p2p: stream handler failed", "protocol", s.Protocol(), "peer", s.Conn().RemotePeer(), "err", err)
		_ = s.Reset()
	} else {
		_ = s.Close()
	}
	<-watched
}

// watchClose blocks until the opener closes its side, resets the stream, or
// sends anything after its request (a protocol violation), or the stream is
// closed locally.
func watchClose(s network.Stream) {
	_ = s.SetReadDeadline(time.Time{})
	var b [1]byte
	_, _ = s.Read(b[:])
}

// OpenStream sends msg to peer to over proto and returns the stream for the
// replies. ctx bounds opening and sending only.
func (h *Host) OpenStream(ctx context.Context, to string, addrs []string, proto protocol.ID, msg types.Message) (*Stream, error) {
	if msg == nil {
		return nil, errNilRequest
	}
	s, err := h.openStream(ctx, to, addrs, proto)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if err := h.writeMessage(s, msg); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("p2p: %s to %s: %w", proto, to, orCtx(ctx, err))
	}
	_, kinds := protocolKinds(proto)
	return &Stream{h: h, s: s, r: bufio.NewReader(s), kinds: kinds}, nil
}

// Stream receives the verified messages a StreamHandler pushes. It is not
// safe for concurrent use.
type Stream struct {
	h     *Host
	s     network.Stream
	r     *bufio.Reader
	kinds []types.Kind
}

// Recv returns the next verified message; io.EOF when the handler ended the
// stream cleanly; ctx's error if ctx ended first (the stream is then reset);
// an error wrapping ErrNoReply if the stream broke, or ErrBadReply if a frame
// did not verify.
func (st *Stream) Recv(ctx context.Context) (types.Message, error) {
	stop := context.AfterFunc(ctx, func() { _ = st.s.Reset() })
	defer stop()
	b, err := ReadFrame(st.r, frameLimit(st.kinds))
	if err == nil && len(b) == 0 {
		err = fmt.Errorf("%w: empty frame", ErrBadReply)
	}
	if errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	var msg types.Message
	switch {
	case err != nil:
	case st.s.Protocol() == InvokeProtocol:
		_, msg, err = st.h.readPair(b, st.s.Conn().RemotePeer(), st.kinds, true)
		if err == nil && msg == nil {
			err = fmt.Errorf("%w: an ack on %s", ErrBadReply, InvokeProtocol)
		}
	default:
		_, msg, err = st.h.verifier.open(b, st.s.Conn().RemotePeer(), st.kinds) // not admitted: see readReply
	}
	if err != nil {
		_ = st.s.Reset()
		return nil, orCtx(ctx, replyErr(err))
	}
	return msg, nil
}

// Close ends the stream; the handler's context ends with it.
func (st *Stream) Close() error { return st.s.Close() }

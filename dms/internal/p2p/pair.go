package p2p

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

	"github.com/opendms/dms/types"
)

// PairProtocol carries the request/response messages of one pair of peers
// (bids and declines, accepts, cancels, status queries, and their replies)
// on long-lived streams instead of a stream per message. It is
// CallProtocol's machinery: the same frames, multiplexed, pooled per peer,
// replay-protected by a Seq strictly increasing on the stream, with the
// same bounds and refusals (counted in Stats().Pairs.Refused). A request
// frame's Stdin holds the protocol it stands for (pairProtos) and the
// message; a reply's Stdout holds the reply message.
//
// A message travels as a signed envelope when types.Signed says it must
// (a bid, an accept, a confirm, a final status) and as its bare body
// otherwise: the stream's connection authenticates its sender (Noise or
// TLS binds it to the remote PeerID), and the Seq keeps a frame from being
// played again on it. A message of a signed kind that comes unsigned is
// refused (ReasonUnsigned), as is a signed one that does not verify; an
// envelope is admitted to the replay cache as on its own protocol.
//
// Request sends the messages of pairProtos this way, or on their own
// protocols to a peer that does not serve PairProtocol (an implementation
// may serve only the protocols of a message each, which are simpler);
// Handle serves them from both. Version 2 writes its messages in CBOR.
const PairProtocol protocol.ID = "/dms/pair/2.0.0"

// pairProtos are the request/response protocols PairProtocol carries; a
// request names one by its index + 1.
var pairProtos = []protocol.ID{BidProtocol, AcceptProtocol, CancelProtocol, StatusProtocol}

// pairIndex is proto's number on PairProtocol, 0 if it does not carry it.
func pairIndex(proto protocol.ID) byte {
	return byte(slices.Index(pairProtos, proto) + 1)
}

// The forms of a message on PairProtocol: its first byte.
const (
	pairAck    byte = iota // no message: an ack (replies only)
	pairSealed             // a signed envelope
	pairBare               // uvarint kind length, kind, CBOR body (types.EncodeBody)
)

// appendPair appends msg to b in its form: nil as an ack, a message
// types.Signed says must be signed as an envelope sealed with the host's
// key, any other as its body.
func (h *Host) appendPair(b []byte, msg types.Message) ([]byte, error) {
	switch {
	case msg == nil:
		return append(b, pairAck), nil
	case types.Signed(msg):
		env, err := types.Seal(h.cfg.Key, msg, h.cfg.Clock(), h.cfg.MessageTTL)
		if err != nil {
			return nil, err
		}
		e, err := env.Marshal()
		if err != nil {
			return nil, err
		}
		return append(append(b, pairSealed), e...), nil
	}
	body, err := types.EncodeBody(msg)
	if err != nil {
		return nil, err
	}
	if limit := types.EnvelopeLimit(msg.Kind()); len(body) > limit {
		return nil, fmt.Errorf("%w: %s body of %d bytes, limit %d", types.ErrTooLarge, msg.Kind(), len(body), limit)
	}
	b = append(b, pairBare)
	b = binary.AppendUvarint(b, uint64(len(msg.Kind())))
	return append(append(b, msg.Kind()...), body...), nil
}

// readPair decodes a message of one of kinds from b, sent by remote: an
// envelope is opened (and, when admit, its nonce admitted: see
// verifier.verify), a bare body must be of a kind that needs no
// signature. It returns (nil, nil, nil) for an ack, which only a reply may
// be. Errors are *RejectError.
func (h *Host) readPair(b []byte, remote peer.ID, kinds []types.Kind, reply bool) (*types.Envelope, types.Message, error) {
	if len(b) == 0 {
		return nil, nil, reject(ReasonMalformed, errors.New("p2p: empty pair message"))
	}
	form, b := b[0], b[1:]
	switch form {
	case pairAck:
		if !reply || len(b) > 0 {
			return nil, nil, reject(ReasonMalformed, errors.New("p2p: an ack where a message must be"))
		}
		return nil, nil, nil
	case pairSealed:
		if reply {
			return h.verifier.open(b, remote, kinds) // not admitted: see readReply
		}
		return h.verifier.verify(b, remote, kinds)
	case pairBare:
	default:
		return nil, nil, reject(ReasonMalformed, fmt.Errorf("p2p: pair message of form %d", form))
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) || n > 64 {
		return nil, nil, reject(ReasonMalformed, errors.New("p2p: pair message kind"))
	}
	kind, body := types.Kind(b[k:k+int(n)]), b[k+int(n):]
	if !slices.Contains(kinds, kind) {
		return nil, nil, reject(ReasonWrongKind, fmt.Errorf("%w: %q", ErrWrongKind, kind))
	}
	if limit := frameLimit(kinds); len(body) > limit {
		return nil, nil, reject(ReasonOversized, fmt.Errorf("%w: %d bytes, limit %d", types.ErrTooLarge, len(body), limit))
	}
	msg, err := types.DecodeBody(kind, body)
	if err != nil {
		return nil, nil, reject(ReasonMalformed, err)
	}
	if types.Signed(msg) {
		return nil, nil, reject(ReasonUnsigned, fmt.Errorf("p2p: a %s must be signed", kind))
	}
	return nil, msg, nil
}

// pairRequest sends msg to peer to as a request of proto (pairIndex i) on
// a PairProtocol stream and returns the reply, as request does: an error
// wrapping ErrNoReply when no reply came (the handler failed or refused
// the request, the stream broke), ErrBadReply when it did not verify.
func (h *Host) pairRequest(ctx context.Context, to string, addrs []string, i byte, proto protocol.ID, msg types.Message) (*types.Envelope, types.Message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.RequestTimeout)
		defer cancel()
	}
	remote, err := peer.Decode(to)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %q: %w", ErrBadPeer, to, err)
	}
	direct := func() (*types.Envelope, types.Message, error) {
		return h.request(ctx, to, addrs, proto, func(s network.Stream) error { return h.writeMessage(s, msg) })
	}
	if !h.speaksPair(remote) {
		return direct()
	}
	b, err := h.appendPair([]byte{i}, msg)
	if err != nil {
		return nil, nil, fmt.Errorf("p2p: %s to %s: %w", proto, to, err)
	}
	r, err := h.call(ctx, &h.pairs, to, addrs, &types.CallRequest{Stdin: b})
	switch {
	case errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}) && ctx.Err() == nil:
		return direct() // a peer that serves only the protocols of a message each
	case err != nil && ctx.Err() != nil:
		return nil, nil, ctx.Err()
	case errors.Is(err, ErrBadPeer), errors.Is(err, ErrSelf), errors.Is(err, ErrClosed):
		return nil, nil, err
	case err != nil:
		return nil, nil, fmt.Errorf("p2p: %s to %s: %w: %w", proto, to, ErrNoReply, err)
	case r.Status != types.CallOK:
		return nil, nil, fmt.Errorf("p2p: %s to %s: %w: %s", proto, to, ErrNoReply, r.Error)
	}
	_, kinds := protocolKinds(proto)
	env, reply, err := h.readPair(r.Stdout, remote, kinds, true)
	if err != nil {
		return nil, nil, fmt.Errorf("p2p: %s to %s: %w", proto, to, replyErr(err))
	}
	return env, reply, nil
}

// speaksPair reports whether peer p may serve PairProtocol: it does, or
// identify has not said which protocols it serves yet. A peer that serves
// only the protocols of a message each is sent the message on its own.
func (h *Host) speaksPair(p peer.ID) bool {
	protos, err := h.host.Peerstore().GetProtocols(p)
	return err != nil || len(protos) == 0 || slices.Contains(protos, PairProtocol)
}

// servePair answers one request on a PairProtocol stream from the peer
// the connection authenticated: it is refused, and counted in
// Stats().Streams by reason, as on the request's own protocol. A refused
// request, or one whose handler failed, is answered CallNodeError, which
// the requester reads as no reply (ErrNoReply).
func (h *Host) servePair(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
	remote, err := peer.Decode(from)
	if err != nil { // the connection's own PeerID: cannot fail
		return &types.CallReply{Status: types.CallNodeError, Error: err.Error()}
	}
	b := req.Stdin
	if len(b) == 0 || b[0] == 0 || int(b[0]) > len(pairProtos) {
		return h.refusePair(remote, "", reject(ReasonMalformed, errors.New("p2p: pair request names no protocol it carries")))
	}
	proto := pairProtos[b[0]-1]
	h.mu.Lock()
	fn := h.handlers[proto]
	h.mu.Unlock()
	if fn == nil {
		return &types.CallReply{Status: types.CallUnknown, Error: fmt.Sprintf("p2p: %s is not served here", proto)}
	}
	kinds, _ := protocolKinds(proto)
	env, msg, err := h.readPair(b[1:], remote, kinds, false)
	if err != nil {
		return h.refusePair(remote, proto, err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	reply, err := fn(ctx, from, env, msg)
	if err == nil {
		var out []byte
		if out, err = h.appendPair(nil, reply); err == nil {
			return &types.CallReply{Status: types.CallOK, Stdout: out}
		}
	}
	h.cfg.Logger.Warn("p2p: handler failed", "protocol", proto, "via", PairProtocol, "peer", from, "err", err)
	return &types.CallReply{Status: types.CallNodeError, Error: "p2p: the request was not handled"}
}

// refusePair counts why a pair request was refused and answers it so.
func (h *Host) refusePair(remote peer.ID, proto protocol.ID, err error) *types.CallReply {
	h.streams.add(reasonOf(err))
	h.cfg.Logger.Debug("p2p: request refused", "protocol", proto, "via", PairProtocol, "peer", remote, "err", err)
	return &types.CallReply{Status: types.CallNodeError, Error: err.Error()}
}

package p2p

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/opendms/dms/types"
)

// Sampled bid requests. Instead of publishing a bid request on the topic,
// a requester may send the same signed envelope straight to a few compute
// nodes (SendBidRequests), picked with Sample from the nodes advertised
// under ComputeRendezvous, over BidRequestProtocol. A node admits such a
// request exactly as one from the topic (admitBidRequest: the requester's
// token bucket, shared with its gossip, then the envelope, its signer, the
// requester it names, which must be the stream's remote peer, and the
// replay cache), and hands it to the same BidRequestHandler. A refused one
// is counted in Stats.Streams by reason and its stream reset without an
// ack, so the requester does not count the node as reached.

// ServeBidRequests delivers every bid request admitted on
// BidRequestProtocol to fn, then acks it. fn runs on the stream's handler
// goroutine and must not block. Only a node that computes serves it: a
// requester that reaches any other gets no ack.
func (h *Host) ServeBidRequests(fn BidRequestHandler) {
	h.host.SetStreamHandler(BidRequestProtocol, h.inbound(true, func(_ context.Context, s network.Stream) {
		h.serveBidRequest(s, fn)
	}))
}

func (h *Host) serveBidRequest(s network.Stream, fn BidRequestHandler) {
	from := s.Conn().RemotePeer()
	b, err := h.readRequestFrame(s, frameLimit(bidRequestKinds))
	var v validBidRequest
	if err == nil {
		v, err = h.admitBidRequest(b, from)
	}
	if err != nil {
		h.refuse(s, err)
		return
	}
	h.traffic.directIn.Add(1)
	fn(from.String(), v.env, v.reqs[0]) // BidRequestProtocol carries one
	if err := h.writeEnvelope(s, nil); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// SendBidRequests sends env, a BidRequest sealed with this host's key and
// naming it as requester, to each of peers (PeerIDs, this host excluded)
// on BidRequestProtocol, all at once, and returns those that acked it: the
// nodes that admitted it and will answer. Like PublishEnvelope it holds the
// requester to its own rate limit first, one token for the lot; a refusal
// is a *RejectError (errors.Is ErrRateLimited, ErrSenderMismatch...). A
// peer that fails to take the request is left out of Sample for
// CandidateTTL. ctx bounds every send; without a deadline RequestTimeout
// applies.
func (h *Host) SendBidRequests(ctx context.Context, env *types.Envelope, peers []string) ([]string, error) {
	b, err := env.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := openBidRequest(h.verifier, b, h.host.ID()); err != nil {
		return nil, fmt.Errorf("p2p: send %s: %w", env.Kind, err)
	}
	if err := h.limiter.admit(h.host.ID(), h.cfg.Clock()); err != nil {
		return nil, fmt.Errorf("p2p: send %s: %w", env.Kind, err)
	}
	var (
		mu      sync.Mutex
		reached []string
		wg      sync.WaitGroup
	)
	for _, p := range peers {
		wg.Go(func() {
			_, _, err := h.request(ctx, p, nil, BidRequestProtocol, func(s network.Stream) error { return h.writeEnvelope(s, b) })
			if err != nil {
				h.cfg.Logger.Debug("p2p: bid request not taken", "peer", p, "err", err)
				h.cands.fail(p, time.Now())
				return
			}
			mu.Lock()
			reached = append(reached, p)
			mu.Unlock()
		})
	}
	wg.Wait()
	return reached, nil
}

package p2p

import (
	"context"
	"fmt"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/types"
)

// BidRequestTopic carries signed BidRequest envelopes to every node.
const BidRequestTopic = "/dms/bid-requests/1.0.0"

// BidRequestHandler receives a validated bid request: from is the PeerID of
// its publisher, who also signed env. It runs on the subscription's
// goroutine: it must not block (hand the request to an actor), or requests
// past SubscriptionBuffer are dropped.
type BidRequestHandler func(from string, env *types.Envelope, req *types.BidRequest)

// validBidRequest is what the validator attaches to an accepted message.
type validBidRequest struct {
	env *types.Envelope
	req *types.BidRequest
}

// startPubsub starts GossipSub with strict message signing, registers the
// bid-request validator and joins the topic. Flood publishing sends a
// host's own messages to every topic peer it is connected to, not only to
// its mesh, which may not be formed yet (it forms at heartbeats, 1s apart):
// a bid request must not miss nodes that just joined.
func (h *Host) startPubsub() error {
	ps, err := pubsub.NewGossipSub(h.ctx, h.host,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithFloodPublish(true),
		pubsub.WithLogger(h.cfg.Logger.With("component", "pubsub")),
	)
	if err != nil {
		return fmt.Errorf("p2p: gossipsub: %w", err)
	}
	if err := ps.RegisterTopicValidator(BidRequestTopic, h.validateBidRequest); err != nil {
		return fmt.Errorf("p2p: bid request validator: %w", err)
	}
	t, err := ps.Join(BidRequestTopic)
	if err != nil {
		return fmt.Errorf("p2p: join %s: %w", BidRequestTopic, err)
	}
	h.topic = t
	return nil
}

// validateBidRequest is the topic validator. It counts every refusal. Either
// way a refused message is neither delivered nor forwarded; one that may be
// innocent (expired in transit, a duplicate, no room) is ignored, any other
// rejected, which would count against the forwarder if peer scoring were on.
func (h *Host) validateBidRequest(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	v, err := checkBidRequest(h.verifier, m.GetData(), m.GetFrom())
	if err != nil {
		r := reasonOf(err)
		h.gossip.add(r)
		h.cfg.Logger.Debug("p2p: bid request refused", "publisher", m.GetFrom(), "err", err)
		if r == ReasonExpired || r == ReasonReplayed || r == ReasonOverloaded {
			return pubsub.ValidationIgnore
		}
		return pubsub.ValidationReject
	}
	m.ValidatorData = v
	return pubsub.ValidationAccept
}

// checkBidRequest verifies data published by publisher: a bid request
// envelope signed by the publisher and naming it as requester, so a
// publisher cannot direct every node's bids at somebody else. Errors are
// *RejectError.
func checkBidRequest(v *verifier, data []byte, publisher peer.ID) (validBidRequest, error) {
	env, msg, err := v.open(data, publisher, []types.Kind{types.KindBidRequest})
	if err != nil {
		return validBidRequest{}, err
	}
	req := msg.(*types.BidRequest)
	if req.Requester != publisher.String() {
		return validBidRequest{}, reject(ReasonRequesterMismatch, fmt.Errorf("%w: %q published by %s", ErrRequesterMismatch, req.Requester, publisher))
	}
	if err := v.admit(env); err != nil {
		return validBidRequest{}, err
	}
	return validBidRequest{env: env, req: req}, nil
}

// PublishEnvelope publishes a sealed BidRequest on the topic. It is validated
// like any other first, so it must be signed by this host's key and name
// this host as Requester. Subscribers of this host receive it too.
func (h *Host) PublishEnvelope(ctx context.Context, env *types.Envelope) error {
	b, err := env.Marshal()
	if err != nil {
		return err
	}
	if err := h.topic.Publish(ctx, b); err != nil {
		return fmt.Errorf("p2p: publish %s: %w", env.Kind, err)
	}
	return nil
}

// SubscribeBidRequests delivers every validated bid request, this host's
// own included, to fn on a goroutine of its own until Close.
func (h *Host) SubscribeBidRequests(fn BidRequestHandler) error {
	sub, err := h.topic.Subscribe(pubsub.WithBufferSize(h.cfg.SubscriptionBuffer))
	if err != nil {
		return fmt.Errorf("p2p: subscribe %s: %w", BidRequestTopic, err)
	}
	if !h.spawn(func() { h.deliver(sub, fn) }) {
		sub.Cancel()
		return ErrClosed
	}
	return nil
}

func (h *Host) deliver(sub *pubsub.Subscription, fn BidRequestHandler) {
	defer sub.Cancel()
	for {
		m, err := sub.Next(h.ctx)
		if err != nil {
			return
		}
		if v, ok := m.ValidatorData.(validBidRequest); ok {
			fn(m.GetFrom().String(), v.env, v.req)
		}
	}
}

// TopicPeers returns how many connected peers subscribe to bid requests:
// how many answers a requester can expect, this host excluded.
func (h *Host) TopicPeers() int { return len(h.topic.ListPeers()) }

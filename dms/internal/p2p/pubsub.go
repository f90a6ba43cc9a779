package p2p

import (
	"context"
	"crypto/sha256"
	"fmt"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/types"
)

// BidRequestTopic carries signed BidRequest envelopes to every node, and
// BidRequests envelopes of several requests of one requester (a requester
// under load publishes so: one signature and one verification at each
// node for them all), in gossip messages that carry no gossipsub signature
// (version 1 did). Version 4 added BidRequests: a node of version 3 would
// refuse them and score down the peers that forward them, so the versions
// do not share a topic. Version 5 writes envelopes in CBOR, not JSON.
const BidRequestTopic = "/dms/bid-requests/5.0.0"

// BidRequestHandler receives a validated bid request: from is the PeerID of
// its publisher, who signed env and is its requester. It runs on the subscription's
// goroutine: it must not block (hand the request to an actor), or requests
// past SubscriptionBuffer are dropped.
type BidRequestHandler func(from string, env *types.Envelope, req *types.BidRequest)

// validBidRequest is what the validator attaches to an accepted message:
// its envelope and the bid requests it holds (one, or a BidRequests').
type validBidRequest struct {
	publisher peer.ID
	env       *types.Envelope
	reqs      []*types.BidRequest
}

// gossipKinds are the kinds of the bid-request topic.
var gossipKinds = []types.Kind{types.KindBidRequest, types.KindBidRequests}

// maxGossipRPC bounds one gossipsub RPC (gossipsub's default, stated here
// because the envelope limit relies on it): an RPC larger is dropped with
// its stream before it is decoded. Envelopes inside are held to
// types.MaxEnvelopeSize by the validator, before they are parsed.
const maxGossipRPC = 1 << 20

// startPubsub starts GossipSub without message signing (StrictNoSign),
// with peer scoring (score.go) and the bid-request validator, and joins the
// topic. A bid request is an envelope signed by its requester, which the
// validator verifies: a gossipsub signature on top doubled the signing and
// the verifying of every request, a tenth of all CPU in a burst of jobs.
// Messages then carry no author or sequence number, so a message's ID is
// the hash of its content (messageID). Flood
// publishing sends a host's own messages to every topic peer it is
// connected to, not only to its mesh, which may not be formed yet (it forms
// at heartbeats, 1s apart): a bid request must not miss nodes that just joined.
// gossipQueue is the length of gossipsub's queues of messages to each peer
// and of messages to validate.
const gossipQueue = 1024

func (h *Host) startPubsub() error {
	opts := []pubsub.Option{
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithMessageIdFn(messageID),
		pubsub.WithFloodPublish(true),
		pubsub.WithMaxMessageSize(maxGossipRPC),
		// Both queues default to 32 and drop what overflows them: a burst
		// of 50 jobs lost a third of its bid requests. A queue holds
		// pointers to messages already bounded by the rate limit.
		pubsub.WithPeerOutboundQueueSize(gossipQueue),
		pubsub.WithValidateQueueSize(gossipQueue),
		pubsub.WithPeerScore(peerScoreParams(), peerScoreThresholds()),
		pubsub.WithRawTracer(refusalTracer{c: &h.gossip}),
		pubsub.WithRawTracer(trafficTracer{t: &h.traffic}),
		pubsub.WithRawTracer(h.watch),
		pubsub.WithLogger(h.cfg.Logger.With("component", "pubsub")),
	}
	inspectEvery := banCheck
	if h.cfg.scoreInspect != nil {
		inspectEvery = h.cfg.scoreInspectPeriod
	}
	opts = append(opts, pubsub.WithPeerScoreInspect(pubsub.ExtendedPeerScoreInspectFn(h.inspectScores), inspectEvery))
	var ph host.Host = h.host
	if h.cfg.pubsubHost != nil {
		ph = h.cfg.pubsubHost(ph)
	}
	ps, err := pubsub.NewGossipSub(h.ctx, ph, opts...)
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
	h.ps, h.topic = ps, t
	return nil
}

// messageID names a gossip message by GossipID of its data.
func messageID(m *pb.Message) string { return GossipID(m.GetData()) }

// GossipID names a gossip message by the SHA-256 of its data: two copies
// of one envelope are one message, and gossipsub delivers and forwards it
// once. A peer that gossips on BidRequestTopic must name messages so.
func GossipID(data []byte) string {
	sum := sha256.Sum256(data)
	return string(sum[:])
}

// validateBidRequest is the topic validator (admitGossip). It counts
// every refusal. Either way a refused message is neither delivered nor
// forwarded. One that may be innocent is ignored: its fate depends on the
// clock or the load (expired, expiry too far ahead, replayed, rate limited,
// no room), which can differ between the forwarder and this host. Any other
// is rejected, which scores down the peer that forwarded it (score.go): no
// honest node forwards one.
func (h *Host) validateBidRequest(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	local := m.ReceivedFrom == h.host.ID()
	v, err := h.admitGossip(m.GetData(), m.ReceivedFrom)
	if err == nil {
		m.ValidatorData = v
		return pubsub.ValidationAccept
	}
	r := reasonOf(err)
	h.gossip.add(r)
	h.cfg.Logger.Debug("p2p: bid request refused", "from", m.ReceivedFrom, "err", err)
	if local { // published here: validated inside PublishEnvelope, which reports why
		h.ownRefusals.Store(string(m.GetData()), err)
	}
	switch r {
	case ReasonExpired, ReasonBadExpiry, ReasonReplayed, ReasonRateLimited, ReasonOverloaded:
		return pubsub.ValidationIgnore
	}
	return pubsub.ValidationReject
}

// admitGossip is every check a bid request on the topic passes. A gossip
// message names no publisher: the publisher is the envelope's signer. So
// the signature is checked before a token is taken from the publisher's
// rate bucket: a forger cannot spend an honest requester's tokens, and a
// flooder costs each node one verification per message, as when gossipsub
// verified its own signature first. A nonce already admitted is refused
// before anything else is checked, so that a flood of copies of a request
// costs each node a decode and a lookup, not a verification: the copy is
// a replay or a forgery, refused either way. A copy from the peer that
// delivered that nonce before is rejected as repeated, which scores the
// peer down (no honest node forwards two encodings of one envelope): a
// peer flooding copies is graylisted after about eleven. After the signature, the
// replay cache admits the nonce (signer and nonce), and only then is the
// rate bucket charged: copies of
// an honest request in other bytes (other gossip messages) are refused as
// replays without costing its publisher a token, so nobody can drain an
// honest requester's bucket with its own requests. A request the bucket
// refuses has its nonce forgotten again, so that a flooder's refused
// requests do not fill the replay cache. This host's own
// publications (local) come from PublishEnvelope: their publisher is this
// host, whose key must have signed them, but the signature is not verified
// again (a tenth of a millisecond before every publication leaves). Errors
// are *RejectError.
func (h *Host) admitGossip(data []byte, via peer.ID) (validBidRequest, error) {
	local := via == h.host.ID()
	env, err := decode(data, gossipKinds)
	if err != nil {
		return validBidRequest{}, err
	}
	if err := h.verifier.unseen(env, via); err != nil {
		return validBidRequest{}, err
	}
	publisher := h.host.ID()
	if !local {
		if publisher, err = signer(env); err != nil {
			return validBidRequest{}, err
		}
	}
	bid, err := checkRequest(h.verifier, env, publisher, gossipKinds, local)
	if err != nil {
		return validBidRequest{}, err
	}
	if err := h.verifier.admit(bid.env, via); err != nil {
		return validBidRequest{}, err
	}
	if err := h.limiter.admitN(publisher, len(bid.reqs), h.cfg.Clock()); err != nil {
		h.verifier.forget(bid.env)
		return validBidRequest{}, err
	}
	return bid, nil
}

// admitBidRequest is every check a bid request sent straight to this node
// on BidRequestProtocol passes, publisher being the stream's remote peer
// (authenticated by the connection). Cheapest first: a token from the
// publisher's rate bucket, then checkBidRequest. Errors are *RejectError.
func (h *Host) admitBidRequest(data []byte, publisher peer.ID) (validBidRequest, error) {
	if err := h.limiter.admit(publisher, h.cfg.Clock()); err != nil {
		return validBidRequest{}, err
	}
	return checkBidRequest(h.verifier, data, publisher)
}

// checkBidRequest verifies data published by publisher (openBidRequest)
// and admits its nonce, refusing a replay. Errors are *RejectError.
func checkBidRequest(v *verifier, data []byte, publisher peer.ID) (validBidRequest, error) {
	bid, err := openBidRequest(v, data, publisher)
	if err != nil {
		return validBidRequest{}, err
	}
	if err := v.admit(bid.env, ""); err != nil {
		return validBidRequest{}, err
	}
	return bid, nil
}

// openBidRequest checks that data is a bid request envelope signed by the
// publisher and naming it as requester, so a publisher cannot direct every
// node's bids at somebody else. Errors are *RejectError.
func openBidRequest(v *verifier, data []byte, publisher peer.ID) (validBidRequest, error) {
	env, err := decode(data, bidRequestKinds)
	if err != nil {
		return validBidRequest{}, err
	}
	return checkRequest(v, env, publisher, bidRequestKinds, false)
}

// checkRequest is openBidRequest on a decoded envelope of one of kinds;
// own as for verifier.check. Every request of a BidRequests must name the
// publisher, and there must be 1 to types.MaxBidRequests of them.
func checkRequest(v *verifier, env *types.Envelope, publisher peer.ID, kinds []types.Kind, own bool) (validBidRequest, error) {
	msg, err := v.check(env, publisher, kinds, own)
	if err != nil {
		return validBidRequest{}, err
	}
	var reqs []*types.BidRequest
	switch m := msg.(type) {
	case *types.BidRequest:
		reqs = []*types.BidRequest{m}
	case *types.BidRequests:
		if n := len(m.Requests); n == 0 || n > types.MaxBidRequests {
			return validBidRequest{}, reject(ReasonMalformed, fmt.Errorf("p2p: %d bid requests in one message, want 1 to %d", n, types.MaxBidRequests))
		}
		reqs = make([]*types.BidRequest, len(m.Requests))
		for i := range m.Requests {
			reqs[i] = &m.Requests[i]
		}
	}
	for _, req := range reqs {
		if req.Requester != publisher.String() {
			return validBidRequest{}, reject(ReasonRequesterMismatch, fmt.Errorf("%w: %q published by %s", ErrRequesterMismatch, req.Requester, publisher))
		}
	}
	return validBidRequest{publisher: publisher, env: env, reqs: reqs}, nil
}

// PublishEnvelope publishes a sealed BidRequest, or BidRequests, on the
// topic. It is validated like any other first, so it must be signed by
// this host's key and name this host as Requester, and is held to the
// host's rate limit (a token for each request); a refusal is a
// *RejectError (errors.Is ErrRateLimited, ErrSenderMismatch...).
// Subscribers of this host receive it too.
func (h *Host) PublishEnvelope(ctx context.Context, env *types.Envelope) error {
	b, err := env.Marshal()
	if err != nil {
		return err
	}
	if err := h.topic.Publish(ctx, b); err != nil {
		if why, ok := h.ownRefusals.LoadAndDelete(string(b)); ok {
			err = why.(error)
		}
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
			for _, req := range v.reqs {
				h.traffic.gossipIn.Add(1)
				fn(v.publisher.String(), v.env, req)
			}
		}
	}
}

// TopicPeers returns how many connected peers subscribe to bid requests:
// how many answers a requester can expect, this host excluded.
func (h *Host) TopicPeers() int { return len(h.topic.ListPeers()) }

// TopicPeerIDs lists the peers subscribed to the bid-request topic.
func (h *Host) TopicPeerIDs() []string {
	ids := h.topic.ListPeers()
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

package hostile

import (
	"context"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/opendms/dms/types"
)

// Observed is a bid request seen on the topic: verified (signature, expiry)
// and published by another peer.
type Observed struct {
	Raw []byte // the gossip message's data, as it arrived
	Env *types.Envelope
	Req *types.BidRequest
}

// Subscribe makes the peer one of the topic's subscribers and calls fn, on
// one goroutine, for every valid bid request another peer publishes, until
// Close. A subscriber that never answers is the Silent bidder: requesters
// count it among the nodes they expect an answer from.
func (p *Peer) Subscribe(fn func(Observed)) error {
	sub, err := p.topic.Subscribe(pubsub.WithBufferSize(4096))
	if err != nil {
		return fmt.Errorf("hostile: subscribe: %w", err)
	}
	ok := p.spawn(func() {
		defer sub.Cancel()
		for {
			m, err := sub.Next(p.ctx)
			if err != nil {
				return
			}
			if m.ReceivedFrom == p.host.ID() {
				continue // its own publications
			}
			o, ok := observe(m.GetData())
			if !ok {
				continue
			}
			p.stats.bidRequestsSeen.Add(1)
			fn(o)
		}
	})
	if !ok {
		sub.Cancel()
		return errClosed
	}
	return nil
}

// observe decodes and verifies a gossiped bid request.
func observe(data []byte) (Observed, bool) {
	env, err := types.UnmarshalEnvelope(data)
	if err != nil || env.Kind != types.KindBidRequest {
		return Observed{}, false
	}
	msg, err := env.Open(time.Now())
	if err != nil {
		return Observed{}, false
	}
	return Observed{Raw: data, Env: env, Req: msg.(*types.BidRequest)}, true
}

// Publish publishes data on the bid-request topic as it is, to every
// connected subscriber (flood publishing). The peer's own gossipsub drops a
// message it already published or forwarded: data must differ each time.
func (p *Peer) Publish(ctx context.Context, data []byte) error {
	if err := p.topic.Publish(ctx, data); err != nil {
		return fmt.Errorf("hostile: publish: %w", err)
	}
	p.stats.published.Add(1)
	return nil
}

// PublishBidRequest signs req with the peer's key and publishes it: a valid
// bid request, once req names this peer as Requester. The envelope expires
// a second after req.Deadline, as a DMS node's do.
func (p *Peer) PublishBidRequest(ctx context.Context, req *types.BidRequest) error {
	now := time.Now()
	env, err := types.Seal(p.key, req, now, req.Deadline.Sub(now)+time.Second)
	if err != nil {
		return err
	}
	b, err := env.Marshal()
	if err != nil {
		return err
	}
	return p.Publish(ctx, b)
}

// BidRequest returns a bid request for a fresh job naming this peer as its
// requester, its bids to be sent to the peer's addresses: what
// PublishBidRequest needs to be valid.
func (p *Peer) BidRequest(res types.Resources, window time.Duration) *types.BidRequest {
	return &types.BidRequest{
		JobID: types.JobID("hostile-" + p.node.UUID[:8] + "-" + randomHex(6)), Requester: p.ID(),
		ReplyAddrs: p.Addrs(), Executor: "wasm", Resources: res, Deadline: time.Now().Add(window),
	}
}

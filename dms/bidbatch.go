package dms

import (
	"context"
	"errors"
	"time"

	"github.com/opendms/dms/types"
)

// gossipBatcher publishes this node's bid requests on the topic: each on
// its own while they come one at a time, so that a lone job waits for
// nothing; and, under load, those that came while a publication was under
// way together, up to gossipBatch in one BidRequests: one
// signature, one gossip message and one verification at each node for
// them all. It adds no delay of its own: a batch is what queued behind
// the last publication. Each request still draws a token of the node's
// rate limit; a batch the limit refuses whole is published one request
// at a time, so that those with a token go.
type gossipBatcher struct {
	d  *DMS
	in chan *gossipReq
	// send publishes an envelope: the host's PublishEnvelope.
	send func(context.Context, *types.Envelope) error
}

// gossipBatch is the most requests the batcher puts in one message, under
// types.MaxBidRequests: in a burst of 500 jobs on 5 nodes, batches of up to
// 16 made the makespan 2.07-2.38 s against 2.44-2.46 s without batching,
// but batches of up to 32 or 64 3.0-4.1 s: a node handed that many
// requests of one requester at once declines most as busy, and
// remembers no more than lateBindPerRequester of them for late binding
// (node/latebind.go), so the rest wait for their next auction.
const gossipBatch = 16

// gossipReq is one job's bid request waiting for its publication.
type gossipReq struct {
	req  *types.BidRequest
	done chan error // the outcome of its publication
}

func newGossipBatcher(d *DMS) *gossipBatcher {
	return &gossipBatcher{d: d, in: make(chan *gossipReq), send: d.host.PublishEnvelope}
}

// publish publishes req, alone or in a batch, and returns when it is out.
func (b *gossipBatcher) publish(ctx context.Context, req *types.BidRequest) error {
	g := &gossipReq{req: req, done: make(chan error, 1)}
	select {
	case b.in <- g:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.d.ctx.Done():
		return errBatcherClosed
	}
	select {
	case err := <-g.done:
		return err
	case <-ctx.Done(): // it goes out anyway: the job no longer waits for it
		return ctx.Err()
	}
}

var errBatcherClosed = errors.New("dms: the node is closing")

// run publishes what comes in until ctx ends.
func (b *gossipBatcher) run(ctx context.Context) {
	for {
		var batch []*gossipReq
		select {
		case g := <-b.in:
			batch = append(batch, g)
		case <-ctx.Done():
			return
		}
	queued:
		for len(batch) < gossipBatch {
			select {
			case g := <-b.in:
				batch = append(batch, g)
			default:
				break queued
			}
		}
		b.publishAll(ctx, batch)
	}
}

// publishAll publishes batch and tells each request its outcome.
func (b *gossipBatcher) publishAll(ctx context.Context, batch []*gossipReq) {
	if len(batch) > 1 {
		err := b.sendBatch(ctx, batch)
		if err == nil {
			for _, g := range batch {
				g.done <- nil
			}
			return
		}
		b.d.log.Debug("bid requests: a batch not published, publishing each", "requests", len(batch), "err", err)
	}
	for _, g := range batch {
		g.done <- b.sendOne(ctx, g.req)
	}
}

// sendOne seals and publishes one bid request.
func (b *gossipBatcher) sendOne(ctx context.Context, req *types.BidRequest) error {
	now := b.d.opts.clock()
	env, err := types.Seal(b.d.key, req, now, req.Deadline.Sub(now)+time.Second)
	if err != nil {
		return err
	}
	return b.send(ctx, env)
}

// sendBatch seals the requests of batch in one BidRequests, which lives
// as long as the longest bid window in it, and publishes it.
func (b *gossipBatcher) sendBatch(ctx context.Context, batch []*gossipReq) error {
	now := b.d.opts.clock()
	msg := &types.BidRequests{Requests: make([]types.BidRequest, len(batch))}
	var last time.Time
	for i, g := range batch {
		msg.Requests[i] = *g.req
		if g.req.Deadline.After(last) {
			last = g.req.Deadline
		}
	}
	env, err := types.Seal(b.d.key, msg, now, last.Sub(now)+time.Second)
	if err != nil {
		return err
	}
	if err := b.send(ctx, env); err != nil {
		return err
	}
	b.d.batchedBidRequests.Add(uint64(len(batch)))
	return nil
}

package dms

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/dms/internal/tracing"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// network adapts the libp2p host to the narrow interfaces of the Node and
// the orchestrator. A message to the node's own PeerID is delivered in
// process: a node that computes can win its own jobs.
type network struct{ d *DMS }

var (
	_ node.Network         = (*network)(nil)
	_ orchestrator.Network = (*network)(nil)
)

func (n *network) self(peer string) bool { return peer == n.d.host.ID() }

// SendBid delivers a bid or decline to the requester's orchestrator.
func (n *network) SendBid(ctx context.Context, peer string, addrs []string, msg types.Message) error {
	n.d.traces.bidSent(msg)
	n.d.metrics.sent(msg)
	if n.self(peer) {
		n.d.deliverBid(msg)
		return nil
	}
	if b, ok := msg.(*types.Bid); ok {
		bid := *b
		bid.Addrs = n.d.host.Addrs() // how the requester reaches us again, after a restart too
		msg = &bid
	}
	_, err := n.d.host.Request(ctx, peer, addrs, p2p.BidProtocol, msg)
	return err
}

// FetchBlob fetches and verifies a blob held by peer. A peer that answers
// it holds none fails with node.ErrBlobNotFound.
func (n *network) FetchBlob(ctx context.Context, peer string, cid string) ([]byte, error) {
	if n.self(peer) {
		if !n.d.blobs.Has(cid) {
			return nil, fmt.Errorf("%w: %s", node.ErrBlobNotFound, cid)
		}
		return n.d.blobs.Get(cid)
	}
	data, err := n.d.host.FetchBlob(ctx, peer, nil, cid, MaxBlobSize)
	if errors.Is(err, p2p.ErrBlobNotFound) {
		err = fmt.Errorf("%w: %w", node.ErrBlobNotFound, err)
	}
	return data, err
}

// maxProviders is how many of a blob's providers FindProviders returns.
const maxProviders = 5

// FindProviders returns up to maxProviders peers other than this node that
// the DHT names as holding a blob.
func (n *network) FindProviders(ctx context.Context, cid string) []string {
	provs, err := n.d.host.FindProviders(ctx, cid, maxProviders)
	if err != nil {
		n.d.log.Debug("finding providers", "cid", cid, "err", err)
	}
	peers := make([]string, 0, len(provs))
	for _, p := range provs {
		peers = append(peers, p.ID)
	}
	return peers
}

// Connected reports whether the host is connected to peer.
func (n *network) Connected(peer string) bool { return n.self(peer) || n.d.host.Connected(peer) }

// SendReceipt delivers a receipt, signed, to its requester and keeps its
// countersignature (sendReceipt).
func (n *network) SendReceipt(ctx context.Context, peer string, r *types.Receipt) error {
	return n.d.sendReceipt(ctx, peer, r)
}

// Provide announces a blob in the DHT.
func (n *network) Provide(ctx context.Context, cid string) error { return n.d.host.Provide(ctx, cid) }

// topicWait bounds how long a bid request waits for the topic's first
// subscribers to become known, right after the node joined the network.
const topicWait = 2 * time.Second

// Publish signs a bid request and sends it to the nodes that may bid, and
// returns those it reached: this node too when it computes and was asked.
// It publishes it on the bid-request topic, which reaches every node, or,
// as network.sampling says (bidSampling), sends it straight to d sampled
// compute nodes (publishSampled), and falls back to the topic when it
// knows fewer than d of them or none took it, or when wide: an earlier
// auction of the job drew no bid from the nodes asked.
func (n *network) Publish(ctx context.Context, req *types.BidRequest, wide bool) ([]string, error) {
	var span trace.Span
	req.Trace, span = n.d.traces.auction(req.JobID)
	reached, err := n.publish(ctx, req, wide)
	if span != nil {
		span.SetAttributes(attribute.Int("reached", len(reached)))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	return reached, err
}

func (n *network) publish(ctx context.Context, req *types.BidRequest, wide bool) ([]string, error) {
	if d := n.d.bidSampling(req); d > 0 && !wide {
		now := n.d.opts.clock()
		env, err := types.Seal(n.d.key, req, now, req.Deadline.Sub(now)+time.Second)
		if err != nil {
			return nil, err
		}
		reached, err := n.d.publishSampled(ctx, env, req, d)
		if err != nil || len(reached) > 0 {
			return reached, err
		}
		n.d.log.Debug("bid request: no compute node to sample, publishing on the topic", "job", req.JobID, "candidates", n.d.host.Candidates(req.Resources.CPU))
	}
	peers := n.d.waitTopicPeers(ctx)
	if err := n.d.gossip.publish(ctx, req); err != nil {
		return nil, err
	}
	if n.d.node != nil {
		peers = append(peers, n.d.host.ID())
	}
	return peers, nil
}

// bidSampling is how many nodes req goes to (network.sampling): 0 to
// gossip it to all; with auto, DefaultBidSampling once the node knows
// network.sample_above compute nodes that may fit it.
func (d *DMS) bidSampling(req *types.BidRequest) int {
	if s := d.sampling; s.auto && d.host.Candidates(req.Resources.CPU) < s.above {
		return 0
	}
	return d.sampling.d
}

// sampleRounds bounds the rounds of a sampled bid request: the nodes that
// did not take it in the first are replaced once.
const sampleRounds = 2

// publishSampled sends the sealed bid request env to k compute nodes chosen
// uniformly at random among the candidates the host has cached from the
// DHT (this node is one when it computes), replaces once those that did not
// take it, and returns those that did. It returns nothing, and no error,
// when fewer than k candidates are known or none took it: the caller then
// publishes on the topic.
//
// The rounds share the time to the bid window's end: a round's sends end
// when it has its share of what is left (the first, half the window), so
// a candidate that vanished without a word, whose dial hangs, costs the
// first round's share and not the whole window: the Job learns whom the
// request reached (Published) in time to close the window on their
// answers, and the replacement still has the rest of the window. No
// round starts once the window ended, as a send then cannot be taken and
// would mark the replacement failed though it did nothing wrong.
func (d *DMS) publishSampled(ctx context.Context, env *types.Envelope, req *types.BidRequest, k int) ([]string, error) {
	self := d.node != nil
	known := d.host.Candidates(req.Resources.CPU)
	if self {
		known++
	}
	if known < k {
		return nil, nil
	}
	var reached []string
	asked := make(map[string]bool, k)
	for round := range sampleRounds {
		left := req.Deadline.Sub(d.opts.clock())
		if left <= 0 || ctx.Err() != nil {
			break
		}
		picks := d.host.Sample(k-len(reached), req.Resources.CPU, self, asked)
		if len(picks) == 0 {
			break
		}
		remote := make([]string, 0, len(picks))
		for _, p := range picks {
			asked[p] = true
			if p != d.host.ID() {
				remote = append(remote, p)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, left/time.Duration(sampleRounds-round))
		got, err := d.host.SendBidRequests(rctx, env, remote) // also checks env and this node's rate
		cancel()
		if err != nil {
			return nil, err
		}
		if len(remote) < len(picks) {
			d.bidRequested(d.host.ID(), req)
			got = append(got, d.host.ID())
		}
		if reached = append(reached, got...); len(reached) >= k {
			break
		}
	}
	return reached, nil
}

// waitTopicPeers returns the peers subscribed to the bid-request topic.
// Right after joining, subscriptions take a moment to propagate: when the
// node has connections but knows no subscriber yet, it waits up to
// topicWait for the first one.
func (d *DMS) waitTopicPeers(ctx context.Context) []string {
	deadline := time.Now().Add(topicWait)
	for {
		peers := d.host.TopicPeerIDs()
		if len(peers) > 0 || len(d.host.Peers()) == 0 || time.Now().After(deadline) {
			return peers
		}
		select {
		case <-ctx.Done():
			return peers
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// NetworkStats is what a node's network layer knows and counted since it
// started: for benchmarks and monitoring.
type NetworkStats struct {
	Peers      int // connected peers
	TopicPeers int // connected peers subscribed to bid requests
	// Candidates counts the compute nodes this node samples bid requests
	// to (0 with network.sampling gossip, and in auto mode until the node
	// knows network.sample_above peers).
	Candidates int
	// BidRequestsGossip and BidRequestsDirect count the bid requests this
	// node admitted and handed to its Node, from the topic and sent straight
	// to it (sampled).
	BidRequestsGossip, BidRequestsDirect uint64
	// BidRequestsBatched counts this node's own bid requests it published
	// on the topic several in one message, as it does under load.
	BidRequestsBatched uint64
	// DHTClient reports that the node only queries the DHT (network.dht
	// client), and DHTServers how many DHT servers its routing table holds.
	DHTClient  bool
	DHTServers int
	// GossipSent counts the copies of bid requests this node sent on the
	// topic, its own and forwarded ones; GossipControl the message IDs it
	// sent in gossip control messages (IHAVE, IWANT, IDONTWANT) on them.
	GossipSent, GossipControl uint64
	// Frames counts the stream frames this node sent, by protocol: bid
	// requests, bids, declines, accepts, confirms, invocations, statuses,
	// cancels, blob replies and the acks to them.
	Frames map[string]uint64
	// Refused counts the inbound messages refused, by reason, on the
	// topic and on streams (sampled bid requests included).
	RefusedGossip, RefusedStreams map[string]uint64
	// GossipRepairs counts the connected peers gossipsub had dropped that
	// this node handed back to it, or whose topics it had forgotten that
	// this node made announce them again (docs/reliability.md, gossip
	// peers).
	GossipRepairs uint64
	// Bans counts the peers banned for ten minutes because their gossip
	// score fell below the graylist threshold (docs/security.md).
	Bans uint64
}

// Messages returns the messages counted: gossip copies and control IDs,
// and stream frames.
func (s NetworkStats) Messages() uint64 {
	n := s.GossipSent + s.GossipControl
	for _, c := range s.Frames {
		n += c
	}
	return n
}

// NetworkStats returns the node's network figures; zero before Start.
func (d *DMS) NetworkStats() NetworkStats {
	if d.running() != nil {
		return NetworkStats{}
	}
	t, st := d.host.Traffic(), d.host.Stats()
	out := NetworkStats{
		Peers: len(d.host.Peers()), TopicPeers: d.host.TopicPeers(), Candidates: d.host.KnownCandidates(),
		BidRequestsGossip: t.BidRequestsGossip, BidRequestsDirect: t.BidRequestsDirect, BidRequestsBatched: d.batchedBidRequests.Load(),
		GossipSent: t.GossipSent, GossipControl: t.GossipControl,
		Frames:        make(map[string]uint64, len(t.Frames)),
		RefusedGossip: reasons(st.Gossip), RefusedStreams: reasons(st.Streams),
		GossipRepairs: st.GossipRepairs, Bans: st.Bans,
		DHTClient: d.host.DHTClient(), DHTServers: d.host.DHTServers(),
	}
	for p, n := range t.Frames {
		out.Frames[string(p)] = n
	}
	return out
}

func reasons(m map[p2p.Reason]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for r, n := range m {
		out[string(r)] = n
	}
	return out
}

// Accept asks a node to lock capability: the answer is a Confirm or a Reject.
func (n *network) Accept(ctx context.Context, peer string, addrs []string, a *types.Accept) (types.Message, error) {
	n.d.traces.closeAuction(a.JobID)
	sctx, span, traced := n.d.traces.child(a.JobID, "accept", attribute.String("peer", peer))
	if traced {
		a.Trace = tracing.Traceparent(sctx)
	}
	msg, err := n.accept(ctx, peer, addrs, a)
	if traced {
		answered(span, msg, err)
	}
	return msg, err
}

func (n *network) accept(ctx context.Context, peer string, addrs []string, a *types.Accept) (types.Message, error) {
	if n.self(peer) {
		if n.d.node == nil {
			return nil, errNoCompute
		}
		return n.d.lock(ctx, peer, a)
	}
	return n.d.host.Request(ctx, peer, addrs, p2p.AcceptProtocol, a)
}

// Cancel asks a node to stop an allocation, and returns the status it
// answered with (nil for an ack or a refusal).
func (n *network) Cancel(ctx context.Context, peer string, addrs []string, c *types.Cancel) (*types.Status, error) {
	var reply types.Message
	var err error
	if n.self(peer) {
		if n.d.node == nil {
			return nil, errNoCompute
		}
		reply, err = n.d.node.Cancel(ctx, peer, c)
	} else {
		reply, err = n.d.host.Request(ctx, peer, addrs, p2p.CancelProtocol, c)
	}
	st, _ := reply.(*types.Status)
	return st, err
}

// Invoke starts an allocation and returns the stream of its statuses.
func (n *network) Invoke(ctx context.Context, peer string, addrs []string, inv *types.Invocation) (orchestrator.StatusStream, error) {
	sctx, span, traced := n.d.traces.child(inv.JobID, "invoke", attribute.String("peer", peer))
	if !traced {
		return n.invoke(ctx, peer, addrs, inv)
	}
	inv.Trace = tracing.Traceparent(sctx)
	stream, err := n.invoke(ctx, peer, addrs, inv)
	fail(span, err)
	if err != nil {
		return nil, err
	}
	_, wait, traced := n.d.traces.child(inv.JobID, "wait", attribute.String("peer", peer))
	if !traced { // the job ended meanwhile
		return stream, nil
	}
	return &tracedStream{StatusStream: stream, span: wait}, nil
}

func (n *network) invoke(ctx context.Context, peer string, addrs []string, inv *types.Invocation) (orchestrator.StatusStream, error) {
	if n.self(peer) {
		return n.d.localInvoke(inv)
	}
	s, err := n.d.host.OpenStream(ctx, peer, addrs, p2p.InvokeProtocol, inv)
	if err != nil {
		return nil, err
	}
	return remoteStatus{s}, nil
}

var errNoCompute = errors.New("dms: this node offers no compute")

// remoteStatus reads Status frames from an invocation stream.
type remoteStatus struct{ s *p2p.Stream }

func (r remoteStatus) Recv(ctx context.Context) (*types.Status, error) {
	msg, err := r.s.Recv(ctx)
	if err != nil {
		return nil, err
	}
	st, ok := msg.(*types.Status)
	if !ok {
		return nil, fmt.Errorf("dms: invocation stream sent a %s, not a status", msg.Kind())
	}
	return st, nil
}

func (r remoteStatus) Close() error { return r.s.Close() }

// localStatus is an invocation of this node's own Node, for jobs it won itself.
type localStatus struct {
	ch     chan *types.Status
	errc   chan error
	cancel context.CancelFunc
}

func (d *DMS) localInvoke(inv *types.Invocation) (orchestrator.StatusStream, error) {
	if d.node == nil {
		return nil, errNoCompute
	}
	ctx, cancel := context.WithCancel(d.ctx)
	l := &localStatus{ch: make(chan *types.Status, 4), errc: make(chan error, 1), cancel: cancel}
	d.goDo(func(context.Context) {
		defer close(l.ch)
		l.errc <- d.invokeNode(ctx, d.host.ID(), inv, func(st types.Message) error {
			select {
			case l.ch <- st.(*types.Status):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	})
	return l, nil
}

func (l *localStatus) Recv(ctx context.Context) (*types.Status, error) {
	select {
	case st, ok := <-l.ch:
		if ok {
			return st, nil
		}
		if err := <-l.errc; err != nil {
			return nil, err
		}
		return nil, errStreamEnded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *localStatus) Close() error { l.cancel(); return nil }

var errStreamEnded = errors.New("dms: status stream ended")

// invokeNode runs an invocation on this node's Node, turning a refusal
// before the allocation started into a failed status, so the requester
// reads why instead of seeing the stream die. The refusal is the node's
// fault (its lock expired, it lacks the executor, the requester named a
// stale epoch): another node may run the job. The Node sends the statuses
// and, while the allocation runs, the heartbeats (every inv.Lease/4).
func (d *DMS) invokeNode(ctx context.Context, from string, inv *types.Invocation, send func(types.Message) error) error {
	if gate := d.opts.heartbeatGate; gate != nil {
		out := send
		send = func(m types.Message) error {
			if !gate(inv.AllocationID) {
				return nil // cut off: the frame is lost
			}
			return out(m)
		}
	}
	sent := false
	var last *types.Status
	end := d.traces.allocation(from, inv)
	err := d.node.Invoke(ctx, from, inv, func(st *types.Status) error {
		sent = true
		if st.State.Terminal() {
			last = st
			end(st, nil)
		}
		return send(st)
	})
	if err != nil && !sent {
		refused := &types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: types.AllocFailed, Fault: types.FaultNode, Reason: err.Error()}
		end(refused, nil)
		return send(refused)
	}
	if last == nil {
		end(nil, err)
	}
	return err
}

// deliverBid hands a bid or decline to the orchestrator.
func (d *DMS) deliverBid(msg types.Message) {
	switch m := msg.(type) {
	case *types.Bid:
		d.traces.heard(m.JobID, m.Node.PeerID)
		d.orch.HandleBid(m)
	case *types.Decline:
		d.traces.heard(m.JobID, m.Node.PeerID)
		d.orch.HandleDecline(m)
	}
}

// registerProtocols installs the stream handlers: bids for the orchestrator,
// and accept, invoke, cancel and status for the Node.
func (d *DMS) registerProtocols() {
	d.host.Handle(p2p.BidProtocol, func(_ context.Context, from string, _ *types.Envelope, msg types.Message) (types.Message, error) {
		if b, ok := msg.(*types.Bid); ok && b.Node.PeerID != from {
			return nil, fmt.Errorf("dms: bid names node %s but came from %s", b.Node.PeerID, from)
		}
		if d, ok := msg.(*types.Decline); ok && d.Node.PeerID != from {
			return nil, fmt.Errorf("dms: decline names node %s but came from %s", d.Node.PeerID, from)
		}
		d.deliverBid(msg)
		return nil, nil
	})
	d.host.Handle(p2p.AcceptProtocol, nodeHandler(d, d.lock))
	d.host.Handle(p2p.CancelProtocol, nodeHandler(d, func(ctx context.Context, from string, m *types.Cancel) (types.Message, error) {
		return d.node.Cancel(ctx, from, m)
	}))
	d.host.Handle(p2p.StatusProtocol, nodeHandler(d, func(ctx context.Context, from string, m *types.StatusQuery) (types.Message, error) {
		return d.node.Status(ctx, from, m)
	}))
	d.host.HandleStream(p2p.InvokeProtocol, func(ctx context.Context, from string, _ *types.Envelope, msg types.Message, send func(types.Message) error) error {
		inv, ok := msg.(*types.Invocation)
		if !ok || d.node == nil {
			return errNoCompute
		}
		return d.invokeNode(ctx, from, inv, send)
	})
	d.host.ServeBlobs(d.blobs, MaxBlobSize)
	d.handleReceipts()
	d.serveCalls()
	d.serveTraces()
	d.serveRecords()
}

// lock hands an Accept to the Node, timed by a lock span.
func (d *DMS) lock(ctx context.Context, from string, a *types.Accept) (types.Message, error) {
	done := d.traces.lock(from, a)
	reply, err := d.node.Accept(ctx, from, a)
	done(reply, err)
	return reply, err
}

// bidRequested hands a bid request to the Node; the bid decision's span
// starts now.
func (d *DMS) bidRequested(from string, req *types.BidRequest) {
	d.traces.bidAsked(from, req, d.opts.clock())
	d.node.HandleBidRequest(from, req)
}

// nodeHandler adapts a Node method to a stream protocol: it refuses any
// other message kind, and every request when the node offers no compute.
func nodeHandler[M types.Message](d *DMS, fn func(ctx context.Context, from string, m M) (types.Message, error)) p2p.Handler {
	return func(ctx context.Context, from string, _ *types.Envelope, msg types.Message) (types.Message, error) {
		m, ok := msg.(M)
		if !ok {
			return nil, fmt.Errorf("%w: %s on this protocol", errUnexpected, msg.Kind())
		}
		if d.node == nil {
			return refusal(msg, errNoCompute), nil
		}
		reply, err := fn(ctx, from, m)
		if err != nil {
			return refusal(msg, err), nil
		}
		return reply, nil
	}
}

// refusal turns a Node's error into a Reject the requester can read (a Go
// error from a handler only resets the stream).
func refusal(msg types.Message, err error) *types.Reject {
	r := &types.Reject{Reason: err.Error()}
	switch m := msg.(type) {
	case *types.Accept:
		r.JobID, r.AllocationID = m.JobID, m.AllocationID
	case *types.Cancel:
		r.JobID, r.AllocationID = m.JobID, m.AllocationID
	case *types.StatusQuery:
		r.JobID, r.AllocationID = m.JobID, m.AllocationID
	}
	return r
}

var errUnexpected = errors.New("dms: unexpected message")

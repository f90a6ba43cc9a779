package p2p

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Traffic counts the DMS messages a host sent and the bid requests it
// delivered since it started: what a job costs the network, summed over
// its hosts. Kademlia and gossipsub's own upkeep (heartbeats, grafts,
// prunes) are not counted.
type Traffic struct {
	// GossipSent counts the copies of bid requests this host sent on the
	// topic: its own publications and what it forwarded, one per peer.
	GossipSent uint64
	// GossipControl counts the message IDs of the topic this host sent in
	// gossip control messages (IHAVE, IWANT, IDONTWANT), which gossipsub
	// sends for every message for a few heartbeats after it.
	GossipControl uint64
	// Frames counts the stream frames this host sent, by protocol: requests,
	// replies, acks, pushed statuses, blob replies, call requests and
	// replies.
	Frames map[protocol.ID]uint64
	// CallBytes counts the bytes of the call frames this host sent
	// (CallProtocol), length prefixes included; ForwardBytes those of
	// forwarded calls (ForwardProtocol); PairBytes those of the frames
	// of pairs' request/response messages (PairProtocol).
	CallBytes, ForwardBytes, PairBytes uint64
	// BidRequestsGossip and BidRequestsDirect count the bid requests
	// delivered to this host's handlers, from the topic and from
	// BidRequestProtocol.
	BidRequestsGossip, BidRequestsDirect uint64
}

// FrameCount returns the frames sent over every protocol.
func (t Traffic) FrameCount() uint64 {
	var n uint64
	for _, c := range t.Frames {
		n += c
	}
	return n
}

// traffic holds a host's Traffic counters; safe for concurrent use.
type traffic struct {
	gossipSent, gossipControl   atomic.Uint64
	gossipIn, directIn          atomic.Uint64
	callFrames, callBytes       atomic.Uint64 // apart from frames: calls are the hot path
	forwardFrames, forwardBytes atomic.Uint64
	pairFrames, pairBytes       atomic.Uint64
	mu                          sync.Mutex
	frames                      map[protocol.ID]uint64
}

func (t *traffic) frame(p protocol.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.frames == nil {
		t.frames = make(map[protocol.ID]uint64)
	}
	t.frames[p]++
}

func (t *traffic) snapshot() Traffic {
	t.mu.Lock()
	frames := maps.Clone(t.frames)
	t.mu.Unlock()
	for p, n := range map[protocol.ID]uint64{CallProtocol: t.callFrames.Load(), ForwardProtocol: t.forwardFrames.Load(), PairProtocol: t.pairFrames.Load()} {
		if n > 0 {
			if frames == nil {
				frames = make(map[protocol.ID]uint64)
			}
			frames[p] = n
		}
	}
	return Traffic{
		GossipSent: t.gossipSent.Load(), GossipControl: t.gossipControl.Load(), Frames: frames,
		CallBytes: t.callBytes.Load(), ForwardBytes: t.forwardBytes.Load(), PairBytes: t.pairBytes.Load(),
		BidRequestsGossip: t.gossipIn.Load(), BidRequestsDirect: t.directIn.Load(),
	}
}

// Traffic returns what the host sent and delivered so far.
func (h *Host) Traffic() Traffic { return h.traffic.snapshot() }

// trafficTracer counts what gossipsub sends on the bid-request topic.
type trafficTracer struct{ t *traffic }

var _ pubsub.RawTracer = trafficTracer{}

func (tr trafficTracer) SendRPC(rpc *pubsub.RPC, _ peer.ID) {
	var sent, control uint64
	for _, m := range rpc.GetPublish() {
		if m.GetTopic() == BidRequestTopic {
			sent++
		}
	}
	if c := rpc.GetControl(); c != nil {
		for _, ih := range c.GetIhave() {
			if ih.GetTopicID() == BidRequestTopic {
				control += uint64(len(ih.GetMessageIDs()))
			}
		}
		for _, iw := range c.GetIwant() { // IWANT and IDONTWANT name no topic: DMS has one
			control += uint64(len(iw.GetMessageIDs()))
		}
		for _, idw := range c.GetIdontwant() {
			control += uint64(len(idw.GetMessageIDs()))
		}
	}
	if sent > 0 {
		tr.t.gossipSent.Add(sent)
	}
	if control > 0 {
		tr.t.gossipControl.Add(control)
	}
}

func (trafficTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (trafficTracer) OnClosedOutboundStream(peer.ID)                       {}
func (trafficTracer) Join(string)                                          {}
func (trafficTracer) Leave(string)                                         {}
func (trafficTracer) Graft(peer.ID, string)                                {}
func (trafficTracer) Prune(peer.ID, string)                                {}
func (trafficTracer) ValidateMessage(*pubsub.Message)                      {}
func (trafficTracer) DeliverMessage(*pubsub.Message)                       {}
func (trafficTracer) RejectMessage(*pubsub.Message, string)                {}
func (trafficTracer) DuplicateMessage(*pubsub.Message)                     {}
func (trafficTracer) ThrottlePeer(peer.ID)                                 {}
func (trafficTracer) RecvRPC(*pubsub.RPC)                                  {}
func (trafficTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (trafficTracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (trafficTracer) UndeliverableMessage(*pubsub.Message)                 {}

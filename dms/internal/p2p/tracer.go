package p2p

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// refusalTracer counts the bid-request messages gossipsub refuses before
// the topic validator sees them: those carrying gossipsub's own signature
// or author fields, which StrictNoSign refuses (malformed here: the
// envelope inside carries the signature that counts), and those that found
// the validation queue full. What the validator refuses it
// counts itself.
type refusalTracer struct{ c *counters }

var _ pubsub.RawTracer = refusalTracer{}

func (t refusalTracer) RejectMessage(msg *pubsub.Message, reason string) {
	if msg.GetTopic() != BidRequestTopic {
		return
	}
	switch reason {
	case pubsub.RejectUnexpectedSignature, pubsub.RejectUnexpectedAuthInfo:
		t.c.add(ReasonMalformed)
	case pubsub.RejectValidationQueueFull, pubsub.RejectValidationThrottled:
		t.c.add(ReasonOverloaded)
	}
}

func (refusalTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (refusalTracer) OnClosedOutboundStream(peer.ID)                       {}
func (refusalTracer) Join(string)                                          {}
func (refusalTracer) Leave(string)                                         {}
func (refusalTracer) Graft(peer.ID, string)                                {}
func (refusalTracer) Prune(peer.ID, string)                                {}
func (refusalTracer) ValidateMessage(*pubsub.Message)                      {}
func (refusalTracer) DeliverMessage(*pubsub.Message)                       {}
func (refusalTracer) DuplicateMessage(*pubsub.Message)                     {}
func (refusalTracer) ThrottlePeer(peer.ID)                                 {}
func (refusalTracer) RecvRPC(*pubsub.RPC)                                  {}
func (refusalTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (refusalTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (refusalTracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (refusalTracer) UndeliverableMessage(*pubsub.Message)                 {}

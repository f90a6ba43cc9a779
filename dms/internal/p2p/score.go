package p2p

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Gossipsub peer scoring. The bid-request topic is quiet and bursty: jobs
// are rare, then many arrive at once. The parameters follow from three facts:
//
//   - An honest DMS node never forwards a message the validator rejects:
//     every check that rejects (shape, size, kind, signature, sender and
//     requester) is deterministic and the same on every node of this
//     protocol version. What depends on the clock or the load (expired,
//     expiry too far ahead, replayed, rate limited, overloaded) is ignored
//     instead, which costs the forwarder nothing. So an invalid delivery is
//     a bug or an attack, and is the one thing scored down (P4).
//   - Idleness is normal. Mesh delivery rates (P3, P3b) would score every
//     peer down during the hours no job is submitted, so they are off.
//   - Nodes share addresses: a devstack on loopback, providers behind one
//     NAT. The IP colocation penalty (P6) would score them down, and does not
//     stop Sybils anyway (docs/security.md), so it is off.
//
// What a peer can earn (P1 + P2, at most scoreMaxPositive = 8) is below what
// one invalid message costs (-10), so a single invalid message makes any
// peer's score negative: gossipsub prunes it from the mesh at the next
// heartbeat and refuses its grafts until the penalty decays (within the
// hour); it still sends and receives messages outside the mesh. Repeated,
// the squared penalty grows fast: about 4 invalid messages within the decay
// time stop gossip with it, about 7 stop publishing to it, about 11
// graylist it (nothing it sends is processed).
const (
	// invalidWeight is P4's weight: the penalty is invalidWeight × count²,
	// the count decaying to nothing in invalidDecayTime.
	invalidWeight    = -10
	invalidDecayTime = time.Hour

	// P1: time in the mesh earns timeInMeshWeight a second, up to
	// timeInMeshCap seconds (3 points after 5 minutes).
	timeInMeshWeight = 0.01
	timeInMeshCap    = 300

	// P2: being the first to deliver a message earns firstDeliveryWeight,
	// up to firstDeliveryCap deliveries (5 points), decaying in 10 minutes.
	firstDeliveryWeight    = 0.5
	firstDeliveryCap       = 10
	firstDeliveryDecayTime = 10 * time.Minute

	scoreMaxPositive = timeInMeshWeight*timeInMeshCap + firstDeliveryWeight*firstDeliveryCap

	// Thresholds, in units of P4: below gossipThreshold (4 invalid
	// messages) no gossip is exchanged with a peer, below publishThreshold
	// (7) this host does not publish to it, below graylistThreshold (11)
	// everything it sends is dropped unprocessed.
	gossipThreshold   = -100
	publishThreshold  = -400
	graylistThreshold = -1000
)

// peerScoreParams scores peers on the bid-request topic; see above.
func peerScoreParams() *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics: map[string]*pubsub.TopicScoreParams{BidRequestTopic: {
			TopicWeight:                    1,
			TimeInMeshWeight:               timeInMeshWeight,
			TimeInMeshQuantum:              time.Second,
			TimeInMeshCap:                  timeInMeshCap,
			FirstMessageDeliveriesWeight:   firstDeliveryWeight,
			FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(firstDeliveryDecayTime),
			FirstMessageDeliveriesCap:      firstDeliveryCap,
			InvalidMessageDeliveriesWeight: invalidWeight,
			InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(invalidDecayTime),
			// P3 and P3b (mesh delivery rates) off: the topic is idle for hours.
		}},
		TopicScoreCap:     scoreMaxPositive,
		AppSpecificScore:  func(peer.ID) float64 { return 0 },
		AppSpecificWeight: 1,
		// P6 (IP colocation) off: see above.
		// P7: gossipsub's own misbehaviour counter (re-grafting during a
		// prune backoff, unanswered IWANTs). A few are tolerated; past 6 the
		// penalty grows with the square of the excess.
		BehaviourPenaltyWeight:    -10,
		BehaviourPenaltyThreshold: 6,
		BehaviourPenaltyDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:             pubsub.DefaultDecayInterval,
		DecayToZero:               pubsub.DefaultDecayToZero,
		// A peer that reconnects keeps its score for an hour: disconnecting
		// does not wash a penalty away.
		RetainScore: time.Hour,
	}
}

func peerScoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:   gossipThreshold,
		PublishThreshold:  publishThreshold,
		GraylistThreshold: graylistThreshold,
		// Peer exchange is off (peers come from the DHT); accept PX only
		// from a score no peer can reach, should it be turned on.
		AcceptPXThreshold: scoreMaxPositive + 1,
		// When the mesh's median score is below 1, graft better peers.
		OpportunisticGraftThreshold: 1,
	}
}

package p2p

import (
	"maps"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
)

// Reason names why an inbound message or stream was refused.
type Reason string

// The reasons inbound messages and streams are refused for.
const (
	ReasonOversized         Reason = "oversized"          // over its limit (frameLimit: types.EnvelopeLimit)
	ReasonMalformed         Reason = "malformed"          // not a decodable envelope or body
	ReasonUnsigned          Reason = "unsigned"           // an envelope, or a gossip message, without a signature
	ReasonBadSignature      Reason = "bad_signature"      // signature or did:key does not verify (a forgery)
	ReasonExpired           Reason = "expired"            // expiry passed
	ReasonBadExpiry         Reason = "bad_expiry"         // expiry further ahead than MaxTTL
	ReasonWrongKind         Reason = "wrong_kind"         // kind not carried by the topic or protocol
	ReasonSenderMismatch    Reason = "sender_mismatch"    // From is not the sending or publishing peer's key
	ReasonRequesterMismatch Reason = "requester_mismatch" // bid request names another requester than its publisher
	ReasonReplayed          Reason = "replayed"           // nonce seen before, or a call's Seq not above the last on its stream
	ReasonRepeated          Reason = "repeated"           // a gossip peer delivered a nonce it had delivered before, in other bytes
	ReasonOverloaded        Reason = "overloaded"         // no handler slot, or the replay cache or rate table is full
	ReasonRateLimited       Reason = "rate_limited"       // the publisher is over its bid-request rate
)

// Stats counts refusals, and repairs of gossipsub's peers. Maps hold only
// reasons seen at least once.
type Stats struct {
	// Gossip counts bid requests the topic validator refused, including
	// this host's own publications, and gossip messages on the topic that
	// gossipsub itself refused for carrying its signature or author fields
	// (malformed) or because its validation queue was full (overloaded).
	Gossip map[Reason]uint64
	// Streams counts inbound stream requests refused before reaching a handler.
	Streams map[Reason]uint64
	// Blocked counts what the libp2p resource manager refused.
	Blocked Blocked
	// GossipRepairs counts the times a connected peer that gossipsub had
	// lost was handed back to it (Config.GossipRepair), or had both
	// gossipsub streams reset after gossipsub forgot its topics, failed
	// attempts included. On a healthy network it stays zero, but for a peer that
	// gossipsub was slower than a check to take in, which a hand-back does
	// not harm.
	GossipRepairs uint64
	// Bans counts the peers banned for a gossip score below the graylist
	// threshold (ban.go), each ban once.
	Bans uint64
	// Calls describes the call streams (CallProtocol).
	Calls CallStats
	// Forwards describes the streams of calls forwarded between gateways
	// (ForwardProtocol).
	Forwards CallStats
	// Pairs describes the streams that carry the request/response
	// messages of pairs of peers (PairProtocol). The requests on them
	// that are refused are counted in Streams, by reason, as on their own
	// protocols.
	Pairs CallStats
	// System and Transient are what the resource manager's system scope
	// (everything) and transient scope (connections and streams not yet
	// past their handshake or protocol negotiation) hold now.
	System, Transient Scope
	// Conns counts the open connections, Peers the peers they reach.
	Conns, Peers int
}

// Scope is what one resource-manager scope holds.
type Scope struct {
	ConnsIn, ConnsOut     int
	StreamsIn, StreamsOut int
	FD                    int   // file descriptors
	Memory                int64 // bytes reserved
}

func scopeOf(st network.ScopeStat) Scope {
	return Scope{
		ConnsIn: st.NumConnsInbound, ConnsOut: st.NumConnsOutbound,
		StreamsIn: st.NumStreamsInbound, StreamsOut: st.NumStreamsOutbound,
		FD: st.NumFD, Memory: st.Memory,
	}
}

// scopes reads the resource manager's system and transient scopes.
func scopes(rm network.ResourceManager) (system, transient Scope) {
	_ = rm.ViewSystem(func(s network.ResourceScope) error {
		system = scopeOf(s.Stat())
		return nil
	})
	_ = rm.ViewTransient(func(s network.ResourceScope) error {
		transient = scopeOf(s.Stat())
		return nil
	})
	return system, transient
}

// counters is a concurrency-safe tally by reason.
type counters struct {
	mu sync.Mutex
	m  map[Reason]uint64
}

func (c *counters) add(r Reason) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[Reason]uint64)
	}
	c.m[r]++
}

func (c *counters) snapshot() map[Reason]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

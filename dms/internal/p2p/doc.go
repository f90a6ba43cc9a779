// Package p2p is the network plumbing of a DMS daemon: a libp2p host (TCP
// and QUIC, Noise and TLS, the node's Ed25519 key as identity), a Kademlia
// DHT under the /dms prefix with rendezvous discovery and provider records,
// the gossipsub topic that carries bid requests, the request/response and
// streaming protocols of the auction and of allocations, the call streams
// of warm instances, blob exchange, and what the gateways' replicated
// group needs: calls forwarded to a queue's leader (ForwardProtocol),
// streams as net.Conn for its raft transport (Listen, Dial), and its
// members found in the DHT (AdvertiseGroup, FindGroup); and the signed
// records of the shared flow cache (PutCacheRecord, GetCacheRecord).
//
// Packages node and orchestrator never import it: package dms adapts Host to
// their narrow interfaces. Peers are named by PeerID strings and multiaddr
// strings, so no libp2p type but protocol.ID crosses this API.
//
// Invariants:
//   - A message types.Signed says must be signed reaches a handler or a
//     subscriber only as a verified envelope; any other message on a
//     direct stream may come bare (its kind and CBOR body), and then only
//     on a stream whose connection authenticated its sender: a pair
//     stream (PairProtocol, pair.go, which carries the request/response
//     protocols of a pair of peers on CallProtocol's machinery, a Seq
//     strictly increasing per stream) or an invocation stream
//     (InvokeProtocol). Request prefers the pair streams and falls back to
//     the request's own protocol for a peer that serves only those;
//     Handle serves both.
//   - Every envelope that reaches a handler or subscriber is verified: signature,
//     expiry (against Config.Clock, and no further ahead than MaxTTL), a From
//     did:key that is the key of the peer that sent the stream (a gossip
//     message names no publisher: its envelope's signer is the publisher), a kind the protocol or topic carries, and, for requests
//     and bid requests, a nonce not seen before. A bid request must also name
//     its publisher as Requester. Replies and pushed frames are verified the
//     same way on the requester's side, except for the nonce: they come on a
//     stream the requester opened to their signer. Inbound refusals are
//     counted by Reason (Host.Stats).
//   - A bid request sent straight to a node (BidRequestProtocol, the
//     sampled mode: direct.go) passes the very checks of one from the topic
//     (admitBidRequest), the stream's remote peer standing for the
//     publisher, and reaches the same kind of handler; its refusals are
//     counted with the streams'.
//   - A compute host advertises under one ComputeKey: its class of offered
//     cores (CPUClass) and a shard of its PeerID, so that provider records
//     spread over CPUClasses x ComputeShards keys. Sample picks among the
//     candidates of a job's class or above; the candidates' cache looks
//     them up only with Config.Sampling, or with SampleAbove once the host
//     was asked for candidates and knows that many peers.
//   - Bid requests are rate limited per publisher (a token bucket,
//     Config.BidRequestRate and BidRequestBurst, this host's own included):
//     on a stream before their envelope is checked, on the topic once its
//     signature is (no forger spends an honest requester's tokens). A refused bid request is never
//     forwarded; one refused for a reason no honest forwarder could miss is
//     rejected, which gossipsub's peer scoring (score.go) holds against the
//     peer that sent it: its score goes negative at the first, it is pruned
//     from the mesh, and graylisted after about ten.
//   - Calls on warm instances (CallProtocol, call.go) are not envelopes:
//     the stream's connection authenticates the caller, whose PeerID the
//     CallHandler is told, and a Seq strictly increasing on each stream
//     keeps a frame from being replayed on it. A served call stream runs at
//     most maxCallsPerStream calls (and maxCallBytesPerStream request
//     bytes) at once and stops reading past them; a peer holds at most
//     maxCallStreamsPerPeer. A broken call stream fails every call pending
//     on it at once with ErrCallStream.
//   - Forwarded calls (ForwardProtocol, forward.go) run on the very
//     machinery of the call streams, under its bounds and checks, on
//     streams of their own (pooled by protocol and peer) and counted
//     apart (Stats().Forwards): a call never reaches a forward handler,
//     nor a forward a call handler. Only their replies carry Node, Job,
//     Code and RetryAfter; a plain call reply encodes as it always did.
//   - A net.Conn of Listen or Dial names its remote peer by the PeerID
//     its connection's handshake authenticated. Listen's Accept queue is
//     bounded (acceptQueue; one more stream is reset). While a Conn or a
//     forward stream is open, the connection manager does not trim its
//     connection (keepTag); yamux and QUIC keep-alives keep an idle one
//     up; a peer may hold gwStreamsPerPeer streams each way on one
//     protocol at least.
//   - The DHT stores, serves and returns only the shared cache records
//     (cacherecord.go, namespace dmscache) that the peer their key names
//     signed for that very key; the default validators (pk, ipns) stay.
//     GetCacheRecord checks each record again, refuses one older than 48
//     hours or that does not open with its cache key's seal, and returns
//     the first that passes. A record's value is sealed with a key derived
//     from the cache key, which no API sends anywhere: DHT servers see who
//     published a record, when, its size and which records share a cache
//     key, not what they say.
//   - With Config.PSK the host is in a private network and runs over TCP
//     only (libp2p's QUIC has no pre-shared key support).
//   - Every frame's length is checked against its limit before anything is
//     allocated for it (types.MaxEnvelopeSize for envelopes, but
//     types.MaxTaskEnvelopeSize for the invocations and statuses of the
//     streams that carry them: frameLimit); the buffer of a frame over 64
//     KiB, as of a blob, grows with the bytes received, up to the limit.
//   - Every stream read and write has a deadline or a context (an idle
//     call stream waits for its next frame without one: it lives as long as
//     its connection); what a peer
//     can make a host queue is bounded: MaxInboundStreams handlers per
//     protocol, of which one peer holds at most MaxInboundStreamsPerPeer
//     on a request/response protocol, the resource manager's stream limits, a bounded replay cache,
//     and a bounded subscription buffer.
//   - Gossipsub has a stream to every connected peer that speaks it, and
//     knows the topics it announced: a peer it dropped (its stream failed
//     to open, or died five times) is handed back to it within two to three
//     Config.GossipRepair checks, and a peer whose topics it forgot (its
//     own stream to the peer died, the peer's lived on) has both streams
//     reset within two once gossipsub stopped reopening its stream (1 s),
//     without touching the connection (repair.go).
//   - Close stops every goroutine the Host started and waits for them,
//     including running handlers, whose context it cancels.
//
// What a caller must do: seal bid requests with the host's key and publish
// them with PublishEnvelope, or send them to the peers Sample picks with
// SendBidRequests; keep BidRequestHandler non-blocking; answer a
// request for itself locally (Request to self fails with ErrSelf); make
// handlers return when their context ends; treat an error of Call or
// Forward that wraps ErrCallStream as a call that may have run, to retry
// elsewhere; check in a forward handler that the forwarding peer is a
// member of the gateway group; Close every Conn of Listen and Dial.
package p2p

// Package hostile is a hostile DMS peer for adversarial tests: a raw
// go-libp2p host with a key of its own that speaks the DMS wire protocol
// directly, without any of the checks an honest node applies to itself.
//
// It joins the bid-request topic the way a DMS node does (GossipSub, no
// gossipsub signing, messages named by the SHA-256 of their data) but
// validates nothing, so it publishes whatever it likes: its own validly
// signed bid requests at any rate, or copies of other peers' envelopes
// re-encoded to different bytes under the same signature (package
// reencode). On the stream protocols it sends Accepts for any allocation ID and any
// resources, and answers bid requests as a bidder that lies: the best bid
// and then no work (Liar), no confirmation (NeverConfirm), or no answer at
// all (Silent). It serves blobs as a producer that lies about its outputs
// (ServeWrongBlobs).
//
// It drives real daemons over loopback and is meant for tests only: it
// holds streams open on purpose, and stops everything it started on Close.
package hostile

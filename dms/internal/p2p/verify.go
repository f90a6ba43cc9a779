package p2p

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/types"
)

// RejectError is an inbound envelope refused for a counted Reason.
type RejectError struct {
	Reason Reason
	Err    error
}

func (e *RejectError) Error() string { return fmt.Sprintf("p2p: rejected (%s): %v", e.Reason, e.Err) }
func (e *RejectError) Unwrap() error { return e.Err }

func reject(r Reason, err error) error { return &RejectError{Reason: r, Err: err} }

// reasonOf returns the Reason of a *RejectError in err's chain, or
// ReasonMalformed for any other error.
func reasonOf(err error) Reason {
	if re, ok := errors.AsType[*RejectError](err); ok {
		return re.Reason
	}
	return ReasonMalformed
}

// verifier turns wire bytes into a verified envelope and message.
type verifier struct {
	clock  func() time.Time
	maxTTL time.Duration
	replay *replayCache
}

// verify opens b and then admits its nonce: see open and admit.
func (v *verifier) verify(b []byte, sender peer.ID, kinds []types.Kind) (*types.Envelope, types.Message, error) {
	env, msg, err := v.open(b, sender, kinds)
	if err != nil {
		return nil, nil, err
	}
	if err := v.admit(env, ""); err != nil {
		return nil, nil, err
	}
	return env, msg, nil
}

// open decodes b and checks, cheapest first: size and shape, kind (when
// kinds is not nil), that From is sender's key, signature and expiry, and
// that the expiry is within maxTTL. Errors are *RejectError.
func (v *verifier) open(b []byte, sender peer.ID, kinds []types.Kind) (*types.Envelope, types.Message, error) {
	env, err := decode(b, kinds)
	if err != nil {
		return nil, nil, err
	}
	msg, err := v.check(env, sender, kinds, false)
	if err != nil {
		return nil, nil, err
	}
	return env, msg, nil
}

// decode decodes an envelope of one of kinds (any kind when nil) from b
// without verifying it; b over frameLimit(kinds) is refused before it is
// parsed. Errors are *RejectError.
func decode(b []byte, kinds []types.Kind) (*types.Envelope, error) {
	if limit := frameLimit(kinds); len(b) > limit {
		return nil, reject(ReasonOversized, fmt.Errorf("%w: %d bytes, limit %d", types.ErrTooLarge, len(b), limit))
	}
	env, err := types.UnmarshalEnvelope(b)
	if err != nil {
		switch {
		case errors.Is(err, types.ErrTooLarge):
			return nil, reject(ReasonOversized, err)
		case errors.Is(err, types.ErrUnsigned):
			return nil, reject(ReasonUnsigned, err)
		}
		return nil, reject(ReasonMalformed, err)
	}
	return env, nil
}

// check verifies a decoded envelope, as open does, and opens its message.
// An envelope this host sealed itself (own) is not verified again
// (types.Envelope.OpenSealed).
func (v *verifier) check(env *types.Envelope, sender peer.ID, kinds []types.Kind, own bool) (types.Message, error) {
	if kinds != nil && !slices.Contains(kinds, env.Kind) {
		return nil, reject(ReasonWrongKind, fmt.Errorf("%w: %q", ErrWrongKind, env.Kind))
	}
	if did, err := didOf(sender); err != nil || did != env.From {
		return nil, reject(ReasonSenderMismatch, fmt.Errorf("%w: %s from peer %s", ErrSenderMismatch, env.From, sender))
	}
	now := v.clock()
	open := env.Open
	if own {
		open = env.OpenSealed
	}
	msg, err := open(now)
	if err != nil {
		return nil, reject(openReason(err), err)
	}
	if env.ExpiresAt().After(now.Add(v.maxTTL)) {
		return nil, reject(ReasonBadExpiry, fmt.Errorf("%w: %s, limit %s", ErrExpiryTooFar, env.ExpiresAt().Sub(now), v.maxTTL))
	}
	return msg, nil
}

// admit records the nonce of an opened envelope, refusing one seen before;
// via is the gossip peer that delivered it ("" off gossip). Call it once
// the envelope is verified; if a later check refuses the envelope, forget
// its nonce again.
func (v *verifier) admit(env *types.Envelope, via peer.ID) error {
	switch v.replay.admit(env, via, v.clock()) {
	case ReasonReplayed:
		return reject(ReasonReplayed, fmt.Errorf("%w: nonce %s from %s", ErrReplayed, env.Nonce, env.From))
	case ReasonRepeated:
		return reject(ReasonRepeated, fmt.Errorf("%w: %s delivered nonce %s from %s again, in other bytes", ErrReplayed, via, env.Nonce, env.From))
	case ReasonOverloaded:
		return reject(ReasonOverloaded, fmt.Errorf("%w: replay cache full", ErrOverloaded))
	}
	return nil
}

// unseen refuses an envelope whose sender and nonce were admitted before,
// delivered by gossip peer via: as a replay, or, when via delivered that
// nonce before, as repeated (see replayCache.delivered). It records no new
// nonce: admit does, once the envelope is verified.
func (v *verifier) unseen(env *types.Envelope, via peer.ID) error {
	switch v.replay.delivered(env, via) {
	case ReasonReplayed:
		return reject(ReasonReplayed, fmt.Errorf("%w: nonce %s from %s", ErrReplayed, env.Nonce, env.From))
	case ReasonRepeated:
		return reject(ReasonRepeated, fmt.Errorf("%w: %s delivered nonce %s from %s again, in other bytes", ErrReplayed, via, env.Nonce, env.From))
	}
	return nil
}

// forget drops an admitted envelope's nonce: the envelope was refused
// after all, by a check that must come after the replay check.
func (v *verifier) forget(env *types.Envelope) { v.replay.forget(env) }

// openReason classifies an error of types.Envelope.Open.
func openReason(err error) Reason {
	switch {
	case errors.Is(err, types.ErrExpired):
		return ReasonExpired
	case errors.Is(err, types.ErrBadSignature), errors.Is(err, types.ErrBadDID):
		return ReasonBadSignature
	case errors.Is(err, types.ErrUnknownKind):
		return ReasonWrongKind
	}
	return ReasonMalformed
}

// didOf returns the did:key of an Ed25519 peer ID. Peers with other key
// types have no did:key and cannot sign envelopes.
func didOf(p peer.ID) (string, error) {
	pub, err := p.ExtractPublicKey()
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrBadPeer, p, err)
	}
	ed, ok := pub.(*crypto.Ed25519PublicKey)
	if !ok {
		return "", fmt.Errorf("%w: %s is not an Ed25519 peer", ErrBadPeer, p)
	}
	raw, err := ed.Raw()
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrBadPeer, p, err)
	}
	return types.DIDFromPublicKey(raw), nil
}

// signer returns the peer whose key env names as its signer, without
// verifying the signature. Errors are *RejectError.
func signer(env *types.Envelope) (peer.ID, error) {
	raw, err := types.PublicKeyFromDID(env.From)
	if err != nil {
		return "", reject(ReasonBadSignature, err)
	}
	pub, err := crypto.UnmarshalEd25519PublicKey(raw)
	if err != nil {
		return "", reject(ReasonBadSignature, fmt.Errorf("%w: %s: %w", types.ErrBadDID, env.From, err))
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return "", reject(ReasonBadSignature, fmt.Errorf("%w: %s: %w", types.ErrBadDID, env.From, err))
	}
	return id, nil
}

// replayCache remembers (sender, nonce) pairs until their envelope expires,
// and the gossip peers that delivered each (up to maxVia of them).
// MaxTTL bounds how long an entry lives, and size how many there are:
// expired entries are pruned every pruneIdle, and when the cache is full at
// most once a second; failing that, new envelopes are refused rather than
// old nonces forgotten. A prune copies the live entries to a new map: a Go
// map keeps the buckets of its largest size, which after a burst of jobs
// would stay for good.
type replayCache struct {
	mu        sync.Mutex
	size      int
	seen      map[string]*nonce // by sender|nonce
	nextPrune time.Time         // the earliest prune when full
	nextSweep time.Time         // the next prune in any case
}

type nonce struct {
	expiry int64     // unix nanoseconds
	via    []peer.ID // the gossip peers that delivered it, up to maxVia
}

const (
	pruneEvery = time.Second
	pruneIdle  = 30 * time.Second
	// maxVia bounds the deliverers remembered per nonce: a node hears a
	// message from its mesh peers, about a dozen.
	maxVia = 16
)

func newReplayCache(size int) *replayCache {
	return &replayCache{size: size, seen: make(map[string]*nonce)}
}

// admit records env's nonce, delivered by via ("" off gossip), and
// returns "" if it is fresh, ReasonReplayed or ReasonRepeated if it was
// seen (as delivered says), or ReasonOverloaded if there is no room to
// remember it.
func (c *replayCache) admit(env *types.Envelope, via peer.ID, now time.Time) Reason {
	key := env.From + "|" + env.Nonce
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[key]; ok { // admitted since delivered checked it
		return c.deliveredLocked(key, via)
	}
	if (len(c.seen) >= c.size && !now.Before(c.nextPrune)) || !now.Before(c.nextSweep) {
		c.prune(now)
	}
	if len(c.seen) >= c.size {
		return ReasonOverloaded
	}
	n := &nonce{expiry: env.Expiry}
	if via != "" {
		n.via = []peer.ID{via}
	}
	c.seen[key] = n
	return ""
}

// delivered reports on env, delivered by gossip peer via: "" if its nonce
// is not remembered, ReasonRepeated if via delivered it before, and
// otherwise ReasonReplayed (via is then remembered). An honest node
// forwards one encoding of an envelope at most (it admits one, and
// gossipsub drops copies in the same bytes), so a peer that delivers a
// second is not forwarding: it is replaying. Another peer delivering an
// envelope already seen may be honest: it admitted another encoding
// first.
func (c *replayCache) delivered(env *types.Envelope, via peer.ID) Reason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deliveredLocked(env.From+"|"+env.Nonce, via)
}

func (c *replayCache) deliveredLocked(key string, via peer.ID) Reason {
	n, ok := c.seen[key]
	switch {
	case !ok:
		return ""
	case slices.Contains(n.via, via):
		return ReasonRepeated
	case len(n.via) < maxVia:
		n.via = append(n.via, via)
	}
	return ReasonReplayed
}

// forget removes env's nonce.
func (c *replayCache) forget(env *types.Envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.seen, env.From+"|"+env.Nonce)
}

func (c *replayCache) prune(now time.Time) {
	live := make(map[string]*nonce, len(c.seen))
	for k, n := range c.seen {
		if n.expiry > now.UnixNano() {
			live[k] = n
		}
	}
	c.seen = live
	c.nextPrune, c.nextSweep = now.Add(pruneEvery), now.Add(pruneIdle)
}

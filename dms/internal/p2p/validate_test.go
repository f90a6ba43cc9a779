package p2p

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"github.com/fxamacker/cbor/v2"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/dms/internal/reencode"
	"github.com/opendms/dms/types"
)

// badPayloads returns, for a publisher with key pub, one payload per reason
// the bid-request validator refuses, plus a valid one under "". Among them
// are the forged (bad_signature: a signed body altered), unsigned, expired
// and oversized messages; a replay is the valid one sent twice.
func badPayloads(t *testing.T, pub ed25519.PrivateKey, now time.Time) map[Reason][]byte {
	t.Helper()
	pid := peerOf(t, pub)
	req := &types.BidRequest{JobID: "j", Requester: pid.String()}
	seal := func(key ed25519.PrivateKey, m types.Message, ttl time.Duration) []byte {
		return encode(t, sealEnv(t, key, m, now, ttl))
	}
	forged := seal(pub, req, time.Minute)
	if !bytes.Contains(forged, []byte("job_id\x61j")) { // the body's "j", a CBOR text of 1
		t.Fatal("no job ID to forge")
	}
	forged = bytes.Replace(forged, []byte("job_id\x61j"), []byte("job_id\x61k"), 1)
	unsigned := sealEnv(t, pub, req, now, time.Minute)
	unsigned.Sig = nil
	valid := seal(pub, req, time.Minute)
	return map[Reason][]byte{
		"":                      valid,
		ReasonOversized:         seal(pub, &types.BidRequest{JobID: types.JobID(bytes.Repeat([]byte("x"), types.MaxEnvelopeSize)), Requester: pid.String()}, time.Minute),
		ReasonMalformed:         []byte("{not cbor"),
		ReasonBadSignature:      forged,
		ReasonUnsigned:          encode(t, unsigned),
		ReasonExpired:           seal(pub, req, -time.Second),
		ReasonBadExpiry:         seal(pub, req, 365*24*time.Hour),
		ReasonWrongKind:         seal(pub, &types.Bid{JobID: "j"}, time.Minute),
		ReasonSenderMismatch:    seal(newKey(t), req, time.Minute),
		ReasonRequesterMismatch: seal(pub, &types.BidRequest{JobID: "j", Requester: peerOf(t, newKey(t)).String()}, time.Minute),
	}
}

func sealEnv(t *testing.T, key ed25519.PrivateKey, m types.Message, now time.Time, ttl time.Duration) *types.Envelope {
	t.Helper()
	env, err := types.Seal(key, m, now, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// encode marshals env without env.Marshal's size check, so that oversized
// and unsigned envelopes can be sent.
func encode(t *testing.T, env *types.Envelope) []byte {
	t.Helper()
	b, err := cbor.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func peerOf(t *testing.T, k ed25519.PrivateKey) peer.ID {
	t.Helper()
	return newRawHost(t, k, false).ID()
}

func TestCheckBidRequest(t *testing.T) {
	now := time.Now()
	pub := newKey(t)
	pid := peerOf(t, pub)
	v := &verifier{clock: func() time.Time { return now }, maxTTL: 10 * time.Minute, replay: newReplayCache(2)}
	payloads := badPayloads(t, pub, now)
	for want, data := range payloads {
		_, err := checkBidRequest(v, data, pid)
		if got := reasonOf(err); (want == "" && err != nil) || (want != "" && got != want) {
			t.Errorf("%q: got %v", want, err)
		}
	}
	if _, err := checkBidRequest(v, payloads[""], pid); reasonOf(err) != ReasonReplayed || !errors.Is(err, ErrReplayed) {
		t.Errorf("replay: got %v", err)
	}
	if _, err := checkBidRequest(v, badPayloads(t, pub, now)[""], pid); err != nil {
		t.Errorf("second fresh request: %v", err)
	}
	if _, err := checkBidRequest(v, badPayloads(t, pub, now)[""], pid); reasonOf(err) != ReasonOverloaded {
		t.Errorf("full replay cache: got %v", err)
	}
}

// TestGossipRejections publishes every bad payload from a peer that runs no
// validator and checks that the Host counts each and delivers only the valid
// one: forged, unsigned, expired, replayed and oversized bid requests among
// them. On gossip the publisher is the envelope's signer, so an envelope
// signed by another key than the requester's is a requester mismatch. The
// valid payload published twice is one message (its ID is its content's
// hash), delivered once; the same envelope with other bytes is another message
// and refused as repeated: the peer that delivered the envelope delivers
// it again. (The publisher's rejected messages, 8, keep its score above
// the graylist threshold, 11: a graylisted peer's messages are not even
// counted.)
func TestGossipRejections(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	delivered := make(chan *types.BidRequest, 10)
	if err := h.SubscribeBidRequests(func(_ string, _ *types.Envelope, r *types.BidRequest) { delivered <- r }); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	topic := rawTopic(t, newRawHost(t, key, false), h)
	ctx := testCtx(t, 20*time.Second)

	payloads := badPayloads(t, key, time.Now())
	for _, data := range payloads {
		if err := topic.Publish(ctx, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := topic.Publish(ctx, payloads[""]); err != nil { // again: the same message
		t.Fatal(err)
	}
	reencoded, err := reencode.Envelope(payloads[""], 0) // other bytes, the same envelope
	if err != nil {
		t.Fatal(err)
	}
	if err := topic.Publish(ctx, reencoded); err != nil { // a replay
		t.Fatal(err)
	}
	want := map[Reason]uint64{ReasonRepeated: 1}
	for r := range payloads {
		if r != "" {
			want[r]++
		}
	}
	delete(want, ReasonSenderMismatch)
	want[ReasonRequesterMismatch]++
	// Every count, not only every reason: the two requester mismatches
	// may be counted one after the other.
	waitFor(t, 10*time.Second, "every rejection counted", func() bool { return equalCounts(h.Stats().Gossip, want) })
	got := h.Stats().Gossip
	for r, n := range want {
		t.Run(string(r), func(t *testing.T) {
			if got[r] != n {
				t.Errorf("counted %d, want %d", got[r], n)
			}
		})
	}
	if !equalCounts(got, want) {
		t.Fatalf("rejections: got %v, want %v", got, want)
	}
	select {
	case r := <-delivered:
		if r.JobID != "j" || len(delivered) != 0 {
			t.Fatalf("delivered %+v and %d more", r, len(delivered))
		}
	case <-ctx.Done():
		t.Fatal("the valid bid request was not delivered")
	}
}

// TestGossipForgedPublisher floods the Host with bid requests that claim
// a requester's key but are not signed by it: they are refused as badly
// signed before they reach the requester's rate bucket, so the requester's
// own request, next, is delivered although the bucket holds one token.
func TestGossipForgedPublisher(t *testing.T) {
	now := time.Now()
	h := limitedHost(t, 0.001, 1, now)
	delivered := make(chan string, 10)
	if err := h.SubscribeBidRequests(func(from string, _ *types.Envelope, _ *types.BidRequest) { delivered <- from }); err != nil {
		t.Fatal(err)
	}
	victim := newKey(t)
	topic := rawTopic(t, newRawHost(t, newKey(t), false), h)
	ctx := testCtx(t, 10*time.Second)
	for range 5 {
		if err := topic.Publish(ctx, badPayloads(t, victim, now)[ReasonBadSignature]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the forgeries refused", func() bool { return h.Stats().Gossip[ReasonBadSignature] == 5 })
	if err := topic.Publish(ctx, badPayloads(t, victim, now)[""]); err != nil {
		t.Fatal(err)
	}
	select {
	case from := <-delivered:
		if want := peerOf(t, victim).String(); from != want {
			t.Fatalf("delivered as published by %s, want the signer %s", from, want)
		}
	case <-ctx.Done():
		t.Fatalf("the requester's bid request was not delivered: %v", h.Stats().Gossip)
	}
}

// TestGossipReplaysCostThePublisherNothing republishes a requester's bid
// request in other bytes (another gossip message, the same signed
// envelope) from a peer of its own, as an attacker that watches the topic
// can: the copies are refused before the requester's rate bucket is
// charged, so its next genuine request, for which its bucket holds
// exactly one token, is delivered.
func TestGossipReplaysCostThePublisherNothing(t *testing.T) {
	now := time.Now()
	h := limitedHost(t, 0.001, 2, now)
	delivered := make(chan types.JobID, 10)
	if err := h.SubscribeBidRequests(func(_ string, _ *types.Envelope, r *types.BidRequest) { delivered <- r.JobID }); err != nil {
		t.Fatal(err)
	}
	victim := newKey(t)
	topic := rawTopic(t, newRawHost(t, newKey(t), false), h)
	ctx := testCtx(t, 10*time.Second)
	request := func(job types.JobID) []byte {
		return encode(t, sealEnv(t, victim, &types.BidRequest{JobID: job, Requester: peerOf(t, victim).String()}, now, time.Minute))
	}
	first := request("first")
	if err := topic.Publish(ctx, first); err != nil {
		t.Fatal(err)
	}
	for i := range 5 { // copies in other bytes
		b, err := reencode.Envelope(first, i)
		if err != nil {
			t.Fatal(err)
		}
		if err := topic.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// The raw peer delivered the original, so its copies are not
	// forwarding but repeating: rejected, and held against it.
	waitFor(t, 5*time.Second, "the copies refused", func() bool { return h.Stats().Gossip[ReasonRepeated] == 5 })
	if err := topic.Publish(ctx, request("second")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []types.JobID{"first", "second"} {
		select {
		case got := <-delivered:
			if got != want {
				t.Fatalf("delivered %q, want %q", got, want)
			}
		case <-ctx.Done():
			t.Fatalf("%q not delivered: %v", want, h.Stats().Gossip)
		}
	}
	if n := h.Stats().Gossip[ReasonRateLimited]; n != 0 {
		t.Fatalf("%d genuine requests refused as rate limited", n)
	}
}

// TestRateLimitedRequestLeavesNoNonce: a request refused by its
// publisher's rate bucket does not stay in the replay cache, so a flood
// over the limit cannot fill it.
func TestRateLimitedRequestLeavesNoNonce(t *testing.T) {
	now := time.Now()
	h := limitedHost(t, 0.001, 1, now)
	flooder := newKey(t)
	for i := range 20 {
		b := encode(t, sealEnv(t, flooder, &types.BidRequest{JobID: types.JobID(fmt.Sprint(i)), Requester: peerOf(t, flooder).String()}, now, time.Minute))
		_, err := h.admitGossip(b, peerOf(t, newKey(t)))
		if i > 0 && reasonOf(err) != ReasonRateLimited {
			t.Fatalf("request %d: got %v, want rate limited", i, err)
		}
	}
	if n := h.verifier.replay.len(); n != 1 {
		t.Fatalf("replay cache holds %d nonces, want 1 (the admitted request's)", n)
	}
}

// TestGossipRepeaterIsGraylisted: a peer that floods copies of one bid
// request in ever other bytes is rejected for each and scored down, and
// graylisted after about eleven: the rest of its flood is dropped before
// any check runs, and within a second the peer is banned: disconnected,
// and refused when it connects again.
func TestGossipRepeaterIsGraylisted(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	if err := h.SubscribeBidRequests(func(string, *types.Envelope, *types.BidRequest) {}); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	raw := newRawHost(t, key, false)
	topic := rawTopic(t, raw, h)
	ctx := testCtx(t, 20*time.Second)
	valid := badPayloads(t, key, time.Now())[""]
	const copies = 200
	for i := range copies + 1 {
		b, err := reencode.Envelope(valid, i)
		if err != nil {
			t.Fatal(err)
		}
		if err := topic.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// The count stops growing once the peer is graylisted; what was queued
	// for validation by then is still checked.
	var last uint64
	for stable := 0; stable < 5; {
		time.Sleep(200 * time.Millisecond)
		n := h.Stats().Gossip[ReasonRepeated]
		if n == last && n > 0 {
			stable++
		} else {
			stable, last = 0, n
		}
	}
	if last < 11 || last > copies/2 {
		t.Fatalf("%d of %d copies checked and rejected, want the flood cut off after about 11", last, copies)
	}
	t.Logf("%d of %d copies checked before the repeater was graylisted", last, copies)
	waitFor(t, 5*time.Second, "the repeater banned and disconnected", func() bool {
		return h.Stats().Bans == 1 && h.host.Network().Connectedness(raw.ID()) != network.Connected
	})
	// Connecting again: the handshake may complete on the repeater's
	// side, but the host closes the connection at once.
	_ = raw.Network().ClosePeer(h.host.ID())
	_ = raw.Connect(ctx, addrInfo(h))
	waitFor(t, 5*time.Second, "the banned repeater's new connection closed", func() bool {
		return raw.Network().Connectedness(h.host.ID()) != network.Connected
	})
	if !h.bans.banned(raw.ID()) || h.host.Network().Connectedness(raw.ID()) == network.Connected {
		t.Fatal("the banned repeater is connected again")
	}
}

// TestReplayCacheDeliverers: a nonce admitted from one gossip peer is a
// replay when another peer delivers it (that peer may have admitted
// another encoding first), and repeated when the same peer delivers it
// again; a nonce never admitted is neither.
func TestReplayCacheDeliverers(t *testing.T) {
	now := time.Now()
	c := newReplayCache(10)
	env := &types.Envelope{From: "did:key:z1", Nonce: "n1", Expiry: now.Add(time.Minute).UnixNano()}
	a, b := peerOf(t, newKey(t)), peerOf(t, newKey(t))
	if r := c.delivered(env, a); r != "" {
		t.Fatalf("unknown nonce: got %q", r)
	}
	if r := c.admit(env, a, now); r != "" {
		t.Fatalf("admit: got %q", r)
	}
	for _, step := range []struct {
		via  peer.ID
		want Reason
	}{{a, ReasonRepeated}, {b, ReasonReplayed}, {b, ReasonRepeated}, {a, ReasonRepeated}} {
		if r := c.delivered(env, step.via); r != step.want {
			t.Fatalf("delivered by %s: got %q, want %q", step.via, r, step.want)
		}
	}
}

// len returns how many nonces the cache holds.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func equalCounts(a, b map[Reason]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestPublishRejectsForeignEnvelope(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	env, err := types.Seal(newKey(t), &types.BidRequest{Requester: h.ID()}, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.PublishEnvelope(context.Background(), env); !errors.Is(err, ErrSenderMismatch) {
		t.Fatalf("publishing an envelope signed by another key: got %v, want ErrSenderMismatch", err)
	}
	if n := h.Stats().Gossip[ReasonSenderMismatch]; n != 1 {
		t.Fatalf("sender_mismatch count %d, want 1", n)
	}
}

// TestGossipSignedMessage publishes a valid envelope in a gossip message
// that carries gossipsub's signature, as version 1 of the topic did:
// gossipsub refuses it before the validator, and the Host counts it as
// malformed.
func TestGossipSignedMessage(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	delivered := make(chan struct{}, 1)
	if err := h.SubscribeBidRequests(func(string, *types.Envelope, *types.BidRequest) { delivered <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	topic := rawTopic(t, newRawHost(t, key, false), h, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign), pubsub.WithMessageIdFn(pubsub.DefaultMsgIdFn))
	if err := topic.Publish(testCtx(t, 5*time.Second), badPayloads(t, key, time.Now())[""]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "malformed counted", func() bool { return h.Stats().Gossip[ReasonMalformed] == 1 })
	if len(delivered) != 0 {
		t.Fatal("a gossip message with gossipsub's signature was delivered")
	}
}

// TestReplayCacheSweeps forgets expired nonces every pruneIdle though the
// cache is far from full, and still refuses a replay of one that lives.
func TestReplayCacheSweeps(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newReplayCache(1000)
	short := &types.Envelope{From: "a", Nonce: "1", Expiry: now.Add(time.Second).UnixNano()}
	long := &types.Envelope{From: "a", Nonce: "2", Expiry: now.Add(time.Hour).UnixNano()}
	for _, env := range []*types.Envelope{short, long} {
		if r := c.admit(env, "", now); r != "" {
			t.Fatalf("admitting nonce %s: %s", env.Nonce, r)
		}
	}
	later := now.Add(pruneIdle)
	fresh := &types.Envelope{From: "a", Nonce: "3", Expiry: later.Add(time.Second).UnixNano()}
	if r := c.admit(fresh, "", later); r != "" { // sweeps
		t.Fatalf("admitting a fresh nonce: %s", r)
	}
	if len(c.seen) != 2 {
		t.Fatalf("after the sweep the cache holds %d nonces, want 2", len(c.seen))
	}
	if r := c.admit(long, "", later); r != ReasonReplayed {
		t.Fatalf("a live nonce after the sweep: got %q, want replayed", r)
	}
}

package p2p

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/types"
)

// badPayloads returns, for a publisher with key pub, one payload per reason
// the bid-request validator refuses, plus a valid one under "".
func badPayloads(t *testing.T, pub ed25519.PrivateKey, now time.Time) map[Reason][]byte {
	t.Helper()
	pid := peerOf(t, pub)
	req := &types.BidRequest{JobID: "j", Requester: pid.String()}
	seal := func(key ed25519.PrivateKey, m types.Message, ttl time.Duration) []byte {
		env, err := types.Seal(key, m, now, ttl)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(env) // not env.Marshal: it refuses oversized envelopes
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	forged := seal(pub, req, time.Minute)
	forged = bytes.Replace(forged, []byte(`"job_id":"j"`), []byte(`"job_id":"k"`), 1)
	valid := seal(pub, req, time.Minute)
	return map[Reason][]byte{
		"":                      valid,
		ReasonOversized:         seal(pub, &types.BidRequest{JobID: types.JobID(bytes.Repeat([]byte("x"), types.MaxEnvelopeSize)), Requester: pid.String()}, time.Minute),
		ReasonMalformed:         []byte("{not json"),
		ReasonBadSignature:      forged,
		ReasonExpired:           seal(pub, req, -time.Second),
		ReasonBadExpiry:         seal(pub, req, 365*24*time.Hour),
		ReasonWrongKind:         seal(pub, &types.Bid{JobID: "j"}, time.Minute),
		ReasonSenderMismatch:    seal(newKey(t), req, time.Minute),
		ReasonRequesterMismatch: seal(pub, &types.BidRequest{JobID: "j", Requester: peerOf(t, newKey(t)).String()}, time.Minute),
	}
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
// validator and checks that the Host counts each and delivers only the valid one.
func TestGossipRejections(t *testing.T) {
	h := newTestHost(t, testConfig(t))
	delivered := make(chan *types.BidRequest, 10)
	if err := h.SubscribeBidRequests(func(_ string, _ *types.Envelope, r *types.BidRequest) { delivered <- r }); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	raw := newRawHost(t, key, false)
	ctx := testCtx(t, 20*time.Second)
	ps, err := pubsub.NewGossipSub(ctx, raw, pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(BidRequestTopic)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Connect(ctx, addrInfo(h)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the Host in the raw peer's topic", func() bool { return len(topic.ListPeers()) == 1 })

	payloads := badPayloads(t, key, time.Now())
	for _, data := range payloads {
		if err := topic.Publish(ctx, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := topic.Publish(ctx, payloads[""]); err != nil { // again: a replay
		t.Fatal(err)
	}
	want := map[Reason]uint64{ReasonReplayed: 1}
	for r := range payloads {
		if r != "" {
			want[r] = 1
		}
	}
	waitFor(t, 10*time.Second, "every rejection counted", func() bool { return len(h.Stats().Gossip) == len(want) })
	if got := h.Stats().Gossip; !equalCounts(got, want) {
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
	if err := h.PublishEnvelope(context.Background(), env); err == nil {
		t.Fatal("published an envelope signed by another key")
	}
	if n := h.Stats().Gossip[ReasonSenderMismatch]; n != 1 {
		t.Fatalf("sender_mismatch count %d, want 1", n)
	}
}

package reencode

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// TestEnvelopeKeepsTheSignature checks what the replay attack relies on:
// every variant up to 2,880 is new bytes (a new gossip message ID) that
// decode to the same envelope, whose signature still verifies.
func TestEnvelopeKeepsTheSignature(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req := &types.BidRequest{JobID: "j1", Requester: "12D3KooWReq", Executor: "wasm", Deadline: now.Add(time.Minute)}
	env, err := types.Seal(key, req, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{string(raw): true}
	for v := range 2880 {
		b, err := Envelope(raw, v)
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(b)] {
			t.Fatalf("variant %d repeats earlier bytes: %x", v, b)
		}
		seen[string(b)] = true
		back, err := types.UnmarshalEnvelope(b)
		if err != nil {
			t.Fatalf("variant %d does not decode: %v", v, err)
		}
		msg, err := back.Open(now)
		if err != nil {
			t.Fatalf("variant %d does not verify: %v", v, err)
		}
		if !bytes.Equal(back.Sig, env.Sig) || back.Nonce != env.Nonce || msg.(*types.BidRequest).JobID != req.JobID {
			t.Fatalf("variant %d decodes to another envelope: %+v", v, back)
		}
	}
}

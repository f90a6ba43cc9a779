package hostile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// TestReencodeKeepsTheSignature checks what the replay attack relies on:
// every variant is new bytes (a new gossip message ID) that decode to the
// same envelope, whose signature still verifies.
func TestReencodeKeepsTheSignature(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	req := &types.BidRequest{JobID: "j1", Requester: "12D3KooWReq", Executor: "wasm", Deadline: time.Now().Add(time.Minute)}
	env, err := types.Seal(key, req, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{string(raw): true}
	for v := range 3 {
		b, err := Reencode(raw, v)
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(b)] {
			t.Fatalf("variant %d repeats earlier bytes: %s", v, b)
		}
		seen[string(b)] = true
		o, ok := observe(b)
		if !ok {
			t.Fatalf("variant %d does not verify: %s", v, b)
		}
		if !bytes.Equal(o.Env.Sig, env.Sig) || o.Env.Nonce != env.Nonce || o.Req.JobID != req.JobID {
			t.Fatalf("variant %d decodes to another envelope: %+v", v, o.Env)
		}
	}
}

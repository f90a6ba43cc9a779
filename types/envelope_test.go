package types

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDIDRoundTrip(t *testing.T) {
	k := newKey(t)
	pub := k.Public().(ed25519.PublicKey)
	did := DIDFromPublicKey(pub)
	if !strings.HasPrefix(did, "did:key:z6Mk") {
		t.Fatalf("Ed25519 did:key should start with z6Mk, got %s", did)
	}
	back, err := PublicKeyFromDID(did)
	if err != nil || !back.Equal(pub) {
		t.Fatalf("PublicKeyFromDID = %x, %v", back, err)
	}
	for _, bad := range []string{"", "did:web:example", "did:key:z", "did:key:z111", did[:len(did)-2]} {
		if _, err := PublicKeyFromDID(bad); !errors.Is(err, ErrBadDID) {
			t.Errorf("PublicKeyFromDID(%q) err = %v", bad, err)
		}
	}
}

func TestEnvelopeSealOpen(t *testing.T) {
	k := newKey(t)
	now := time.Unix(1_700_000_000, 0)
	in := &Accept{JobID: "j1", AllocationID: "a1", Resources: Resources{CPU: 1000, Memory: 1 << 20}}
	env, err := Seal(k, in, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalEnvelope(wire)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := back.Open(now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := msg.(*Accept)
	if !ok || got.JobID != in.JobID || got.Resources != in.Resources {
		t.Fatalf("opened %#v", msg)
	}
}

// TestEnvelopeOpenSealed opens an envelope this process sealed without
// verifying its signature again, but still refuses it once expired and
// still decodes strictly.
func TestEnvelopeOpenSealed(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	env, err := Seal(newKey(t), &Accept{JobID: "j1"}, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := env.OpenSealed(now)
	if a, ok := msg.(*Accept); err != nil || !ok || a.JobID != "j1" {
		t.Fatalf("OpenSealed: %#v, %v", msg, err)
	}
	if _, err := env.OpenSealed(now.Add(time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: got %v, want ErrExpired", err)
	}
	env.Body = json.RawMessage(`{"job_id":"j1","extra":1}`)
	if _, err := env.OpenSealed(now); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown field: got %v, want ErrMalformed", err)
	}
}

func TestEnvelopeRejects(t *testing.T) {
	k, other := newKey(t), newKey(t)
	now := time.Unix(1_700_000_000, 0)
	seal := func() *Envelope {
		env, err := Seal(k, &Cancel{JobID: "j", AllocationID: "a", Reason: "user"}, now, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	cases := map[string]struct {
		mutate func(*Envelope)
		at     time.Time
		want   error
	}{
		"expired":         {func(*Envelope) {}, now.Add(time.Minute), ErrExpired},
		"tampered body":   {func(e *Envelope) { e.Body = json.RawMessage(`{"job_id":"j2","allocation_id":"a","reason":"user"}`) }, now, ErrBadSignature},
		"forged sender":   {func(e *Envelope) { e.From = DIDFromPublicKey(other.Public().(ed25519.PublicKey)) }, now, ErrBadSignature},
		"re-kinded":       {func(e *Envelope) { e.Kind = KindStatusQuery }, now, ErrBadSignature},
		"extended expiry": {func(e *Envelope) { e.Expiry += int64(time.Hour) }, now, ErrBadSignature},
		"no signature":    {func(e *Envelope) { e.Sig = nil }, now, ErrBadSignature},
		"bad sender":      {func(e *Envelope) { e.From = "did:web:x" }, now, ErrBadDID},
	}
	for name, c := range cases {
		env := seal()
		c.mutate(env)
		if _, err := env.Open(c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: Open err = %v; want %v", name, err, c.want)
		}
	}
}

func TestEnvelopeUnknownKindAndFields(t *testing.T) {
	k := newKey(t)
	now := time.Unix(1_700_000_000, 0)
	env, _ := Seal(k, &Cancel{JobID: "j"}, now, time.Minute)
	env.Kind = "launch_missiles"
	env.Sig = ed25519.Sign(k, env.signingBytes())
	if _, err := env.Open(now); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
	env.Kind = KindCancel
	env.Body = json.RawMessage(`{"job_id":"j","extra":1}`)
	env.Sig = ed25519.Sign(k, env.signingBytes())
	if _, err := env.Open(now); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestUnmarshalEnvelopeLimits(t *testing.T) {
	if _, err := UnmarshalEnvelope(make([]byte, MaxTaskEnvelopeSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	// Over its kind's limit, though under the largest: refused once parsed.
	padded := fmt.Sprintf(`{"kind":"bid","from":"x","nonce":"n","sig":"AA==","body":{"job_id":%q}}`, strings.Repeat("x", MaxEnvelopeSize))
	if _, err := UnmarshalEnvelope([]byte(padded)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a bid over MaxEnvelopeSize: %v", err)
	}
	for _, bad := range []string{"", "{", `{"kind":"bid"}`, `[]`, `{"kind":"bid","from":"x","nonce":"n","sig":"AA==","zzz":1}`} {
		if _, err := UnmarshalEnvelope([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("UnmarshalEnvelope(%q) err = %v", bad, err)
		}
	}
}

// What is signed (DESIGN.md): every message kind is on one side of the
// rule, a status on the side of its state.
func TestSigned(t *testing.T) {
	signed := []Message{&BidRequest{}, &BidRequests{}, &Bid{}, &Accept{}, &Confirm{}, &Invocation{}, &BlobRequest{}, &CapabilityRecord{},
		&Receipt{}, &ReceiptAck{}, &Status{State: AllocCompleted}, &Status{State: AllocFailed}, &Status{State: AllocCancelled}}
	bare := []Message{&Decline{}, &Reject{}, &Cancel{}, &StatusQuery{}, &TraceQuery{}, &TraceSpans{},
		&Status{State: AllocRunning}, &Status{State: AllocLocked}}
	for _, m := range signed {
		if !Signed(m) {
			t.Errorf("%s %+v travels bare", m.Kind(), m)
		}
	}
	for _, m := range bare {
		if Signed(m) {
			t.Errorf("%s %+v must be signed", m.Kind(), m)
		}
	}
}

// A bare body decodes as an envelope's: its kind's fields only, one value.
func TestDecodeBody(t *testing.T) {
	if m, err := DecodeBody(KindCancel, []byte(`{"job_id":"j","allocation_id":"a"}`)); err != nil || m.(*Cancel).AllocationID != "a" {
		t.Fatalf("%#v %v", m, err)
	}
	for _, tc := range []struct {
		kind Kind
		body string
	}{
		{KindCancel, `{"job_id":"j","extra":1}`},
		{KindCancel, `{"job_id":"j"}{}`},
		{KindCancel, ``},
		{KindCancel, `[1]`},
		{"nonsense", `{}`},
	} {
		if _, err := DecodeBody(tc.kind, []byte(tc.body)); err == nil {
			t.Errorf("%s %q decoded", tc.kind, tc.body)
		}
	}
}

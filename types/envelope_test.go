package types

import (
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// cborOf encodes v as the wire does, for bodies and envelopes built by hand.
func cborOf(t testing.TB, v any) []byte {
	t.Helper()
	b, err := encoding.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

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
	env.Body = cborOf(t, map[string]any{"job_id": "j1", "extra": 1})
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
		"tampered body":   {func(e *Envelope) { e.Body = cborOf(t, &Cancel{JobID: "j2", AllocationID: "a", Reason: "user"}) }, now, ErrBadSignature},
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
	env.Body = cborOf(t, map[string]any{"job_id": "j", "extra": 1})
	env.Sig = ed25519.Sign(k, env.signingBytes())
	if _, err := env.Open(now); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestUnmarshalEnvelopeLimits(t *testing.T) {
	if _, err := UnmarshalEnvelope(make([]byte, MaxTaskEnvelopeSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	envelope := func(fields map[string]any) []byte {
		for k, v := range map[string]any{"kind": "bid", "from": "x", "nonce": "n", "expiry": 1, "sig": []byte{0}, "body": []byte{0xa0}} {
			if _, ok := fields[k]; !ok {
				fields[k] = v
			}
		}
		return cborOf(t, fields)
	}
	// Over its kind's limit, though under the largest: refused once parsed.
	padded := envelope(map[string]any{"body": cborOf(t, map[string]any{"job_id": strings.Repeat("x", MaxEnvelopeSize)})})
	if _, err := UnmarshalEnvelope(padded); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a bid over MaxEnvelopeSize: %v", err)
	}
	valid := envelope(map[string]any{})
	if _, err := UnmarshalEnvelope(valid); err != nil {
		t.Fatalf("the base of the bad cases does not decode: %v", err)
	}
	for name, bad := range map[string][]byte{
		"empty":           {},
		"truncated":       valid[:len(valid)-1],
		"trailing":        append(slices.Clone(valid), 0),
		"an array":        cborOf(t, []any{"bid"}),
		"no from":         cborOf(t, map[string]any{"kind": "bid", "nonce": "n", "sig": []byte{0}}),
		"unknown field":   envelope(map[string]any{"zzz": 1}),
		"text body":       envelope(map[string]any{"body": "{}"}),
		"negative expiry": envelope(map[string]any{"expiry": -1.5}),
		"indefinite":      append([]byte{0xbf}, append(valid[1:], 0xff)...),
		"tagged":          append([]byte{0xd8, 0x20}, valid...),
		"duplicate key":   slices.Concat([]byte{0xa7}, valid[1:], cborOf(t, "kind"), cborOf(t, "bid")),
		"a JSON envelope": []byte(`{"kind":"bid","from":"x","nonce":"n","expiry":1,"sig":"AA==","body":{}}`),
	} {
		if _, err := UnmarshalEnvelope(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: UnmarshalEnvelope(%x) err = %v", name, bad, err)
		}
	}
	for _, unsigned := range [][]byte{envelope(map[string]any{"sig": []byte{}}), cborOf(t, map[string]any{"kind": "bid", "from": "x", "nonce": "n"})} {
		if _, err := UnmarshalEnvelope(unsigned); !errors.Is(err, ErrUnsigned) {
			t.Errorf("an envelope without a signature: %v, want ErrUnsigned", err)
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
	good := cborOf(t, map[string]any{"job_id": "j", "allocation_id": "a"})
	if m, err := DecodeBody(KindCancel, good); err != nil || m.(*Cancel).AllocationID != "a" {
		t.Fatalf("%#v %v", m, err)
	}
	for _, tc := range []struct {
		kind Kind
		body []byte
	}{
		{KindCancel, cborOf(t, map[string]any{"job_id": "j", "extra": 1})},
		{KindCancel, append(slices.Clone(good), 0xa0)},
		{KindCancel, nil},
		{KindCancel, cborOf(t, []int{1})},
		{KindCancel, []byte(`{"job_id":"j"}`)},
		{KindAccept, cborOf(t, map[string]any{"job_id": "j", "resources": map[string]any{"cpu": -1}})},
		{KindAccept, cborOf(t, map[string]any{"job_id": "j", "resources": map[string]any{"memory": -1}})},
		{KindAccept, cborOf(t, map[string]any{"job_id": "j", "resources": map[string]any{"cpu": int64(1) << 40}})},
		{KindBid, cborOf(t, map[string]any{"job_id": "j", "price": 1.5})},
		{KindBid, cborOf(t, map[string]any{"job_id": "j", "price": "1.5"})},
		{KindBid, cborOf(t, map[string]any{"job_id": "j", "hold_until": "yesterday"})},
		{"nonsense", cborOf(t, map[string]any{})},
	} {
		if _, err := DecodeBody(tc.kind, tc.body); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKind) {
			t.Errorf("%s %x: %v", tc.kind, tc.body, err)
		}
	}
}

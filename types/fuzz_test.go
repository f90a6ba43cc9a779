package types

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"
)

// fuzzNow is the clock of the fuzz targets; the committed seeds expire an
// hour after it.
var fuzzNow = time.Unix(1_700_000_000, 0)

// allKinds is the closed message set: newMessage knows each, and
// sampleMessages has one of each.
var allKinds = []Kind{
	KindBidRequest, KindBidRequests, KindBid, KindDecline, KindAccept, KindConfirm, KindReject,
	KindInvocation, KindStatus, KindCancel, KindStatusQuery, KindBlobRequest, KindCapability, KindReceipt,
	KindReceiptAck, KindTraceQuery, KindTraceSpans,
}

// sampleMessages returns one message of every kind, its fields filled in.
func sampleMessages() []Message {
	at := fuzzNow.Add(time.Second).UTC()
	node := NodeID{UUID: "5f0c", PeerID: "12D3KooWPeer", DID: "did:key:z6MkPeer", CapabilityCID: "bafkrei"}
	res := Resources{CPU: 1500, Memory: 64 << 20, Disk: 1 << 30, GPUs: 1}
	return []Message{
		&BidRequest{JobID: "j", Requester: "12D3KooWReq", ReplyAddrs: []string{"/ip4/127.0.0.1/tcp/4001"}, Executor: "wasm",
			Resources: res, Constraints: Constraints{Labels: map[string]string{"region": "eu"}, RenewableOnly: true, MaxPrice: 2_500_000}, Deadline: at,
			Trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		&BidRequests{Requests: []BidRequest{{JobID: "j1", Requester: "12D3KooWReq", Executor: "wasm", Resources: res, Deadline: at},
			{JobID: "j2", Requester: "12D3KooWReq", Executor: "docker", Resources: res, Deadline: at, Network: true}}},
		&Bid{JobID: "j", Node: node, Addrs: []string{"/ip4/127.0.0.1/tcp/4002"}, Price: Credit, Score: 812.5, Load: 0.25, HoldUntil: at},
		&Decline{JobID: "j", Node: node, Reasons: []string{"memory: need 900 TiB, offered 8 GiB"}, Busy: true},
		&Accept{JobID: "j", AllocationID: "a", Resources: res, Trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01"},
		&Confirm{JobID: "j", AllocationID: "a", Epoch: 7, LockExpiry: at},
		&Reject{JobID: "j", AllocationID: "a", Reason: "lock expired"},
		&Invocation{JobID: "j", AllocationID: "a", Epoch: 7, Task: Task{Executor: "wasm", Module: "bafkreimodule", Args: []string{"a", "b"},
			Env: map[string]string{"K": "v"}, Stdin: "bafkreistdin", Inputs: "bafkreiinputs", Resources: res, Timeout: 30 * time.Second,
			Files: []InputFile{{Path: "parts/0.txt", CID: "bafkreipart", Size: 42, From: []string{"12D3KooWPeer"}}, {Path: "b", CID: "bafkreib"}}},
			Trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b9-01"},
		&Status{JobID: "j", AllocationID: "a", State: AllocCompleted, Reason: "done", Result: &Result{ExitCode: 3, Stdout: "bafkreiout",
			Stderr: "bafkreierr", StdoutTruncated: true, Files: map[string]string{"out.txt": "bafkreifile"},
			Sizes: map[string]int64{"bafkreiout": 5, "bafkreierr": 0, "bafkreifile": 7}, DurationMillis: 12,
			Usage: &Usage{CPU: 9e6, Wall: 12e6, MemoryPeak: 3 << 20, MemoryLimit: 64 << 20, PeakMiBms: 36, LimitMiBms: 768, OutputBytes: 12}}},
		&Cancel{JobID: "j", AllocationID: "a", Reason: "user"},
		&StatusQuery{JobID: "j", AllocationID: "a"},
		&BlobRequest{CID: "bafkreiblob"},
		&CapabilityRecord{PeerID: "12D3KooWPeer", DID: "did:key:z6MkPeer",
			Hardware:  Hardware{Cores: 8, CPUModel: "x", CPUMHz: 3000, Memory: 16 << 30, Disk: 1 << 40, Arch: "amd64", OS: "linux", GPUs: []GPU{{Vendor: "v", Model: "m", Memory: 8 << 30}}},
			Benchmark: Benchmark{CPUSingle: 100, CPUAll: 800, MemoryMBps: 1e4, DiskWriteMBps: 500, MeasuredAt: at, DurationMillis: 10},
			Offered:   res, Price: Credit, Labels: map[string]string{"region": "eu"}, Energy: Energy{Renewable: true, CarbonIntensity: 50},
			Executors: []string{"wasm"}, IssuedAt: at},
		&Receipt{ID: "a/3", JobID: "j", AllocationID: "a", Requester: "12D3KooWReq", Account: "acme", Seq: 3, Calls: 1200, Failed: 2, BusyMillis: 5400,
			From: at, To: at.Add(time.Minute), Final: true, Resources: res, Price: 2 * Credit, Amount: 50_000,
			Usage: &Usage{CPU: 4e9, Wall: 6e10, MemoryPeak: 48 << 20, MemoryLimit: 64 << 20, PeakMiBms: 2880000, LimitMiBms: 3840000, OutputBytes: 1 << 20, Calls: 1200}},
		&ReceiptAck{ReceiptID: "a/3", Digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Amount: 50_000},
		&TraceQuery{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
		&TraceSpans{Spans: []Span{{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", ID: "00f067aa0ba902b7", Parent: "00f067aa0ba902b6", Name: "bid",
			Start: at, End: at.Add(time.Millisecond), Error: "declined", Attrs: map[string]string{"job": "j"}}}, Truncated: true},
	}
}

func TestSampleMessagesCoverEveryKind(t *testing.T) {
	samples := map[Kind]bool{}
	for _, m := range sampleMessages() {
		samples[m.Kind()] = true
	}
	for _, k := range allKinds {
		if _, ok := newMessage(k); !ok || !samples[k] {
			t.Errorf("kind %s: known %v, sampled %v", k, ok, samples[k])
		}
	}
}

// fuzzKey is the fixed signing key of the fuzz targets.
func fuzzKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

// reopen seals msg again, sends it through the wire encoding and opens it:
// what a node that decoded msg would get back if it sent it on.
func reopen(t *testing.T, msg Message) Message {
	t.Helper()
	env, err := Seal(fuzzKey(), msg, fuzzNow, time.Minute)
	if err != nil {
		t.Fatalf("a decoded %s does not seal again: %v", msg.Kind(), err)
	}
	wire, err := env.Marshal()
	if errors.Is(err, ErrTooLarge) {
		t.Skip("re-encoded over the size limit")
	}
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalEnvelope(wire)
	if err != nil {
		t.Fatalf("resealed envelope does not decode: %v\n%s", err, wire)
	}
	again, err := back.Open(fuzzNow)
	if err != nil {
		t.Fatalf("resealed %s does not open: %v\n%s", msg.Kind(), err, wire)
	}
	return again
}

// sameJSON fails unless a and b encode to the same JSON.
func sameJSON(t *testing.T, a, b Message) {
	t.Helper()
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	if erra != nil || errb != nil || !bytes.Equal(ja, jb) {
		t.Fatalf("round trip changed the %s:\nbefore %s\nafter  %s\n(%v, %v)", a.Kind(), ja, jb, erra, errb)
	}
}

func wrapsAny(err error, sentinels ...error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// envelopeSeeds are FuzzOpenEnvelope's seeds: one valid envelope of every
// kind (sampleMessages), signed by fuzzKey, and broken ones: expired,
// tampered, re-kinded, with a field too many, a bad sender, truncated,
// with data after it, unsigned, and one of the JSON era.
func envelopeSeeds(f *testing.F) [][]byte {
	seal := func(msg Message, at time.Time, change func(*Envelope)) []byte {
		env, err := Seal(fuzzKey(), msg, at, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		change(env)
		b, err := encoding.Marshal(env)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	var seeds [][]byte
	for _, m := range sampleMessages() {
		seeds = append(seeds, seal(m, fuzzNow, func(*Envelope) {}))
	}
	cancel := &Cancel{JobID: "j", AllocationID: "a", Reason: "user"}
	valid := seal(cancel, fuzzNow, func(*Envelope) {})
	extra, err := encoding.Marshal(map[string]any{"kind": "cancel", "from": "did:key:z6Mk", "nonce": "00", "expiry": 1, "body": []byte{0xa0}, "sig": []byte{1}, "zzz": 1})
	if err != nil {
		f.Fatal(err)
	}
	return append(seeds,
		seal(cancel, fuzzNow.Add(-2*time.Hour), func(*Envelope) {}),
		seal(cancel, fuzzNow, func(e *Envelope) { e.Body[len(e.Body)-1] ^= 1 }),
		seal(cancel, fuzzNow, func(e *Envelope) { e.Kind = KindStatusQuery }),
		seal(cancel, fuzzNow, func(e *Envelope) { e.Kind = "launch_missiles" }),
		seal(cancel, fuzzNow, func(e *Envelope) { e.From = "did:key:zNotAKey" }),
		seal(cancel, fuzzNow, func(e *Envelope) { e.Sig = nil }),
		extra,
		valid[:len(valid)/2],
		append(slices.Clone(valid), 0xf6),
		[]byte(`{"kind":"cancel","from":"did:key:z6Mk","nonce":"00","expiry":1,"body":{},"sig":"AA=="}`),
	)
}

// FuzzOpenEnvelope feeds whole envelopes to UnmarshalEnvelope and Open, as a
// stream or the bid-request topic hands them over: no panic, every error
// wraps a types sentinel, and an opened message is of the envelope's kind
// and survives being sealed and opened again. Seeds: envelopeSeeds.
func FuzzOpenEnvelope(f *testing.F) {
	for _, b := range envelopeSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := UnmarshalEnvelope(b)
		if err != nil {
			if !wrapsAny(err, ErrMalformed, ErrTooLarge) {
				t.Fatalf("UnmarshalEnvelope error %v wraps no sentinel", err)
			}
			return
		}
		msg, err := env.Open(fuzzNow)
		if err != nil {
			if !wrapsAny(err, ErrBadDID, ErrBadSignature, ErrExpired, ErrUnknownKind, ErrMalformed) {
				t.Fatalf("Open error %v wraps no sentinel", err)
			}
			return
		}
		if msg.Kind() != env.Kind {
			t.Fatalf("opened kind %s from envelope of kind %s", msg.Kind(), env.Kind)
		}
		sameJSON(t, msg, reopen(t, msg))
	})
}

// bodySeed is a kind and a body for FuzzOpenBody.
type bodySeed struct {
	kind string
	body []byte
}

// bodySeeds are FuzzOpenBody's seeds: the body of every kind
// (sampleMessages), and bodies each decoder must refuse: a negative or
// oversized quantity, a price as a float or as text, a time as a number,
// an unknown field, a key given twice, the wrong type, data after the
// body, nesting past the limit, a tag, an indefinite length, JSON.
func bodySeeds(f *testing.F) map[string]bodySeed {
	enc := func(v any) []byte {
		b, err := encoding.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	seeds := map[string]bodySeed{}
	for _, m := range sampleMessages() {
		seeds[string(m.Kind())] = bodySeed{string(m.Kind()), enc(m)}
	}
	nested := any(1)
	for range 40 {
		nested = []any{nested}
	}
	cancel := enc(&Cancel{JobID: "j", AllocationID: "a"})
	for name, body := range map[string]struct {
		kind string
		body any
	}{
		"negative_cpu":     {"accept", map[string]any{"job_id": "j", "resources": map[string]any{"cpu": -1}}},
		"huge_cpu":         {"accept", map[string]any{"job_id": "j", "resources": map[string]any{"cpu": int64(1) << 40}}},
		"negative_memory":  {"bid_request", map[string]any{"job_id": "j", "resources": map[string]any{"memory": -5}}},
		"price_float":      {"bid", map[string]any{"job_id": "j", "price": 1.25}},
		"price_text":       {"bid", map[string]any{"job_id": "j", "price": "1.25"}},
		"max_price_float":  {"bid_request", map[string]any{"job_id": "j", "constraints": map[string]any{"max_price": 2.5}}},
		"time_number":      {"bid", map[string]any{"job_id": "j", "hold_until": 1_700_000_000}},
		"time_bad":         {"confirm", map[string]any{"job_id": "j", "lock_expiry": "2023-13-45T99:00:00Z"}},
		"unknown_field":    {"cancel", map[string]any{"job_id": "j", "launch": true}},
		"wrong_type":       {"status", map[string]any{"job_id": 7}},
		"null_result":      {"status", map[string]any{"job_id": "j", "result": nil}},
		"nested_arrays":    {"trace_spans", map[string]any{"spans": nested}},
		"negative_timeout": {"invocation", map[string]any{"job_id": "j", "task": map[string]any{"timeout": -1}}},
	} {
		seeds[name] = bodySeed{body.kind, enc(body.body)}
	}
	seeds["trailing"] = bodySeed{"cancel", append(slices.Clone(cancel), 0xa0)}
	seeds["duplicate_key"] = bodySeed{"cancel", slices.Concat([]byte{0xa3}, cancel[1:], enc("job_id"), enc("k"))}
	seeds["tagged"] = bodySeed{"cancel", append([]byte{0xc1}, cancel...)}
	seeds["indefinite"] = bodySeed{"cancel", slices.Concat([]byte{0xbf}, cancel[1:], []byte{0xff})}
	seeds["empty"] = bodySeed{"cancel", []byte{}}
	seeds["json"] = bodySeed{"cancel", []byte(`{"job_id":"j"}`)}
	seeds["unknown_kind"] = bodySeed{"launch_missiles", cancel}
	return seeds
}

// FuzzOpenBody reaches the message decoders behind the signature: it signs
// the fuzzed body under the fuzzed kind, so every input verifies and only
// the body can be wrong. A body is refused with ErrMalformed (or the kind
// with ErrUnknownKind); one that opens encodes to a body that opens to the
// same message. Seeds: bodySeeds.
func FuzzOpenBody(f *testing.F) {
	for _, s := range bodySeeds(f) {
		f.Add(s.kind, s.body)
	}
	key := fuzzKey()
	from := DIDFromPublicKey(key.Public().(ed25519.PublicKey))
	f.Fuzz(func(t *testing.T, kind string, body []byte) {
		env := &Envelope{Kind: Kind(kind), From: from, Nonce: "00", Expiry: fuzzNow.Add(time.Minute).UnixNano(), Body: body}
		env.Sig = ed25519.Sign(key, env.signingBytes())
		msg, err := env.Open(fuzzNow)
		if err != nil {
			if !wrapsAny(err, ErrMalformed, ErrUnknownKind) {
				t.Fatalf("Open error %v: a signed, unexpired body can only be malformed or of an unknown kind", err)
			}
			return
		}
		if msg.Kind() != env.Kind {
			t.Fatalf("opened kind %s from envelope of kind %s", msg.Kind(), env.Kind)
		}
		sameJSON(t, msg, reopen(t, msg))
	})
}

// FuzzCallRequest feeds call frames to CallRequest.UnmarshalBinary, as a
// provider's call stream hands them over: no panic, every error wraps
// ErrBadCallFrame, a decoded request holds at most maxCallEnvVars
// variables and a trace context of at most MaxCallTrace bytes, and it encodes to bytes that decode to an equal request and
// encode again the same (the encoding is canonical: sorted variables,
// shortest numbers). Seeds are in testdata/fuzz/FuzzCallRequest.
func FuzzCallRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var r CallRequest
		if err := r.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrBadCallFrame) {
				t.Fatalf("UnmarshalBinary error %v does not wrap ErrBadCallFrame", err)
			}
			return
		}
		if len(r.Env) > maxCallEnvVars || len(r.Trace) > MaxCallTrace {
			t.Fatalf("decoded %d environment variables (limit %d), a trace context of %d bytes (limit %d)", len(r.Env), maxCallEnvVars, len(r.Trace), MaxCallTrace)
		}
		wire := appendCall(t, &r)
		var back CallRequest
		if err := back.UnmarshalBinary(wire); err != nil {
			t.Fatalf("a decoded request re-encodes to %x, which does not decode: %v", wire, err)
		}
		if !sameRequest(&r, &back) {
			t.Fatalf("round trip changed the request:\nbefore %+v\nafter  %+v", r, back)
		}
		if again := appendCall(t, &back); !bytes.Equal(again, wire) {
			t.Fatalf("encoding is not canonical:\nfirst  %x\nsecond %x", wire, again)
		}
	})
}

// FuzzCallReply is FuzzCallRequest for CallReply: a decoded reply also
// has a known status, and forwarding fields within their bounds. Seeds
// are in testdata/fuzz/FuzzCallReply.
func FuzzCallReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var r CallReply
		if err := r.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrBadCallFrame) {
				t.Fatalf("UnmarshalBinary error %v does not wrap ErrBadCallFrame", err)
			}
			return
		}
		if r.Status < CallOK || r.Status > CallNodeError {
			t.Fatalf("decoded unknown status %d", r.Status)
		}
		if len(r.Node) > MaxCallName || len(r.Job) > MaxCallName || r.Code != 0 && (r.Code < 400 || r.Code > 599) ||
			r.RetryAfter < 0 || r.RetryAfter != 0 && r.Code != 429 && r.Code != 503 {
			t.Fatalf("decoded forwarding fields out of bounds: %q %q %d %s", r.Node, r.Job, r.Code, r.RetryAfter)
		}
		wire := appendCall(t, &r)
		var back CallReply
		if err := back.UnmarshalBinary(wire); err != nil {
			t.Fatalf("a decoded reply re-encodes to %x, which does not decode: %v", wire, err)
		}
		if !sameReply(&r, &back) {
			t.Fatalf("round trip changed the reply:\nbefore %+v\nafter  %+v", r, back)
		}
		if again := appendCall(t, &back); !bytes.Equal(again, wire) {
			t.Fatalf("encoding is not canonical:\nfirst  %x\nsecond %x", wire, again)
		}
	})
}

// appendCall encodes a call frame, which must not fail or grow past
// MaxCallFrame for what was decoded from a frame (no larger than it).
func appendCall(t *testing.T, m interface{ AppendBinary([]byte) ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatalf("a decoded frame does not encode: %v", err)
	}
	return b
}

// sameRequest compares requests field by field: a nil and an empty
// stdin or environment are the same.
func sameRequest(a, b *CallRequest) bool {
	return a.Seq == b.Seq && a.Allocation == b.Allocation && a.Timeout == b.Timeout &&
		maps.Equal(a.Env, b.Env) && bytes.Equal(a.Stdin, b.Stdin) && a.Trace == b.Trace
}

func sameReply(a, b *CallReply) bool {
	return a.Seq == b.Seq && a.Status == b.Status && a.Error == b.Error && a.ExitCode == b.ExitCode &&
		bytes.Equal(a.Stdout, b.Stdout) && bytes.Equal(a.Stderr, b.Stderr) &&
		a.StdoutTruncated == b.StdoutTruncated && a.StderrTruncated == b.StderrTruncated && a.Duration == b.Duration &&
		a.Node == b.Node && a.Job == b.Job && a.Code == b.Code && a.RetryAfter == b.RetryAfter
}

package types

import (
	"crypto/ed25519"
	"testing"
	"time"
)

// Benchmarks of the wire hot paths: every protocol message is sealed,
// encoded, decoded and opened once per hop.

var benchNow = time.Unix(1_700_000_000, 0)

// benchMessages are typical messages: a bid request as a requester
// gossips it, and the final status of an allocation with its result.
func benchMessages() map[string]Message {
	return map[string]Message{
		"bid_request": &BidRequest{
			JobID:      "job-7d2f6c1e-4b9a-4e1d-9c33-0a8f5b2e6d41",
			Requester:  "12D3KooWGzBzDkZ8H5tWv2t1X8yYp6ZkJQm2a8mQ7GmN4x4u3c9R",
			ReplyAddrs: []string{"/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"},
			Executor:   "wasm",
			Resources:  Resources{CPU: 500, Memory: 64 << 20, Disk: 128 << 20},
			Constraints: Constraints{
				Labels:   map[string]string{"region": "eu-west", "tier": "standard"},
				MaxPrice: 2_500_000,
			},
			Deadline: benchNow.Add(50 * time.Millisecond),
		},
		"status": &Status{
			JobID: "job-7d2f6c1e-4b9a-4e1d-9c33-0a8f5b2e6d41", AllocationID: "job-7d2f6c1e-4b9a-4e1d-9c33-0a8f5b2e6d41-a1-c0",
			State: AllocCompleted,
			Result: &Result{
				ExitCode:       0,
				Stdout:         CIDOf([]byte("hello from dms: args=[a b]\n")).String(),
				Stderr:         CIDOf(nil).String(),
				Files:          map[string]string{"out.txt": CIDOf([]byte("out")).String(), "log/run.log": CIDOf([]byte("log")).String()},
				DurationMillis: 3,
			},
		},
	}
}

func benchSeal(b *testing.B, k ed25519.PrivateKey, msg Message) *Envelope {
	b.Helper()
	env, err := Seal(k, msg, benchNow, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	return env
}

// BenchmarkSeal encodes a message and signs it (Ed25519).
func BenchmarkSeal(b *testing.B) {
	k := newKey(b)
	for name, msg := range benchMessages() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Seal(k, msg, benchNow, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen verifies an envelope's signature and decodes its message.
func BenchmarkOpen(b *testing.B) {
	k := newKey(b)
	for name, msg := range benchMessages() {
		env := benchSeal(b, k, msg)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := env.Open(benchNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEnvelopeMarshal encodes a sealed envelope for the wire.
func BenchmarkEnvelopeMarshal(b *testing.B) {
	k := newKey(b)
	for name, msg := range benchMessages() {
		env := benchSeal(b, k, msg)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := env.Marshal(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnmarshalEnvelope decodes an envelope from the wire, unverified.
func BenchmarkUnmarshalEnvelope(b *testing.B) {
	k := newKey(b)
	for name, msg := range benchMessages() {
		wire, err := benchSeal(b, k, msg).Marshal()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				if _, err := UnmarshalEnvelope(wire); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEnvelopeRoundTrip is one hop of a message: Seal and Marshal on
// the sender, UnmarshalEnvelope and Open on the receiver.
func BenchmarkEnvelopeRoundTrip(b *testing.B) {
	k := newKey(b)
	for name, msg := range benchMessages() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				env, err := Seal(k, msg, benchNow, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				wire, err := env.Marshal()
				if err != nil {
					b.Fatal(err)
				}
				back, err := UnmarshalEnvelope(wire)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := back.Open(benchNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCIDOf names a blob: every module, input and output is hashed.
func BenchmarkCIDOf(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
	}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}} {
		data := make([]byte, c.size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				_ = CIDOf(data)
			}
		})
	}
}

var (
	benchNeed    = Resources{CPU: 500, Memory: 64 << 20, Disk: 128 << 20}
	benchOffered = Resources{CPU: 4000, Memory: 8 << 30, Disk: 100 << 30}
	benchTight   = Resources{CPU: 250, Memory: 32 << 20, Disk: 100 << 30}
	benchSink    bool
	benchReasons []string
)

// BenchmarkResourcesFits is the capability fit every check and lock makes.
func BenchmarkResourcesFits(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchSink = benchNeed.Fits(benchOffered)
	}
}

// BenchmarkResourcesShortfall explains a fit: the nil fast path when the
// need fits, and two formatted reasons when it does not.
func BenchmarkResourcesShortfall(b *testing.B) {
	for name, offered := range map[string]Resources{"fits": benchOffered, "short": benchTight} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchReasons = benchNeed.Shortfall(offered)
			}
		})
	}
	if len(benchNeed.Shortfall(benchTight)) != 2 {
		b.Fatalf("shortfall %q, want two reasons", benchNeed.Shortfall(benchTight))
	}
}

// BenchmarkDID is the did:key work every Seal (encode the sender's key) and
// every Verify (decode it) does.
func BenchmarkDID(b *testing.B) {
	pub := newKey(b).Public().(ed25519.PublicKey)
	did := DIDFromPublicKey(pub)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = DIDFromPublicKey(pub)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := PublicKeyFromDID(did); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSigningBytes builds the bytes an envelope's signature covers,
// once in Seal and once in Verify.
func BenchmarkSigningBytes(b *testing.B) {
	env := benchSeal(b, newKey(b), benchMessages()["bid_request"])
	b.ReportAllocs()
	for b.Loop() {
		_ = env.signingBytes()
	}
}

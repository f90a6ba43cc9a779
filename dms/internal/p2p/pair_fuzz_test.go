package p2p

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/types"
)

// FuzzReadPair feeds the message of a pair request (the bytes after its
// protocol byte) to readPair, as servePair does for a cancel, and then as
// a reply: no panic; an error is a *RejectError; what is admitted is an
// ack (a reply only), a verified envelope, or a bare message of a kind the
// protocol carries that needs no signature, which encodes back to a bare
// message that reads the same.
func FuzzReadPair(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	pk, err := crypto.UnmarshalEd25519PrivateKey(key)
	if err != nil {
		f.Fatal(err)
	}
	remote, err := peer.IDFromPrivateKey(pk)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	h := &Host{cfg: Config{Key: key, Clock: func() time.Time { return now }, MessageTTL: time.Minute},
		verifier: &verifier{clock: func() time.Time { return now }, maxTTL: 10 * time.Minute, replay: newReplayCache(1 << 10)}}
	f.Add(bare(types.KindCancel, `{"job_id":"j","allocation_id":"a"}`))
	f.Add(bare(types.KindStatus, `{"state":"running"}`))
	f.Add(bare(types.KindAccept, `{"job_id":"j"}`))
	f.Add([]byte{pairAck})
	if b, err := h.appendPair(nil, &types.Status{State: types.AllocCompleted}); err == nil {
		f.Add(b)
	}
	kinds, replies := protocolKinds(CancelProtocol)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, reply := range []bool{false, true} {
			k := kinds
			if reply {
				k = replies
			}
			env, msg, err := h.readPair(b, remote, k, reply)
			if err != nil {
				if _, ok := errors.AsType[*RejectError](err); !ok {
					t.Fatalf("%v is not a refusal", err)
				}
				continue
			}
			switch {
			case msg == nil:
				if !reply || env != nil {
					t.Fatalf("an ack admitted as a request (%v) or with an envelope", !reply)
				}
			case env == nil:
				if types.Signed(msg) {
					t.Fatalf("a bare %s admitted", msg.Kind())
				}
				again, err := h.appendPair(nil, msg)
				if err != nil {
					t.Fatal(err)
				}
				if _, m2, err := h.readPair(again, remote, k, reply); err != nil || m2.Kind() != msg.Kind() {
					t.Fatalf("re-encoded %s reads %v, %v", msg.Kind(), m2, err)
				}
			}
		}
	})
}

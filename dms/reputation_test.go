package dms

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/dms/api"
)

// TestForgivePeer: a peer whose result disagreed with a quorum shows as
// distrusted until the operator forgives it; forgiven, it stays so across
// a restart, and forgiving it again, or a peer never judged, is
// ErrNotFound.
func TestForgivePeer(t *testing.T) {
	d := testNet(t, 1, func(int) bool { return false })[0]
	ctx := context.Background()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	liar := id.String()
	for _, agreed := range []bool{true, true, false} {
		if err := d.orch.Judge(ctx, liar, agreed); err != nil {
			t.Fatal(err)
		}
	}
	if rep, err := d.Reputation(ctx); err != nil || len(rep) != 1 || !rep[0].Distrusted || rep[0].Agreed != 2 || rep[0].Disagreed != 1 {
		t.Fatalf("reputation %+v, %v", rep, err)
	}
	if err := d.ForgivePeer(ctx, liar); err != nil {
		t.Fatal(err)
	}
	if err := d.ForgivePeer(ctx, liar); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("forgiving again: %v, want ErrNotFound", err)
	}
	if err := d.ForgivePeer(ctx, "not-a-peer"); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("forgiving garbage: %v, want ErrBadRequest", err)
	}
	d.Close()
	back := reopen(t, d)
	if rep, err := back.Reputation(ctx); err != nil || len(rep) != 1 || rep[0].Distrusted || rep[0].Disagreed != 0 || rep[0].Agreed != 2 {
		t.Fatalf("reputation after a restart %+v, %v", rep, err)
	}
}

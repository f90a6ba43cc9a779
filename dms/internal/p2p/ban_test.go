package p2p

import (
	"testing"
	"time"
)

// TestBanListEnds: a ban holds for banFor, is counted once however often
// it is renewed while it holds, and a peer is let in again once it ended.
func TestBanListEnds(t *testing.T) {
	now := time.Now()
	b := newBanList(func() time.Time { return now })
	p := peerOf(t, newKey(t))
	if b.banned(p) || !b.InterceptPeerDial(p) {
		t.Fatal("a peer never banned is banned")
	}
	if !b.ban(p, now) || b.ban(p, now.Add(time.Minute)) {
		t.Fatal("ban: want new once, then not new while it holds")
	}
	now = now.Add(banFor - time.Nanosecond)
	if !b.banned(p) || b.InterceptPeerDial(p) || b.InterceptSecured(0, p, nil) {
		t.Fatal("the peer is let in before its ban ended")
	}
	now = now.Add(time.Nanosecond)
	if b.banned(p) || !b.InterceptSecured(0, p, nil) {
		t.Fatal("the peer is kept out after its ban ended")
	}
	if n := b.count(); n != 1 {
		t.Fatalf("bans counted %d, want 1", n)
	}
}

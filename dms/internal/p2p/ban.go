package p2p

import (
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Bans. Gossipsub graylists a peer whose score falls below
// graylistThreshold (score.go: about eleven invalid messages, or copies of
// an envelope it had delivered): it drops what the peer sends unprocessed,
// but still reads, decrypts and decodes every RPC of it. A peer flooding
// on purpose keeps those costs up for as long as it likes, so a graylisted
// peer is also banned: its connections are closed and the connection
// gater refuses new ones, both ways, for banFor. A ban is local and in
// memory; gossipsub keeps the peer's score for an hour after it
// disconnects, so a peer that comes back after its ban and goes on is
// banned again at once.
const (
	banFor = 10 * time.Minute
	// banCheck is how often the peers' scores are read for bans.
	banCheck = time.Second
)

// banList is the set of banned peers and the connection gater that keeps
// them out. Safe for concurrent use.
type banList struct {
	clock func() time.Time
	mu    sync.Mutex
	until map[peer.ID]time.Time
	bans  uint64 // bans since the start
}

var _ connmgr.ConnectionGater = (*banList)(nil)

func newBanList(clock func() time.Time) *banList {
	return &banList{clock: clock, until: make(map[peer.ID]time.Time)}
}

// ban bans p until now+banFor and reports whether it was not banned yet.
func (b *banList) ban(p peer.ID, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.until[p]) {
		return false
	}
	b.until[p] = now.Add(banFor)
	b.bans++
	return true
}

// banned reports whether p is banned now; ended bans are forgotten.
func (b *banList) banned(p peer.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.until[p]
	if ok && !b.clock().Before(u) {
		delete(b.until, p)
		return false
	}
	return ok
}

func (b *banList) count() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bans
}

func (b *banList) InterceptPeerDial(p peer.ID) bool                 { return !b.banned(p) }
func (b *banList) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !b.banned(p) }
func (b *banList) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (b *banList) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !b.banned(p)
}
func (b *banList) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// inspectScores is gossipsub's periodic score inspection: it bans the
// peers below the graylist threshold and closes their connections, then
// hands the scores to the test hook, if any.
func (h *Host) inspectScores(scores map[peer.ID]*pubsub.PeerScoreSnapshot) {
	now := h.cfg.Clock()
	for p, s := range scores {
		if s.Score < graylistThreshold && h.bans.ban(p, now) {
			h.cfg.Logger.Warn("p2p: peer banned: graylisted by its gossip score", "peer", p, "score", s.Score, "for", banFor)
			if h.ctx.Err() == nil {
				_ = h.host.Network().ClosePeer(p)
			}
		}
	}
	if h.cfg.scoreInspect != nil {
		h.cfg.scoreInspect(scores)
	}
}

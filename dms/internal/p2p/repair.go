package p2p

import (
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Gossipsub (go-libp2p-pubsub v0.19) learns of a peer only from the host's
// identify events, and loses a connected peer for good in two ways: when it
// fails to open its stream to the peer (handleNewPeer sends the peer on
// newPeerError, and the process loop deletes it), and when its stream to
// the peer dies five times within ten minutes while the connection stays up
// (handleDeadPeers respawns it MaxBackoffAttempts times, then deletes the
// peer). Nothing tries again while the connection lives
// (libp2p/go-libp2p-pubsub#433), so bid requests miss that node. Each time
// it declares a peer's stream dead, gossipsub also forgets the topics the
// peer announced, which the peer announces only when it opens its own
// stream.
//
// The repair finds such peers and hands them back to gossipsub as identify
// would: it announces their gossipsub protocols on the host's event bus,
// and gossipsub opens a stream to a connected peer it does not have (and
// ignores one it has). A peer gossipsub declared dead first gets its own
// gossipsub stream to this host reset, so that it opens another and
// announces its topics again; it is handed back a check later, so that it
// has forgotten this host's topics (as it does when its stream dies) before
// the new stream announces them. The connection is left alone: a job's
// streams may be running on it.

// maxRepairGap bounds the checks between two attempts to hand back a peer
// that stays missing: about a minute with the default GossipRepair.
const maxRepairGap = 32

// lostPeers decides what to do about the peers gossipsub does not have. It
// is a pure machine driven by checks: a peer found missing at two checks in
// a row is due, then again after 1, 2, 4... checks (up to maxRepairGap)
// while it stays missing, so a peer that never accepts is not hammered. A
// due peer that gossipsub declared dead is reset first and handed back at
// the next check. A peer not missing at a check is forgotten. Not safe for
// concurrent use.
type lostPeers struct {
	round int
	peers map[peer.ID]*lostPeer
}

type lostPeer struct {
	since    time.Time // when a check first found it missing
	due      int       // the round of its next step
	gap      int       // rounds between its next attempt and the one after
	attempts int
}

// missingPeer is a connected peer that speaks gossipsub but that gossipsub
// does not have; dead when gossipsub declared its stream dead (and forgot
// its topics) rather than failed to open one.
type missingPeer struct {
	id   peer.ID
	dead bool
}

// repair is one step for a missing peer: reset its stream to this host
// (reset), or hand it back to gossipsub, then attempt is the hand-back's
// number for the peer (1 for the first). since is when the peer was first
// found missing.
type repair struct {
	peer    peer.ID
	reset   bool
	attempt int
	since   time.Time
}

func newLostPeers() *lostPeers { return &lostPeers{peers: make(map[peer.ID]*lostPeer)} }

// check records the peers found missing at a check done at now, and returns
// the steps due.
func (l *lostPeers) check(now time.Time, missing []missingPeer) []repair {
	l.round++
	var due []repair
	still := make(map[peer.ID]bool, len(missing))
	for _, m := range missing {
		still[m.id] = true
		lp, ok := l.peers[m.id]
		switch {
		case !ok:
			l.peers[m.id] = &lostPeer{since: now, due: l.round + 1, gap: 1}
		case l.round < lp.due:
		case m.dead:
			lp.due = l.round + 1
			due = append(due, repair{peer: m.id, reset: true, attempt: lp.attempts, since: lp.since})
		default:
			lp.attempts++
			lp.due, lp.gap = l.round+lp.gap, min(2*lp.gap, maxRepairGap)
			due = append(due, repair{peer: m.id, attempt: lp.attempts, since: lp.since})
		}
	}
	for p := range l.peers {
		if !still[p] {
			delete(l.peers, p)
		}
	}
	return due
}

// deadStreams is a gossipsub tracer that keeps the peers whose stream
// gossipsub declared dead and has not opened again. Safe for concurrent
// use.
type deadStreams struct {
	mu   sync.Mutex
	dead map[peer.ID]bool
}

var _ pubsub.RawTracer = (*deadStreams)(nil)

func newDeadStreams() *deadStreams { return &deadStreams{dead: make(map[peer.ID]bool)} }

func (d *deadStreams) set(p peer.ID, dead bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dead {
		d.dead[p] = true
	} else {
		delete(d.dead, p)
	}
}

func (d *deadStreams) has(p peer.ID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dead[p]
}

// keep forgets the peers not kept: those no longer connected.
func (d *deadStreams) keep(kept func(peer.ID) bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.dead {
		if !kept(p) {
			delete(d.dead, p)
		}
	}
}

func (d *deadStreams) OnNewOutboundStream(p peer.ID, _ protocol.ID)       { d.set(p, false) }
func (d *deadStreams) OnClosedOutboundStream(p peer.ID)                   { d.set(p, true) }
func (*deadStreams) Join(string)                                          {}
func (*deadStreams) Leave(string)                                         {}
func (*deadStreams) Graft(peer.ID, string)                                {}
func (*deadStreams) Prune(peer.ID, string)                                {}
func (*deadStreams) ValidateMessage(*pubsub.Message)                      {}
func (*deadStreams) DeliverMessage(*pubsub.Message)                       {}
func (*deadStreams) RejectMessage(*pubsub.Message, string)                {}
func (*deadStreams) DuplicateMessage(*pubsub.Message)                     {}
func (*deadStreams) ThrottlePeer(peer.ID)                                 {}
func (*deadStreams) RecvRPC(*pubsub.RPC)                                  {}
func (*deadStreams) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (*deadStreams) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (*deadStreams) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (*deadStreams) UndeliverableMessage(*pubsub.Message)                 {}

// repairGossip runs until Close: every GossipRepair it checks that gossipsub
// has every connected peer that speaks it, and takes the steps lostPeers
// says are due. It owns em and closes it.
func (h *Host) repairGossip(em event.Emitter) {
	defer em.Close()
	lost := newLostPeers()
	tick := time.NewTicker(h.cfg.GossipRepair)
	defer tick.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-tick.C:
			missing := h.missingGossipPeers()
			if h.ctx.Err() != nil { // gossipsub stopped: it has nobody
				return
			}
			for _, r := range lost.check(now, missing) {
				if r.reset {
					h.resetGossipStreams(r)
				} else {
					h.handBack(em, r, now)
				}
			}
		}
	}
}

// missingGossipPeers returns the connected peers that speak gossipsub, by
// what identify recorded, but that gossipsub has no stream to (nor is
// opening one to). A peer identified after gossipsub answered may be listed
// though gossipsub has it by now: lostPeers waits a check for that.
func (h *Host) missingGossipPeers() []missingPeer {
	has := make(map[peer.ID]bool)
	for _, p := range h.ps.ListPeers("") {
		has[p] = true
	}
	connected := func(p peer.ID) bool { return h.host.Network().Connectedness(p) == network.Connected }
	h.dead.keep(connected)
	var out []missingPeer
	for _, p := range h.host.Network().Peers() {
		if !has[p] && connected(p) && len(h.gossipProtocols(p)) > 0 {
			out = append(out, missingPeer{id: p, dead: h.dead.has(p)})
		}
	}
	return out
}

// gossipProtocols returns the protocols of gossipsub (those NewGossipSub
// speaks by default, as startPubsub sets none) that p supports.
func (h *Host) gossipProtocols(p peer.ID) []protocol.ID {
	protos, err := h.host.Peerstore().SupportsProtocols(p, pubsub.GossipSubDefaultProtocols...)
	if err != nil {
		return nil
	}
	return protos
}

// resetGossipStreams resets the gossipsub streams r's peer opened to this
// host: the peer declares this host dead, opens a new stream and announces
// its topics on it again, which gossipsub here forgot.
func (h *Host) resetGossipStreams(r repair) {
	h.dead.set(r.peer, false)
	for _, c := range h.host.Network().ConnsToPeer(r.peer) {
		for _, s := range c.GetStreams() {
			if s.Stat().Direction == network.DirInbound && slices.Contains(pubsub.GossipSubDefaultProtocols, s.Protocol()) {
				_ = s.Reset()
			}
		}
	}
	h.cfg.Logger.Debug("p2p: gossipsub declared a connected peer dead, reset its stream", "peer", r.peer)
}

// handBack announces r's peer as having just added its gossipsub protocols,
// which makes gossipsub open a stream to it. The DHT and AutoNAT subscribers
// of the event read the peer's protocols from the peerstore, unchanged.
func (h *Host) handBack(em event.Emitter, r repair, now time.Time) {
	protos := h.gossipProtocols(r.peer)
	if len(protos) == 0 {
		return
	}
	if err := em.Emit(event.EvtPeerProtocolsUpdated{Peer: r.peer, Added: protos}); err != nil {
		h.cfg.Logger.Warn("p2p: gossip repair", "peer", r.peer, "err", err)
		return
	}
	h.gossipRepairs.Add(1)
	log := h.cfg.Logger.Debug
	if r.attempt == 1 {
		log = h.cfg.Logger.Info
	}
	log("p2p: gossipsub lost a connected peer, handed it back", "peer", r.peer,
		"attempt", r.attempt, "missing_for", now.Sub(r.since).Round(time.Millisecond))
}

package p2p

import (
	"maps"
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
// (libp2p/go-libp2p-pubsub#433), so bid requests miss that node.
//
// It also loses a peer's topics while keeping the peer: each time it
// declares its own stream to a peer dead, it forgets the topics the peer
// announced (clearPeerFromTopicsState), though the peer's stream to this
// host, which announced them, lives on; a peer announces its topics only
// when it opens its stream (the hello) or changes them. A connection
// closing under the stream, another to the peer staying up, is enough; the
// peer's own stream may be on the connection that stays. Gossipsub then
// has the peer but sends it nothing of the topic, for good.
//
// The repair finds such peers and makes gossipsub learn them again. A
// dropped peer is handed back as identify would: the repair announces its
// gossipsub protocols on the host's event bus, and gossipsub opens a stream
// to a connected peer it does not have (and ignores one it has). A dropped
// peer gossipsub declared dead first gets its own gossipsub stream to this
// host reset, so that it opens another and announces its topics again; it
// is handed back a check later, so that it has forgotten this host's
// topics (as it does when its stream dies) before the new stream announces
// them. A peer whose topics were forgotten gets both gossipsub streams of
// the pair reset at once: each side declares the other dead, forgets its
// topics and opens a new stream whose hello announces its own, so both
// learn each other's again (resetting only the peer's stream would make
// the peer forget this host's topics in turn, and the two would take turns
// for ever). The connection is left alone: a job's streams may be running
// on it.

// maxRepairGap bounds the checks between two attempts to repair a peer
// that stays missing: about a minute with the default GossipRepair.
const maxRepairGap = 32

// lostPeers decides what to do about the peers gossipsub does not have, or
// has without their topics. It is a pure machine driven by checks: a peer
// found missing at two checks in a row is due, then again after 1, 2, 4...
// checks (up to maxRepairGap) while it stays missing, so a peer that never
// accepts is not hammered. A due peer that gossipsub dropped after
// declaring it dead is reset first and handed back at the next check; a
// due peer whose topics gossipsub forgot has both streams reset. A peer not
// missing at a check is forgotten. Not safe for concurrent use.
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
// does not have, or has without the topics it announced (forgot). A peer
// it does not have is dead when gossipsub declared its stream dead (and
// forgot its topics) rather than failed to open one.
type missingPeer struct {
	id     peer.ID
	dead   bool
	forgot bool
}

// repairStep is what the repair does for a missing peer.
type repairStep int

const (
	// handBack announces the peer to gossipsub, which opens a stream to it.
	handBack repairStep = iota
	// resetTheirs resets the peer's gossipsub stream to this host.
	resetTheirs
	// resetBoth resets both gossipsub streams between the peer and this
	// host.
	resetBoth
)

// repair is one step for a missing peer; attempt is the number of the
// peer's hand-back or reset of both streams (1 for the first), since when
// the peer was first found missing.
type repair struct {
	peer    peer.ID
	step    repairStep
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
			due = append(due, repair{peer: m.id, step: resetTheirs, attempt: lp.attempts, since: lp.since})
		default:
			step := handBack
			if m.forgot {
				step = resetBoth
			}
			lp.attempts++
			lp.due, lp.gap = l.round+lp.gap, min(2*lp.gap, maxRepairGap)
			due = append(due, repair{peer: m.id, step: step, attempt: lp.attempts, since: lp.since})
		}
	}
	for p := range l.peers {
		if !still[p] {
			delete(l.peers, p)
		}
	}
	return due
}

// gossipWatch is a gossipsub tracer that shadows what gossipsub knows of
// its peers where it may lose it: the peers whose stream it declared dead
// and has not opened again (dead), the peers that announced the topic
// (subscribed), and those of them whose topics it forgot since their last
// announcement, by declaring its own stream to them dead (forgot). The
// tracer is called from gossipsub's loop in the order of its own changes,
// so the shadow is exact when read between two of them. Safe for
// concurrent use.
type gossipWatch struct {
	topic string

	mu         sync.Mutex
	dead       map[peer.ID]bool
	subscribed map[peer.ID]bool
	forgotten  map[peer.ID]time.Time // when its stream last died
}

var _ pubsub.RawTracer = (*gossipWatch)(nil)

func newGossipWatch(topic string) *gossipWatch {
	return &gossipWatch{topic: topic, dead: make(map[peer.ID]bool),
		subscribed: make(map[peer.ID]bool), forgotten: make(map[peer.ID]time.Time)}
}

// reopening is how long gossipsub may go on reopening its stream to a
// peer after one died: it tries again after 0, 0.1, 0.2 and 0.4 s (and some
// jitter), and each death forgets the peer's topics again. A peer's
// forgotten topics are repaired only once that is over, so that the repair
// does not reset streams that gossipsub is still reopening, or that the
// peer's own repair just reset.
const reopening = time.Second

// state returns whether gossipsub declared p's stream dead, and whether it
// forgot that p is on the topic, at least reopening before now.
func (w *gossipWatch) state(p peer.ID, now time.Time) (dead, forgot bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	since, ok := w.forgotten[p]
	return w.dead[p], ok && now.Sub(since) >= reopening
}

// alive forgets that gossipsub declared p's stream dead: it opened another,
// or the repair reset p's stream to this host, which makes p open one.
func (w *gossipWatch) alive(p peer.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.dead, p)
}

// resync forgets all about p: the repair reset both streams, and p's new
// stream announces its topics afresh.
func (w *gossipWatch) resync(p peer.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.dead, p)
	delete(w.subscribed, p)
	delete(w.forgotten, p)
}

// keep forgets the peers not kept: those no longer connected.
func (w *gossipWatch) keep(kept func(peer.ID) bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	maps.DeleteFunc(w.dead, func(p peer.ID, _ bool) bool { return !kept(p) })
	maps.DeleteFunc(w.subscribed, func(p peer.ID, _ bool) bool { return !kept(p) })
	maps.DeleteFunc(w.forgotten, func(p peer.ID, _ time.Time) bool { return !kept(p) })
}

func (w *gossipWatch) OnNewOutboundStream(p peer.ID, _ protocol.ID) { w.alive(p) }

// OnClosedOutboundStream is called by handleDeadPeers right after it
// cleared p's topics.
func (w *gossipWatch) OnClosedOutboundStream(p peer.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dead[p] = true
	if w.subscribed[p] {
		w.forgotten[p] = time.Now()
	}
}

// RecvRPC is called by handleIncomingRPC before it applies the RPC's
// subscriptions, which no filter drops (startPubsub sets none).
func (w *gossipWatch) RecvRPC(rpc *pubsub.RPC) {
	for _, s := range rpc.GetSubscriptions() {
		if s.GetTopicid() != w.topic {
			continue
		}
		w.mu.Lock()
		if s.GetSubscribe() {
			w.subscribed[rpc.From()] = true
		} else {
			delete(w.subscribed, rpc.From())
		}
		delete(w.forgotten, rpc.From())
		w.mu.Unlock()
	}
}

func (*gossipWatch) Join(string)                                          {}
func (*gossipWatch) Leave(string)                                         {}
func (*gossipWatch) Graft(peer.ID, string)                                {}
func (*gossipWatch) Prune(peer.ID, string)                                {}
func (*gossipWatch) ValidateMessage(*pubsub.Message)                      {}
func (*gossipWatch) DeliverMessage(*pubsub.Message)                       {}
func (*gossipWatch) RejectMessage(*pubsub.Message, string)                {}
func (*gossipWatch) DuplicateMessage(*pubsub.Message)                     {}
func (*gossipWatch) ThrottlePeer(peer.ID)                                 {}
func (*gossipWatch) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (*gossipWatch) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (*gossipWatch) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (*gossipWatch) UndeliverableMessage(*pubsub.Message)                 {}

// repairGossip runs until Close: every GossipRepair it checks that gossipsub
// has every connected peer that speaks it, with its topics, and takes the
// steps lostPeers says are due. It owns em and closes it.
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
			missing := h.missingGossipPeers(now)
			if h.ctx.Err() != nil { // gossipsub stopped: it has nobody
				return
			}
			for _, r := range lost.check(now, missing) {
				switch r.step {
				case resetTheirs:
					h.watch.alive(r.peer)
					h.resetGossipStreams(r.peer, network.DirInbound)
					h.cfg.Logger.Debug("p2p: gossipsub declared a connected peer dead, reset its stream", "peer", r.peer)
				case resetBoth:
					h.watch.resync(r.peer)
					h.resetGossipStreams(r.peer, network.DirInbound, network.DirOutbound)
					h.repaired(r, now, "p2p: gossipsub forgot the topics of a connected peer, reset both streams")
				default:
					h.handBack(em, r, now)
				}
			}
		}
	}
}

// missingGossipPeers returns the connected peers that speak gossipsub, by
// what identify recorded, but that gossipsub has no stream to (nor is
// opening one to), or whose topics it forgot (reopening before now). A
// peer identified after gossipsub answered may be listed though gossipsub
// has it by now: lostPeers waits a check for that.
func (h *Host) missingGossipPeers(now time.Time) []missingPeer {
	has := make(map[peer.ID]bool)
	for _, p := range h.ps.ListPeers("") {
		has[p] = true
	}
	onTopic := make(map[peer.ID]bool)
	for _, p := range h.topic.ListPeers() {
		onTopic[p] = true
	}
	connected := func(p peer.ID) bool { return h.host.Network().Connectedness(p) == network.Connected }
	h.watch.keep(connected)
	var out []missingPeer
	for _, p := range h.host.Network().Peers() {
		if !connected(p) || len(h.gossipProtocols(p)) == 0 {
			continue
		}
		dead, forgot := h.watch.state(p, now)
		switch {
		case !has[p]:
			out = append(out, missingPeer{id: p, dead: dead})
		case forgot && !onTopic[p]:
			out = append(out, missingPeer{id: p, forgot: true})
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

// resetGossipStreams resets the gossipsub streams between p and this host
// in the directions given. The peer's stream reset (inbound), p declares
// this host dead, forgets its topics and opens a new stream announcing its
// own; this host's reset (outbound), gossipsub here does the same.
func (h *Host) resetGossipStreams(p peer.ID, dirs ...network.Direction) {
	for _, c := range h.host.Network().ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			if slices.Contains(dirs, s.Stat().Direction) && slices.Contains(pubsub.GossipSubDefaultProtocols, s.Protocol()) {
				_ = s.Reset()
			}
		}
	}
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
	h.repaired(r, now, "p2p: gossipsub lost a connected peer, handed it back")
}

// repaired counts and logs a repair of r's peer: the first at Info, the
// next ones at Debug.
func (h *Host) repaired(r repair, now time.Time, msg string) {
	h.gossipRepairs.Add(1)
	log := h.cfg.Logger.Debug
	if r.attempt == 1 {
		log = h.cfg.Logger.Info
	}
	log(msg, "peer", r.peer, "attempt", r.attempt, "missing_for", now.Sub(r.since).Round(time.Millisecond))
}

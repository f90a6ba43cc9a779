package orchestrator

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"time"
)

// PeerEvent is something a peer did that costs it standing with this
// requester.
type PeerEvent string

// Peer events, with their weights (see Reputation).
const (
	// EventNoConfirm: the peer was sent an Accept for its own bid and did
	// not confirm in time, or the Accept went unanswered. Weight 1.
	EventNoConfirm PeerEvent = "no_confirm"
	// EventLost: the peer held a placed job and was lost (its status
	// stream broke or stayed silent for a lease, or it could not be
	// invoked). Weight 2.
	EventLost PeerEvent = "lost"
	// EventSilent: the peer received a bid request and answered neither
	// a bid nor a decline within a window that ran its full length.
	// Weight 1.
	EventSilent PeerEvent = "silent"
	// EventRejected: the peer bid, then rejected the Accept for its bid.
	// An honest node does so when its capacity changed: weight 0.2.
	EventRejected PeerEvent = "rejected"
	// EventBumped: the peer bid, then rejected the Accept as busy
	// (Reject.Busy): it gave the bid's room to a requester within its
	// share. Weight 0: an honest node does so by its policy. The job
	// leaves the peer out of its later auctions all the same (unless only
	// it bids), so a node that says so falsely delays a job by one
	// auction, not more.
	EventBumped PeerEvent = "bumped"
)

// Reputation constants; see Reputation.
const (
	HalfLife      = 10 * time.Minute // a penalty halves every HalfLife
	PoorThreshold = 0.5              // at or above it, a peer is in poor standing
	MaxPeers      = 1024             // records kept; the least penalised goes first
)

var eventWeight = map[PeerEvent]float64{
	EventNoConfirm: 1,
	EventLost:      2,
	EventSilent:    1,
	EventRejected:  0.2,
	EventBumped:    0,
}

// PeerRecord is what a requester remembers of one peer, as persisted.
// Penalty is as of At; it decays from there.
type PeerRecord struct {
	Peer    string            `json:"peer"`
	Penalty float64           `json:"penalty"`
	At      time.Time         `json:"at"`   // when the last event was recorded
	Last    PeerEvent         `json:"last"` // the last event
	Events  map[PeerEvent]int `json:"events"`
	// Unheard: the peer was silent or lost and has not answered a bid
	// request since. Auctions do not wait for its answer.
	Unheard bool `json:"unheard,omitempty"`
	// Agreed and Disagreed count the peer's replicated results that
	// agreed, or not, with their unit's quorum (Judge). They never decay.
	Agreed    int `json:"agreed,omitempty"`
	Disagreed int `json:"disagreed,omitempty"`
}

// judged reports whether rec holds verdicts on the peer's results.
func (rec *PeerRecord) judged() bool { return rec.Agreed > 0 || rec.Disagreed > 0 }

// PeerStanding is a peer's reputation as of a moment, for readers.
type PeerStanding struct {
	Peer      string            `json:"peer"`
	Penalty   float64           `json:"penalty"` // decayed to the moment asked
	Poor      bool              `json:"poor"`    // Penalty >= PoorThreshold: offered jobs only after peers in good standing
	Unheard   bool              `json:"unheard"` // auctions do not wait for its answer
	LastEvent PeerEvent         `json:"last_event"`
	LastAt    time.Time         `json:"last_at"`
	Events    map[PeerEvent]int `json:"events"` // every event ever recorded, by kind
	Agreed    int               `json:"agreed"`
	Disagreed int               `json:"disagreed"`
	// Distrusted: one of its results disagreed with a quorum; its bids are
	// dropped until an operator forgives it.
	Distrusted bool `json:"distrusted"`
	// Trusted: TrustAfter results agreed and none disagreed; adaptive
	// replication lets its results stand alone, spot-checked.
	Trusted bool `json:"trusted"`
}

// TrustAfter is how many agreeing results, none disagreeing, make a
// peer Trusted. BOINC's adaptive replication asks for 10 in a row.
const TrustAfter = 10

// Standing is what an auction asks of the requester's memory of peers.
// Reputation implements it.
type Standing interface {
	// Poor reports whether peer's bids go after those of every peer in
	// good standing.
	Poor(peer string, now time.Time) bool
	// Unheard reports whether an auction need not wait for peer's answer.
	Unheard(peer string) bool
	// Distrusted reports whether peer's bids are dropped: its results
	// disagreed with a quorum.
	Distrusted(peer string) bool
}

// Reputation is a requester's local memory of how peers behaved: a
// penalty per peer that grows by an event's weight and halves every
// HalfLife, and an Unheard mark. It is pure: time comes with every call,
// and the caller persists the records that Record and Heard return. It is
// not safe for concurrent use.
//
// Invariants:
//   - A peer is Poor while its decayed penalty is at least PoorThreshold:
//     for one half-life after a no_confirm or a silent, two after a lost;
//     three rejects in a row make it poor for a few minutes, two do not.
//   - A peer is Unheard from a silent or lost event until it next answers
//     a bid request (Heard); its penalty still decays on its own.
//   - A peer is Distrusted from its first result that disagreed with a
//     quorum until Forgive; Trusted after TrustAfter agreeing results and
//     none disagreeing.
//   - At most MaxPeers records are kept: adding one more drops one with
//     no verdict on its results if any (a liar is not forgotten by being
//     crowded out), the one with the smallest decayed penalty.
type Reputation struct {
	peers map[string]*PeerRecord
}

// NewReputation rebuilds a reputation from saved records, keeping the
// MaxPeers most penalised as of now.
func NewReputation(recs []PeerRecord, now time.Time) *Reputation {
	r := &Reputation{peers: make(map[string]*PeerRecord, len(recs))}
	for _, rec := range recs {
		if rec.Peer == "" || !finiteNonNegative(rec.Penalty) {
			continue
		}
		rec.Events = maps.Clone(rec.Events)
		r.peers[rec.Peer] = &rec
	}
	for len(r.peers) > MaxPeers {
		r.dropLeast(now)
	}
	return r
}

// Record adds event ev of peer at now. It returns the peer's new record,
// and the peers dropped to stay within MaxPeers (possibly peer itself).
func (r *Reputation) Record(peer string, ev PeerEvent, now time.Time) (PeerRecord, []string) {
	rec := r.peers[peer]
	if rec == nil {
		rec = &PeerRecord{Peer: peer, Events: make(map[PeerEvent]int)}
		r.peers[peer] = rec
	}
	rec.Penalty = decay(*rec, now) + eventWeight[ev]
	if rec.At.Before(now) {
		rec.At = now
	}
	rec.Last = ev
	rec.Events[ev]++
	if ev == EventSilent || ev == EventLost {
		rec.Unheard = true
	}
	out := clonePeer(*rec)
	var dropped []string
	for len(r.peers) > MaxPeers {
		dropped = append(dropped, r.dropLeast(now))
	}
	return out, dropped
}

// Judge records that one of peer's replicated results agreed with its
// unit's quorum, or not. It returns the peer's new record, and the peers
// dropped to stay within MaxPeers.
func (r *Reputation) Judge(peer string, agreed bool, now time.Time) (PeerRecord, []string) {
	rec := r.peers[peer]
	if rec == nil {
		rec = &PeerRecord{Peer: peer, Events: make(map[PeerEvent]int), At: now}
		r.peers[peer] = rec
	}
	if agreed {
		rec.Agreed++
	} else {
		rec.Disagreed++
	}
	out := clonePeer(*rec)
	var dropped []string
	for len(r.peers) > MaxPeers {
		dropped = append(dropped, r.dropLeast(now))
	}
	return out, dropped
}

// Forgive clears peer's disagreements: its bids count again. It returns
// the changed record, or false if there was none to clear.
func (r *Reputation) Forgive(peer string) (PeerRecord, bool) {
	rec := r.peers[peer]
	if rec == nil || rec.Disagreed == 0 {
		return PeerRecord{}, false
	}
	rec.Disagreed = 0
	return clonePeer(*rec), true
}

// Distrusted implements Standing.
func (r *Reputation) Distrusted(peer string) bool {
	rec := r.peers[peer]
	return rec != nil && rec.Disagreed > 0
}

// Trusted reports whether peer's results may stand alone under adaptive
// replication.
func (r *Reputation) Trusted(peer string) bool {
	rec := r.peers[peer]
	return rec != nil && rec.Disagreed == 0 && rec.Agreed >= TrustAfter
}

// Heard clears peer's Unheard mark: it answered a bid request. It returns
// the changed record, or false if nothing changed.
func (r *Reputation) Heard(peer string) (PeerRecord, bool) {
	rec := r.peers[peer]
	if rec == nil || !rec.Unheard {
		return PeerRecord{}, false
	}
	rec.Unheard = false
	return clonePeer(*rec), true
}

// Penalty is peer's penalty decayed to now (0 for a peer never penalised).
func (r *Reputation) Penalty(peer string, now time.Time) float64 {
	if rec := r.peers[peer]; rec != nil {
		return decay(*rec, now)
	}
	return 0
}

// Poor implements Standing.
func (r *Reputation) Poor(peer string, now time.Time) bool {
	return r.Penalty(peer, now) >= PoorThreshold
}

// Unheard implements Standing.
func (r *Reputation) Unheard(peer string) bool {
	rec := r.peers[peer]
	return rec != nil && rec.Unheard
}

// Table returns every peer's standing as of now, most penalised first.
func (r *Reputation) Table(now time.Time) []PeerStanding {
	out := make([]PeerStanding, 0, len(r.peers))
	for _, rec := range r.peers {
		p := decay(*rec, now)
		out = append(out, PeerStanding{
			Peer: rec.Peer, Penalty: p, Poor: p >= PoorThreshold, Unheard: rec.Unheard,
			LastEvent: rec.Last, LastAt: rec.At, Events: maps.Clone(rec.Events),
			Agreed: rec.Agreed, Disagreed: rec.Disagreed, Distrusted: r.Distrusted(rec.Peer), Trusted: r.Trusted(rec.Peer),
		})
	}
	slices.SortFunc(out, func(a, b PeerStanding) int {
		return cmp.Or(cmp.Compare(b.Penalty, a.Penalty), cmp.Compare(a.Peer, b.Peer))
	})
	return out
}

// dropLeast forgets a peer with no verdict on its results if there is
// one, the one with the smallest decayed penalty (the earliest PeerID
// among equals), and returns it.
func (r *Reputation) dropLeast(now time.Time) string {
	var least string
	lj, lp := true, math.Inf(1)
	for id, rec := range r.peers {
		j, p := rec.judged(), decay(*rec, now)
		if (!j && lj) || (j == lj && (p < lp || (p == lp && id < least))) {
			least, lj, lp = id, j, p
		}
	}
	delete(r.peers, least)
	return least
}

// decay is rec's penalty halved for every HalfLife since rec.At. A clock
// that went back (a restart on another clock) decays nothing.
func decay(rec PeerRecord, now time.Time) float64 {
	dt := now.Sub(rec.At)
	if dt <= 0 {
		return rec.Penalty
	}
	return rec.Penalty * math.Exp2(-float64(dt)/float64(HalfLife))
}

func clonePeer(rec PeerRecord) PeerRecord {
	rec.Events = maps.Clone(rec.Events)
	return rec
}

package orchestrator

import (
	"fmt"
	"slices"
	"time"

	"github.com/opendms/dms/types"
)

const (
	defaultWindow         = 2 * time.Second
	defaultEnough         = 3
	defaultConfirmTimeout = 2 * time.Second
	// defaultHolderGrace is how long past Enough bids a window waits for
	// the holders of a job's inputs. A node that is up answers a bid
	// request within milliseconds of the others on a LAN (the sequential
	// benchmark's whole job takes 10 ms), and the grace counts from the
	// Enough-th bid, so only a holder that is late by more than that is
	// given up on; 50 ms is what moving 600 KB costs at 100 Mbit/s, less
	// than fetching the inputs a holder would spare once they weigh a
	// megabyte or more.
	defaultHolderGrace = 50 * time.Millisecond
)

// AuctionConfig times one auction. Zero fields take the defaults.
type AuctionConfig struct {
	Window         time.Duration // bid window (default 2s); the request's Deadline closes it earlier
	Enough         int           // close as soon as this many bids are in (default 3)
	ConfirmTimeout time.Duration // how long each winner has to confirm (default 2s)
	// Exclude lists the nodes that failed this job before: they did not
	// confirm an Accept of it, or lost it. Their bids are dropped whenever
	// any other candidate bid, so a node that confirms and then goes
	// silent never wins the job again while another node can take it. When
	// only excluded nodes bid, they are candidates still: a fault may be
	// passing, and a network of one node can still reschedule.
	Exclude []string
	// Avoid lists nodes whose bids are dropped whoever else bids
	// (JobSpec.Avoid), as are those of peers the Standing distrusts.
	Avoid []string
	// Taken, read as the window closes, lists more nodes to avoid: those
	// holding other jobs of the job's Spread group at that moment.
	Taken func() []string
	// Standing is the requester's memory of peers (nil: every peer in good
	// standing): bids of peers in poor standing are offered only after
	// every other candidate's, and the window does not wait for Unheard
	// peers.
	Standing Standing
	// Holders are the peers that hold the job's input files, the ones the
	// ranking prefers (LocalityScorer). Once Enough bids are in, the window
	// stays open up to HolderGrace longer while one of them has not
	// answered, and closes as soon as each has: the bid of a node holding
	// the inputs, a little late, spares moving them. A holder is not
	// waited for when the request is known not to have reached it
	// (Expect), when it is Unheard (Standing) or when it is excluded
	// (Exclude). Duplicates and empty IDs are ignored.
	Holders     []string
	HolderGrace time.Duration // default 50ms; never past the window's close
}

func (c AuctionConfig) withDefaults() AuctionConfig {
	if c.Window == 0 {
		c.Window = defaultWindow
	}
	if c.Enough == 0 {
		c.Enough = defaultEnough
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = defaultConfirmTimeout
	}
	if c.HolderGrace == 0 {
		c.HolderGrace = defaultHolderGrace
	}
	return c
}

func (c AuctionConfig) validate() error {
	if c.Window < 0 || c.Enough < 0 || c.ConfirmTimeout < 0 || c.HolderGrace < 0 {
		return fmt.Errorf("%w: negative auction setting in %+v", ErrInvalidConfig, c)
	}
	return nil
}

type phase int

const (
	collecting phase = iota // the bid window is open
	accepting               // an Accept is out to one candidate
	done                    // placed, failed or aborted
)

// offer is one Accept sent to one candidate.
type offer struct {
	bid      types.Bid
	id       types.AllocationID
	deadline time.Time // confirm by then
	outcome  string    // why it was given up on, for the failure reason
	released bool      // a Release followed a Confirm for it
	skipped  bool      // never sent: the bid's hold had expired
	bumped   bool      // rejected as busy: its hold was given up for another requester (Reject.Busy)
}

// Auction is one placement attempt of one job: it collects bids, closes the
// window as soon as it can, ranks, and offers the job to one candidate at a
// time until one confirms. It is a pure state machine: it does no I/O, starts
// no goroutine and reads no clock; time comes with every event, and its
// requests to the outside world accumulate until the caller drains Actions.
// It is not safe for concurrent use.
type Auction struct {
	req        types.BidRequest
	cfg        AuctionConfig
	rank       Ranking
	phase      phase
	closeAt    time.Time
	graceEnd   time.Time                   // the close while a holder has not answered, once Enough bids are in; zero until then
	window     time.Duration               // from the start to closeAt, for failure reasons
	ranOut     bool                        // the window closed at closeAt, not early
	answered   map[string]bool             // peers that bid or declined
	reached    []string                    // peers the request reached, once known (Expect)
	inReach    map[string]bool             // the same, as a set; nil until Expect
	wait       int                         // how many of them the window waits for; 0 = unknown
	allocs     map[types.AllocationID]bool // every allocation ID bid, kept or dropped
	invalid    int                         // bids dropped for naming no allocation ID, or a repeated one
	bids       []types.Bid
	declines   []types.Decline
	candidates []types.Bid
	excluded   []string // bidders dropped by Exclude, Avoid or distrust, released then
	avoided    int      // bids dropped by Avoid or distrust
	next       int      // index of the next candidate to offer the job to
	pending    *offer   // the offer awaiting an answer, while accepting
	offers     map[types.AllocationID]*offer
	sent       []*offer // offers in the order they were made
	placed     types.AllocationID
	actions    []Action
}

// NewAuction opens the bid window for req at now. The window closes at
// now+cfg.Window or at req.Deadline, whichever is first. The request's max
// price tightens rank.MaxPrice.
func NewAuction(req types.BidRequest, cfg AuctionConfig, rank Ranking, now time.Time) (*Auction, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := rank.validate(); err != nil {
		return nil, err
	}
	if req.JobID == "" {
		return nil, fmt.Errorf("%w: bid request without a job ID", ErrInvalidSpec)
	}
	if p := req.Constraints.MaxPrice; p > 0 && (rank.MaxPrice == 0 || p < rank.MaxPrice) {
		rank.MaxPrice = p
	}
	a := &Auction{
		req: req, cfg: cfg, rank: rank,
		closeAt:  now.Add(cfg.Window),
		answered: make(map[string]bool),
		allocs:   make(map[types.AllocationID]bool),
		offers:   make(map[types.AllocationID]*offer),
	}
	if !req.Deadline.IsZero() && req.Deadline.Before(a.closeAt) {
		a.closeAt = req.Deadline
	}
	a.window = max(a.closeAt.Sub(now), 0)
	a.advance(now)
	return a, nil
}

// Bid records a bid. It is ignored for another job, or when the peer
// already bid or declined. A bid that names no allocation, or one already
// bid in this auction, is dropped (a hostile bidder copying another's ID):
// its peer counts as answered, and the first bid with the ID stands. A bid
// that arrives once the window closed is not considered: the auction
// releases it at once, so the capability its node holds behind it is free
// for other jobs now rather than when the hold expires.
//
// A bid from a peer that declined in this auction as busy is that node's
// late bid (capacity freed since: node/latebind.go): while the window is
// open it takes the decline's place; after, it is released, so that the
// node does not hold capability for the job until the hold expires.
func (a *Auction) Bid(b types.Bid, now time.Time) {
	a.advance(now)
	if b.JobID != a.req.JobID {
		return
	}
	if a.answered[b.Node.PeerID] {
		a.lateBid(b, now)
		return
	}
	if !a.firstAnswer(b.Node.PeerID) {
		return
	}
	if a.phase != collecting {
		a.emit(Release{Peer: b.Node.PeerID, Addrs: b.Addrs, Cancel: types.Cancel{JobID: a.req.JobID, Reason: "the bid arrived after the window closed"}})
		return
	}
	if b.Allocation == "" || a.allocs[b.Allocation] {
		a.invalid++
	} else {
		a.allocs[b.Allocation] = true
		a.bids = append(a.bids, b)
	}
	a.closeIfReady(now)
}

// lateBid handles a bid from a peer that answered already: if it had
// declined as busy, see Bid; anything else is a repeat, ignored.
func (a *Auction) lateBid(b types.Bid, now time.Time) {
	i := slices.IndexFunc(a.declines, func(d types.Decline) bool { return d.Node.PeerID == b.Node.PeerID && d.Busy })
	switch {
	case i < 0 || b.Allocation == "" || a.allocs[b.Allocation]:
	case a.phase == collecting:
		a.declines = slices.Delete(a.declines, i, i+1)
		a.allocs[b.Allocation] = true
		a.bids = append(a.bids, b)
		a.closeIfReady(now)
	default:
		a.emit(Release{Peer: b.Node.PeerID, Addrs: b.Addrs, Cancel: types.Cancel{
			JobID: a.req.JobID, AllocationID: b.Allocation, Reason: "the bid arrived after the window closed"}})
	}
}

// Decline records a node's refusal to bid, under the same rules as Bid.
func (a *Auction) Decline(d types.Decline, now time.Time) {
	a.advance(now)
	if a.phase != collecting || d.JobID != a.req.JobID || !a.firstAnswer(d.Node.PeerID) {
		return
	}
	a.declines = append(a.declines, d)
	a.closeIfReady(now)
}

// Expect names the peers that received the request, once the publisher
// knows. The window closes as soon as every one of them answered, except
// the Unheard ones (Standing): a peer that was silent or lost is not
// waited for until it answers again. If the window runs its full length,
// each reached peer that did not answer is observed silent.
func (a *Auction) Expect(reached []string, now time.Time) {
	a.advance(now)
	if a.phase != collecting {
		return
	}
	a.reached, a.inReach = slices.Clone(reached), make(map[string]bool, len(reached))
	a.wait = 0
	for _, p := range a.reached {
		a.inReach[p] = true
		if a.cfg.Standing == nil || !a.cfg.Standing.Unheard(p) {
			a.wait++
		}
	}
	a.closeIfReady(now)
}

// Confirmed handles a Confirm. From the candidate being waited for, it places
// the job. From an earlier candidate given up on, it is not a placement: the
// auction emits a Release so that node frees its lock.
func (a *Auction) Confirmed(c types.Confirm, now time.Time) {
	a.advance(now)
	o := a.offers[c.AllocationID]
	switch {
	case o == nil || c.JobID != a.req.JobID || o.id == a.placed:
		return
	case o == a.pending:
		a.pending, a.phase, a.placed = nil, done, o.id
		a.emit(Placed{Bid: o.bid, Confirm: c})
		a.releaseLosers(o.bid.Node.PeerID)
	case !o.released:
		o.released = true
		a.release(o, "confirmed too late: the requester moved on")
	}
}

// Rejected handles a Reject from the candidate being waited for: the next
// candidate gets an offer. A Reject that says Busy (the node gave the
// bid's hold to a requester within its share) costs the node no standing
// (EventBumped), and if every offer was so rejected the auction fails as
// busy (Failed.Busy), not as the nodes' fault.
func (a *Auction) Rejected(r types.Reject, now time.Time) {
	a.advance(now)
	o := a.waitingFor(r.JobID, r.AllocationID)
	switch {
	case o == nil:
	case r.Busy:
		o.bumped = true
		a.giveUp(o, fmt.Sprintf("%s gave the bid's room to another requester: %s", o.bid.Node.PeerID, orUnknown(r.Reason)), EventBumped, now)
	default:
		a.giveUp(o, fmt.Sprintf("%s rejected: %s", o.bid.Node.PeerID, orUnknown(r.Reason)), EventRejected, now)
	}
}

// Unanswered handles an Accept of the candidate being waited for that got
// no valid answer: undelivered, unanswered, or answered with a confirm of
// another allocation. It counts as a failure to confirm.
func (a *Auction) Unanswered(id types.AllocationID, reason string, now time.Time) {
	a.advance(now)
	if o := a.waitingFor(a.req.JobID, id); o != nil {
		a.giveUp(o, fmt.Sprintf("%s did not confirm: %s", o.bid.Node.PeerID, reason), EventNoConfirm, now)
	}
}

// waitingFor returns the pending offer if it is id's, of this job.
func (a *Auction) waitingFor(job types.JobID, id types.AllocationID) *offer {
	if o := a.offers[id]; o != nil && o == a.pending && job == a.req.JobID {
		return o
	}
	return nil
}

// Tick fires whatever deadline passed by now.
func (a *Auction) Tick(now time.Time) { a.advance(now) }

// Actions returns and clears what the auction asks of its caller.
func (a *Auction) Actions() []Action {
	out := a.actions
	a.actions = nil
	return out
}

// NextDeadline is when the caller must call Tick next, if ever.
func (a *Auction) NextDeadline() (time.Time, bool) {
	switch {
	case a.phase == collecting:
		return a.closesAt(), true
	case a.pending != nil:
		return a.pending.deadline, true
	}
	return time.Time{}, false
}

// Done reports whether the auction placed the job, failed, or was aborted.
func (a *Auction) Done() bool { return a.phase == done }

func (a *Auction) advance(now time.Time) {
	if a.phase == collecting && !now.Before(a.closesAt()) {
		a.close(now)
	}
	if o := a.pending; o != nil && !now.Before(o.deadline) {
		a.giveUp(o, fmt.Sprintf("%s did not confirm within %s", o.bid.Node.PeerID, a.cfg.ConfirmTimeout), EventNoConfirm, now)
	}
}

func (a *Auction) firstAnswer(peer string) bool {
	if peer == "" || a.answered[peer] {
		return false
	}
	a.answered[peer] = true
	return true
}

// closeIfReady closes the window when every peer waited for answered, or
// when Enough bids are in and no holder is awaited; with a holder awaited,
// it starts the grace (once: the bids only grow).
func (a *Auction) closeIfReady(now time.Time) {
	if a.phase != collecting {
		return
	}
	everyone := a.wait > 0 && a.waitedAnswered() >= a.wait
	enough := len(a.bids) >= a.cfg.Enough
	switch {
	case everyone || (enough && !a.awaitingHolder()):
		a.close(now)
	case enough && a.graceEnd.IsZero():
		a.graceEnd = now.Add(min(a.cfg.HolderGrace, a.closeAt.Sub(now)))
	}
}

// closesAt is when the window closes unless every peer answers first: at
// the end of the holders' grace once it started, else at closeAt.
func (a *Auction) closesAt() time.Time {
	if !a.graceEnd.IsZero() {
		return a.graceEnd
	}
	return a.closeAt
}

// awaitingHolder reports whether some holder of the inputs has not
// answered and may still, with a bid that can win (AuctionConfig.Holders).
func (a *Auction) awaitingHolder() bool {
	return slices.ContainsFunc(a.cfg.Holders, func(p string) bool {
		return p != "" && !a.answered[p] && !slices.Contains(a.cfg.Exclude, p) &&
			(a.inReach == nil || a.inReach[p]) && (a.cfg.Standing == nil || !a.cfg.Standing.Unheard(p))
	})
}

// waitedAnswered counts the reached peers the window waits for that answered.
func (a *Auction) waitedAnswered() int {
	n := 0
	for _, p := range a.reached {
		if a.answered[p] && (a.cfg.Standing == nil || !a.cfg.Standing.Unheard(p)) {
			n++
		}
	}
	return n
}

// unanswered lists the reached peers that did not answer.
func (a *Auction) unanswered() []string {
	var out []string
	for _, p := range a.reached {
		if !a.answered[p] {
			out = append(out, p)
		}
	}
	return out
}

// close ends the window: a window that ran out observes its silent peers;
// the bids are ranked and ordered (see order), and the best is offered the job.
func (a *Auction) close(now time.Time) {
	a.phase = accepting
	if a.ranOut = !now.Before(a.closeAt); a.ranOut {
		for _, p := range a.unanswered() {
			a.emit(Observe{Peer: p, Event: EventSilent})
		}
	}
	a.candidates = a.order(a.rank.Rank(a.bids), now)
	if len(a.candidates) == 0 {
		a.phase = done
		a.emit(Failed{Reason: a.noBidReason(), Busy: a.anyBusy() || len(a.unanswered()) > 0})
		return
	}
	a.offerNext(now)
}

// order applies the requester's memory to ranked candidates: avoided and
// distrusted nodes are dropped, and their bids released; so are the nodes
// that failed this job, unless only they bid (Exclude); peers in poor
// standing go after every other, each group in rank order.
func (a *Auction) order(ranked []types.Bid, now time.Time) []types.Bid {
	var taken []string
	if a.cfg.Taken != nil {
		taken = a.cfg.Taken()
	}
	ranked = slices.DeleteFunc(ranked, func(b types.Bid) bool {
		why := ""
		switch p := b.Node.PeerID; {
		case slices.Contains(a.cfg.Avoid, p), slices.Contains(taken, p):
			why = "avoided: the node runs or ran another replica of this unit"
		case a.cfg.Standing != nil && a.cfg.Standing.Distrusted(p):
			why = "distrusted: the node's results disagreed with a quorum"
		default:
			return false
		}
		a.excluded, a.avoided = append(a.excluded, b.Node.PeerID), a.avoided+1
		a.emit(Release{Peer: b.Node.PeerID, Addrs: b.Addrs, Cancel: types.Cancel{JobID: a.req.JobID, Reason: why}})
		return true
	})
	excluded := func(b types.Bid) bool { return slices.Contains(a.cfg.Exclude, b.Node.PeerID) }
	if slices.ContainsFunc(ranked, func(b types.Bid) bool { return !excluded(b) }) {
		for _, b := range ranked {
			if excluded(b) {
				a.excluded = append(a.excluded, b.Node.PeerID)
				a.emit(Release{Peer: b.Node.PeerID, Addrs: b.Addrs, Cancel: types.Cancel{JobID: a.req.JobID, Reason: "excluded: the node failed this job before"}})
			}
		}
		ranked = slices.DeleteFunc(ranked, excluded)
	}
	if s := a.cfg.Standing; s != nil {
		poor := func(b types.Bid) int {
			if s.Poor(b.Node.PeerID, now) {
				return 1
			}
			return 0
		}
		slices.SortStableFunc(ranked, func(x, y types.Bid) int { return poor(x) - poor(y) })
	}
	return ranked
}

// offerNext offers the job to the next candidate whose hold has not
// expired (its node would refuse), naming the allocation ID from its bid.
func (a *Auction) offerNext(now time.Time) {
	var taken []string // read again at each offer: another job of the group may have taken a candidate since the close
	if a.cfg.Taken != nil && a.next > 0 {
		taken = a.cfg.Taken()
	}
	for a.next < len(a.candidates) {
		b := a.candidates[a.next]
		a.next++
		if !b.HoldUntil.IsZero() && !now.Before(b.HoldUntil) {
			a.sent = append(a.sent, &offer{bid: b, id: b.Allocation, skipped: true,
				outcome: fmt.Sprintf("%s's hold expired at %s, before its turn", b.Node.PeerID, b.HoldUntil.Format("15:04:05.000"))})
			continue
		}
		if slices.Contains(taken, b.Node.PeerID) {
			why := "avoided: the node took another replica of this unit since the auction closed"
			a.sent = append(a.sent, &offer{bid: b, id: b.Allocation, skipped: true, outcome: why})
			a.excluded, a.avoided = append(a.excluded, b.Node.PeerID), a.avoided+1
			a.emit(Release{Peer: b.Node.PeerID, Addrs: b.Addrs, Cancel: types.Cancel{JobID: a.req.JobID, Reason: why}})
			continue
		}
		o := &offer{bid: b, id: b.Allocation, deadline: now.Add(a.cfg.ConfirmTimeout)}
		a.pending, a.offers[o.id], a.sent = o, o, append(a.sent, o)
		a.emit(SendAccept{Peer: b.Node.PeerID, Addrs: b.Addrs, Accept: types.Accept{
			JobID: a.req.JobID, AllocationID: o.id, Resources: a.req.Resources,
		}})
		return
	}
	a.phase = done
	a.emit(Failed{Reason: a.noConfirmReason(), Unconfirmed: true, Busy: a.allBumped()})
}

// allBumped reports whether offers were sent and every one was rejected
// as busy.
func (a *Auction) allBumped() bool {
	sent := 0
	for _, o := range a.sent {
		switch {
		case o.skipped:
		case !o.bumped:
			return false
		default:
			sent++
		}
	}
	return sent > 0
}

// giveUp abandons the pending offer, observes its peer's ev, and moves to
// the next candidate. The node is told to release: a reject may really be
// a lost answer to an Accept the node did lock for, and a silent node may
// confirm later.
func (a *Auction) giveUp(o *offer, why string, ev PeerEvent, now time.Time) {
	o.outcome = why
	a.pending = nil
	a.release(o, why)
	a.emit(Observe{Peer: o.bid.Node.PeerID, Event: ev})
	a.offerNext(now)
}

// abort ends the auction without a placement and without a Failed action,
// because the job itself was cancelled or failed. A pending offer is released.
func (a *Auction) abort(why string) {
	if o := a.pending; o != nil {
		o.outcome, a.pending = why, nil
		a.release(o, why)
	}
	a.phase = done
}

// silent reports whether the window is open and no node answered yet.
func (a *Auction) silent() bool { return a.phase == collecting && len(a.answered) == 0 }

func (a *Auction) release(o *offer, why string) {
	a.emit(Release{Peer: o.bid.Node.PeerID, Addrs: o.bid.Addrs, Cancel: types.Cancel{
		JobID: a.req.JobID, AllocationID: o.id, Reason: why,
	}})
}

// releaseLosers tells every bidder that was never offered the job that it
// went elsewhere, so the capability held behind its bid is free at once
// rather than when the hold expires. (Candidates given up on and excluded
// bidders were released then.)
func (a *Auction) releaseLosers(winner string) {
	offered := make(map[string]bool, len(a.sent)+len(a.excluded))
	for _, o := range a.sent {
		offered[o.bid.Node.PeerID] = true
	}
	for _, p := range a.excluded {
		offered[p] = true
	}
	for _, b := range a.bids {
		if p := b.Node.PeerID; p != winner && !offered[p] {
			offered[p] = true
			a.emit(Release{Peer: p, Addrs: b.Addrs, Cancel: types.Cancel{JobID: a.req.JobID, Reason: "placed on another node"}})
		}
	}
}

// anyBusy reports whether a node declined only because its capacity is in
// use. A node the request reached that did not answer within the window
// counts as busy too, by the caller: it is connected
// but overloaded, or its answer was lost; a burst of 500 jobs on 5 nodes
// failed tens of them this way.
func (a *Auction) anyBusy() bool {
	for _, d := range a.declines {
		if d.Busy {
			return true
		}
	}
	return false
}

func (a *Auction) emit(act Action) { a.actions = append(a.actions, act) }

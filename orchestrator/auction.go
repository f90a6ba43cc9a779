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
)

// AuctionConfig times one auction. Zero fields take the defaults.
type AuctionConfig struct {
	Window         time.Duration // bid window (default 2s); the request's Deadline closes it earlier
	Enough         int           // close as soon as this many bids are in (default 3)
	Expected       int           // nodes known to have received the request; 0 = unknown
	ConfirmTimeout time.Duration // how long each winner has to confirm (default 2s)
	Attempt        int           // the job's attempt number, used in allocation IDs (default 1)
	// Avoid lists nodes to offer the job to only once every other
	// candidate was tried: those an earlier attempt of the job failed on
	// for the node's reasons. They still bid and still win when no other
	// node can take the job (a fault may be passing).
	Avoid []string
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
	if c.Attempt == 0 {
		c.Attempt = 1
	}
	return c
}

func (c AuctionConfig) validate() error {
	if c.Window < 0 || c.Enough < 0 || c.Expected < 0 || c.ConfirmTimeout < 0 || c.Attempt < 0 {
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
	window     time.Duration   // from the start to closeAt, for failure reasons
	answered   map[string]bool // peers that bid or declined
	bids       []types.Bid
	declines   []types.Decline
	candidates []types.Bid
	next       int    // index of the next candidate to offer the job to
	pending    *offer // the offer awaiting an answer, while accepting
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
		offers:   make(map[types.AllocationID]*offer),
	}
	if !req.Deadline.IsZero() && req.Deadline.Before(a.closeAt) {
		a.closeAt = req.Deadline
	}
	a.window = max(a.closeAt.Sub(now), 0)
	a.advance(now)
	return a, nil
}

// AllocationID names the allocation offered to a job's candidate-th bidder
// (0-based) in its attempt-th auction (1-based): "<job>-a<attempt>-c<candidate>".
func AllocationID(job types.JobID, attempt, candidate int) types.AllocationID {
	return types.AllocationID(fmt.Sprintf("%s-a%d-c%d", job, attempt, candidate))
}

// Bid records a bid. It is ignored for another job, or when the peer
// already bid or declined. A bid that arrives once the window closed is not
// considered: the auction releases it at once, so the capability its node
// holds behind it is free for other jobs now rather than when the hold
// expires.
func (a *Auction) Bid(b types.Bid, now time.Time) {
	a.advance(now)
	if b.JobID != a.req.JobID || !a.firstAnswer(b.Node.PeerID) {
		return
	}
	if a.phase != collecting {
		a.emit(Release{Peer: b.Node.PeerID, Addrs: b.Addrs, Cancel: types.Cancel{JobID: a.req.JobID, Reason: "the bid arrived after the window closed"}})
		return
	}
	a.bids = append(a.bids, b)
	a.closeIfReady(now)
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

// Expect sets how many nodes received the request, once the publisher knows:
// when that many have answered, the window closes. n <= 0 is ignored.
func (a *Auction) Expect(n int, now time.Time) {
	a.advance(now)
	if n > 0 {
		a.cfg.Expected = n
		a.closeIfReady(now)
	}
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

// Rejected handles a Reject from the candidate being waited for, or a failure
// to deliver its Accept: the next candidate gets an offer.
func (a *Auction) Rejected(r types.Reject, now time.Time) {
	a.advance(now)
	o := a.offers[r.AllocationID]
	if o == nil || o != a.pending || r.JobID != a.req.JobID {
		return
	}
	a.giveUp(o, fmt.Sprintf("%s rejected: %s", o.bid.Node.PeerID, orUnknown(r.Reason)), now)
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
		return a.closeAt, true
	case a.pending != nil:
		return a.pending.deadline, true
	}
	return time.Time{}, false
}

// Done reports whether the auction placed the job, failed, or was aborted.
func (a *Auction) Done() bool { return a.phase == done }

func (a *Auction) advance(now time.Time) {
	if a.phase == collecting && !now.Before(a.closeAt) {
		a.close(now)
	}
	if o := a.pending; o != nil && !now.Before(o.deadline) {
		a.giveUp(o, fmt.Sprintf("%s did not confirm within %s", o.bid.Node.PeerID, a.cfg.ConfirmTimeout), now)
	}
}

func (a *Auction) firstAnswer(peer string) bool {
	if peer == "" || a.answered[peer] {
		return false
	}
	a.answered[peer] = true
	return true
}

func (a *Auction) closeIfReady(now time.Time) {
	enough := len(a.bids) >= a.cfg.Enough
	all := a.cfg.Expected > 0 && len(a.answered) >= a.cfg.Expected
	if a.phase == collecting && (enough || all) {
		a.close(now)
	}
}

func (a *Auction) close(now time.Time) {
	a.phase = accepting
	a.candidates = a.rank.Rank(a.bids)
	if len(a.cfg.Avoid) > 0 {
		avoided := func(b types.Bid) int {
			if slices.Contains(a.cfg.Avoid, b.Node.PeerID) {
				return 1
			}
			return 0
		}
		slices.SortStableFunc(a.candidates, func(x, y types.Bid) int { return avoided(x) - avoided(y) })
	}
	if len(a.candidates) == 0 {
		a.phase = done
		a.emit(Failed{Reason: a.noBidReason(), Busy: a.anyBusy() || a.cfg.Expected > len(a.answered)})
		return
	}
	a.offerNext(now)
}

func (a *Auction) offerNext(now time.Time) {
	if a.next >= len(a.candidates) {
		a.phase = done
		a.emit(Failed{Reason: a.noConfirmReason(), Unconfirmed: true})
		return
	}
	b := a.candidates[a.next]
	o := &offer{bid: b, id: AllocationID(a.req.JobID, a.cfg.Attempt, a.next), deadline: now.Add(a.cfg.ConfirmTimeout)}
	a.next++
	a.pending, a.offers[o.id], a.sent = o, o, append(a.sent, o)
	a.emit(SendAccept{Peer: b.Node.PeerID, Addrs: b.Addrs, Accept: types.Accept{
		JobID: a.req.JobID, AllocationID: o.id, Resources: a.req.Resources,
	}})
}

// giveUp abandons the pending offer and moves to the next candidate. The
// node is told to release: a reject may really be a lost answer to an Accept
// the node did lock for, and a silent node may confirm later.
func (a *Auction) giveUp(o *offer, why string, now time.Time) {
	o.outcome = why
	a.pending = nil
	a.release(o, why)
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
// rather than when the hold expires. (Candidates given up on were released
// then.)
func (a *Auction) releaseLosers(winner string) {
	offered := make(map[string]bool, len(a.sent))
	for _, o := range a.sent {
		offered[o.bid.Node.PeerID] = true
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
// (Expected > answered) counts as busy too, by the caller: it is connected
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

package orchestrator

import (
	"fmt"
	"slices"
	"time"

	"github.com/opendms/dms/types"
)

const (
	queueBackoffCap = time.Second            // longest wait between auctions while nodes are busy
	backoffBase     = 100 * time.Millisecond // wait before the second attempt
	backoffCap      = 5 * time.Second        // longest wait between attempts
	maxNotes        = 16                     // per attempt, so a chatty node cannot grow a job without bound
)

// Job is one job's whole life as its requester sees it: pending -> bidding ->
// placed -> running -> completed | failed | cancelled, across as many
// attempts (auctions) as its budgets and deadline allow: an attempt that
// failed is charged to Retries when the program failed or no node bid, to
// Reschedule when the node or the network did (see Charge). Like Auction,
// it is a pure state machine: events come in with the time, Actions drains
// what the shell must do, NextDeadline says when to call Tick. It is not safe
// for concurrent use.
type Job struct {
	spec     JobSpec
	cfg      JobConfig
	info     JobInfo
	deadline time.Time  // zero = none
	retryAt  time.Time  // when the next attempt starts, while pending after a failure
	queuedAt time.Time  // when the job began waiting for busy nodes; zero when not waiting
	waits    int        // auctions in a row that found only busy nodes
	auctions []*Auction // one per attempt, kept so late confirms are still released
	wide     bool       // an auction drew no bid and no busy decline: publish to every node from now on
	alloc    types.AllocationID
	holders  map[types.AllocationID]types.Bid // every placed allocation, with the bid that won it
	released map[types.AllocationID]bool      // placed allocations the job told to stop
	locality *LocalityScorer                  // of the task's input files, made once by localityScorer
	actions  []Action
}

// NewJob creates a pending job at now. Nothing happens until Start.
func NewJob(spec JobSpec, cfg JobConfig, now time.Time) (*Job, error) {
	cfg = cfg.withDefaults()
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	j := &Job{
		spec: spec, cfg: cfg,
		info: JobInfo{
			ID: spec.ID, Name: spec.Name, State: types.JobPending, Attempts: []Attempt{},
			CreatedAt: now, UpdatedAt: now, Revision: 1,
		},
		holders:  make(map[types.AllocationID]types.Bid),
		released: make(map[types.AllocationID]bool),
	}
	if spec.Deadline > 0 {
		j.deadline = now.Add(spec.Deadline)
	}
	return j, nil
}

// Start opens the first auction: the job emits Publish. Later calls do nothing.
func (j *Job) Start(now time.Time) {
	j.advance(now)
	if j.info.State == types.JobPending && len(j.info.Attempts) == 0 {
		j.startAttempt(now)
	}
}

// Published tells the job which peers received the bid request of
// attempt and may answer it (nil: unknown); see Auction.Expect.
func (j *Job) Published(attempt int, reached []string, now time.Time) {
	j.advance(now)
	if a := j.bidding(attempt); a != nil {
		a.Expect(reached, now)
		j.drain(a, now)
	}
}

// PublishFailed reports that the bid request of attempt could not be
// published. If no node answered it yet, the attempt fails at once.
func (j *Job) PublishFailed(attempt int, reason string, now time.Time) {
	j.advance(now)
	if a := j.bidding(attempt); a != nil && a.silent() {
		a.abort(reason)
		j.attemptFailed("publishing the bid request: "+reason, ChargeRetry, now)
	}
}

// Bid hands a bid to the open auction. A bid naming an allocation ID bid
// in an earlier attempt of the job is dropped (the auction drops repeats
// within itself): an allocation ID names one offer. A bid that arrives
// once the job is placed or over is released at once: its node need not
// hold capability for it. (Between attempts it is not: the node's next
// hold for the job would be released with it, as holds are per job.) A
// bid that comes while the job waits for capacity opens its next attempt
// at once (lateBid).
func (j *Job) Bid(b types.Bid, now time.Time) {
	j.advance(now)
	if a := j.open(); a != nil {
		if j.bidBefore(b.Allocation) {
			b.Allocation = "" // the auction counts the answer, and drops the bid
		}
		a.Bid(b, now)
		j.drain(a, now)
		return
	}
	if j.lateBid(b, now) {
		return
	}
	if b.JobID == j.info.ID && b.Node.PeerID != "" && j.info.State != types.JobPending {
		j.emit(Release{Peer: b.Node.PeerID, Addrs: b.Addrs, Cancel: types.Cancel{JobID: j.info.ID, Reason: "the bid arrived after the auction closed"}})
	}
}

// Decline hands a decline to the open auction, if any.
func (j *Job) Decline(d types.Decline, now time.Time) {
	j.advance(now)
	if a := j.open(); a != nil {
		a.Decline(d, now)
		j.drain(a, now)
	}
}

// Confirmed hands a Confirm to the auction that offered its allocation, even
// a finished one: a late confirm is released, never placed.
func (j *Job) Confirmed(c types.Confirm, now time.Time) {
	j.advance(now)
	if a := j.auctionFor(c.AllocationID); a != nil {
		a.Confirmed(c, now)
		j.drain(a, now)
	}
}

// Rejected hands a Reject to the auction that offered its allocation.
func (j *Job) Rejected(r types.Reject, now time.Time) {
	j.advance(now)
	if a := j.auctionFor(r.AllocationID); a != nil {
		a.Rejected(r, now)
		j.drain(a, now)
	}
}

// Unanswered tells the auction that offered allocation id that its Accept
// got no valid answer (see Auction.Unanswered).
func (j *Job) Unanswered(id types.AllocationID, reason string, now time.Time) {
	j.advance(now)
	if a := j.auctionFor(id); a != nil {
		a.Unanswered(id, reason, now)
		j.drain(a, now)
	}
}

// Tick fires whatever deadline passed by now: the job's own, the auction's,
// or the end of a backoff.
func (j *Job) Tick(now time.Time) { j.advance(now) }

// Actions returns and clears what the job asks of its shell.
func (j *Job) Actions() []Action {
	out := j.actions
	j.actions = nil
	return out
}

// NextDeadline is when the shell must call Tick next, if ever.
func (j *Job) NextDeadline() (time.Time, bool) {
	if j.info.State.Terminal() {
		return time.Time{}, false
	}
	t := j.deadline
	earlier := func(d time.Time) {
		if !d.IsZero() && (t.IsZero() || d.Before(t)) {
			t = d
		}
	}
	if a := j.open(); a != nil {
		d, _ := a.NextDeadline()
		earlier(d)
	}
	if j.info.State == types.JobPending {
		earlier(j.retryAt)
	}
	return t, !t.IsZero()
}

// Done reports whether the job reached a terminal state.
func (j *Job) Done() bool { return j.info.State.Terminal() }

// Info returns a snapshot of the job that shares nothing with it.
func (j *Job) Info() JobInfo { return j.info.clone() }

// advance fires what is due by now. The open auction goes first, so that
// when its window ends with the job's deadline, the job fails with the
// auction's reason (who declined, and why) rather than the bare deadline.
func (j *Job) advance(now time.Time) {
	if a := j.open(); a != nil {
		a.Tick(now)
		j.drain(a, now)
	}
	if j.info.State.Terminal() {
		return
	}
	if !j.deadline.IsZero() && !now.Before(j.deadline) {
		why := fmt.Sprintf("job deadline (%s) passed while %s", j.spec.Deadline, j.info.State)
		j.stop(why, now)
		j.finish(types.JobFailed, why, now)
		return
	}
	if j.info.State == types.JobPending && !j.retryAt.IsZero() && !now.Before(j.retryAt) {
		j.startAttempt(now)
	}
}

func (j *Job) startAttempt(now time.Time) { j.openAttempt(nil, now) }

// lateBid takes a bid that comes while the job waits for capacity: a node
// that declined the job as busy offers itself once its capacity frees
// (late binding, as Sparrow's workers ask for tasks when they have room;
// docs/protocol.md). The job opens its next attempt with that bid alone,
// publishing nothing, so it is placed without waiting for its next
// auction; the auction still judges the bid (Avoid, Spread, standing). A
// bid from a node that failed the job, or naming an allocation bid
// before, is left to the job's next auction. It reports whether the bid
// was taken.
func (j *Job) lateBid(b types.Bid, now time.Time) bool {
	switch {
	case j.info.State != types.JobPending || j.queuedAt.IsZero() || b.JobID != j.info.ID,
		b.Node.PeerID == "" || b.Allocation == "" || !now.Before(b.HoldUntil),
		slices.Contains(j.failedNodes(), b.Node.PeerID), j.offeredBefore(b.Allocation):
		return false
	}
	j.openAttempt(&b, now)
	return true
}

// offeredBefore reports whether allocation id was bid in any attempt of
// the job.
func (j *Job) offeredBefore(id types.AllocationID) bool {
	if _, ok := j.holders[id]; ok {
		return true
	}
	return slices.ContainsFunc(j.auctions, func(a *Auction) bool { return a != nil && a.allocs[id] })
}

// openAttempt opens the job's next auction: on a bid request it publishes,
// or, with late, on that bid alone (lateBid).
func (j *Job) openAttempt(late *types.Bid, now time.Time) {
	n := len(j.info.Attempts) + 1
	acfg := AuctionConfig{
		Window: j.spec.BidWindow, Enough: j.spec.EnoughBids, ConfirmTimeout: j.cfg.ConfirmTimeout,
		Exclude: j.failedNodes(), Avoid: j.spec.Avoid, Taken: j.taken, Standing: j.cfg.Standing,
		Holders: j.inputHolders(),
	}.withDefaults()
	req := types.BidRequest{
		JobID: j.info.ID, Requester: j.cfg.Requester, Executor: j.spec.Task.Executor,
		Resources: j.spec.Task.Resources, Constraints: j.spec.Constraints, Deadline: now.Add(acfg.Window),
		Network: j.spec.Task.Network,
	}
	if !j.deadline.IsZero() && j.deadline.Before(req.Deadline) {
		req.Deadline = j.deadline
	}
	a, err := NewAuction(req, acfg, j.ranking(), now)
	if err != nil { // NewJob validated everything NewAuction checks
		j.finish(types.JobFailed, "cannot open an auction: "+err.Error(), now)
		return
	}
	j.auctions = append(j.auctions, a)
	j.info.Attempts = append(j.info.Attempts, Attempt{Number: n, Outcome: OutcomeActive, StartedAt: now, Late: late != nil})
	j.retryAt = time.Time{}
	j.setState(types.JobBidding, "", now)
	if late != nil {
		a.Expect([]string{late.Node.PeerID}, now)
		a.Bid(*late, now)
	} else {
		j.emit(Publish{Attempt: n, Request: req, Wide: j.wide})
	}
	j.drain(a, now)
}

// ranking is the job's Ranking: its config's, and, when its task names
// input files and locality is not off, a LocalityScorer of them.
func (j *Job) ranking() Ranking {
	r := j.cfg.Ranking
	if s := j.localityScorer(); s != nil {
		r.Scorers = append(slices.Clip(r.Scorers), WeightedScorer{Scorer: *s, Weight: j.cfg.LocalityWeight})
	}
	return r
}

// taken lists the nodes other jobs of the job's Spread group hold.
func (j *Job) taken() []string {
	if j.spec.Spread == "" || j.cfg.Taken == nil {
		return nil
	}
	return j.cfg.Taken(j.spec.Spread, j.info.ID)
}

// Holder is the node that holds the job, is offered it or ran it; ""
// while there is none.
func (j *Job) Holder() string {
	if a := j.open(); a != nil && a.pending != nil {
		return a.pending.bid.Node.PeerID
	}
	switch j.info.State {
	case types.JobPlaced, types.JobRunning, types.JobCompleted:
		return j.info.Node
	}
	return ""
}

// inputHolders lists the peers each auction waits a little for
// (AuctionConfig.Holders): those holding the task's input files, when the
// ranking prefers them.
func (j *Job) inputHolders() []string {
	if s := j.localityScorer(); s != nil {
		return s.Holders()
	}
	return nil
}

// localityScorer is the LocalityScorer of the task's input files, made
// once; nil when the task names none or locality is off.
func (j *Job) localityScorer() *LocalityScorer {
	if j.cfg.LocalityWeight <= 0 || len(j.spec.Task.Files) == 0 {
		return nil
	}
	if j.locality == nil {
		s := NewLocalityScorer(j.spec.Task.Files)
		j.locality = &s
	}
	return j.locality
}

// failedNodes lists the nodes that failed this job: they did not confirm
// an Accept of it, or an attempt placed on them failed for the node's
// reasons (charged to reschedule: lost, a node fault). The next auctions
// exclude them while another node bids (AuctionConfig.Exclude).
func (j *Job) failedNodes() []string {
	var out []string
	add := func(p string) {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, a := range j.info.Attempts {
		for _, p := range a.Unconfirmed {
			add(p)
		}
		if a.Charge == ChargeReschedule {
			add(a.Node)
		}
	}
	return out
}

// bidBefore reports whether allocation id was bid in an earlier attempt
// of the job (or placed before a restart, which forgot the auctions).
func (j *Job) bidBefore(id types.AllocationID) bool {
	if _, ok := j.holders[id]; ok {
		return true
	}
	for _, a := range j.auctions[:len(j.auctions)-1] {
		if a != nil && a.allocs[id] {
			return true
		}
	}
	return false
}

// bidding returns the auction of attempt if it is the open one.
func (j *Job) bidding(attempt int) *Auction {
	if j.info.State != types.JobBidding || attempt < 1 || attempt != len(j.auctions) {
		return nil
	}
	return j.auctions[attempt-1]
}

// open returns the auction in progress, if any.
func (j *Job) open() *Auction { return j.bidding(len(j.auctions)) }

func (j *Job) auctionFor(id types.AllocationID) *Auction {
	for _, a := range j.auctions {
		if a != nil && a.offers[id] != nil { // nil: an auction from before a restart
			return a
		}
	}
	return nil
}

// drain forwards an auction's actions, acting on Placed and Failed itself.
// Only the open auction ever emits those two.
func (j *Job) drain(a *Auction, now time.Time) {
	for _, act := range a.Actions() {
		switch act := act.(type) {
		case Placed:
			j.place(act, now)
		case Observe:
			if act.Event == EventNoConfirm || act.Event == EventRejected || act.Event == EventBumped {
				if att := j.attempt(); !slices.Contains(att.Unconfirmed, act.Peer) {
					att.Unconfirmed = append(att.Unconfirmed, act.Peer)
					j.touch(now)
				}
			}
			j.emit(act)
		case Failed:
			switch {
			case j.attempt().Late || act.Busy && act.Unconfirmed:
				j.waitForCapacity(a, act.Reason, ChargeReschedule, now)
			case act.Busy:
				j.waitForCapacity(a, act.Reason, ChargeRetry, now)
			case act.Unconfirmed:
				j.attemptFailed(act.Reason, ChargeReschedule, now)
			default:
				j.wide = true // the nodes asked could not run it: ask every node next
				j.attemptFailed(act.Reason, ChargeRetry, now)
			}
		default:
			j.emit(act)
		}
	}
}

func (j *Job) place(p Placed, now time.Time) {
	id, peer := p.Confirm.AllocationID, p.Bid.Node.PeerID
	att := j.attempt()
	att.AllocationID, att.Node, att.Addrs, att.Epoch = id, peer, slices.Clone(p.Bid.Addrs), p.Confirm.Epoch
	att.Price, att.PlacedAt = p.Bid.Price, now
	j.queuedAt, j.waits = time.Time{}, 0
	j.alloc, j.holders[id], j.info.Node = id, p.Bid, peer
	j.setState(types.JobPlaced, "", now)
	j.emit(Invoke{Peer: peer, Addrs: p.Bid.Addrs, Invocation: types.Invocation{
		JobID: j.info.ID, AllocationID: id, Epoch: p.Confirm.Epoch, Task: j.spec.Task,
	}})
}

// attemptFailed ends the current attempt, charged to budget c, and either
// schedules the next one after a backoff or, with no budget or time left,
// fails the job.
func (j *Job) attemptFailed(reason string, c Charge, now time.Time) {
	att := j.attempt()
	att.Outcome, att.Reason, att.EndedAt, att.Charge = OutcomeFailed, reason, now, c
	j.alloc, j.info.Node = "", ""
	if j.left(c) < 0 {
		j.finish(types.JobFailed, j.gaveUp(c, reason), now)
		return
	}
	again, doing := "retry", "retrying"
	if c == ChargeReschedule {
		again, doing = "reschedule", "rescheduling"
	}
	wait := backoff(j.spent())
	if !j.timeFor(wait, now) {
		j.finish(types.JobFailed, reason+"; no time left to "+again+" before the job deadline", now)
		return
	}
	j.retryAt = now.Add(wait)
	j.setState(types.JobPending, fmt.Sprintf("attempt %d failed: %s; %s in %s", att.Number, reason, doing, wait), now)
}

// gaveUp is the reason a job fails with once its attempts overdrew budget
// c, the last one failing for reason.
func (j *Job) gaveUp(c Charge, reason string) string {
	n := j.spent()
	switch {
	case c == ChargeReschedule && j.spec.Reschedule == RescheduleNever:
		reason += "; not rescheduled: the job says reschedule: never"
	case c == ChargeReschedule:
		return fmt.Sprintf("gave up after %d attempts (%s, the limit): %s", n, plural(j.spec.reschedules(), "reschedule"), reason)
	}
	if n > 1 {
		return fmt.Sprintf("gave up after %d attempts: %s", n, reason)
	}
	return reason
}

// left is how many more attempts budget c allows after those charged to
// it so far; negative once overdrawn.
func (j *Job) left(c Charge) int {
	limit := j.spec.Retries
	if c == ChargeReschedule {
		limit = j.spec.reschedules()
	}
	n := 0
	for _, a := range j.info.Attempts {
		if a.Charge == c {
			n++
		}
	}
	return limit - n
}

// spent is how many attempts were charged to either budget: every failed
// attempt but an auction a restart of the requester interrupted (a cancel
// or a passed deadline ends the job, charging nothing). The backoff grows
// with it.
func (j *Job) spent() int {
	n := 0
	for _, a := range j.info.Attempts {
		if a.Charge != "" {
			n++
		}
	}
	return n
}

// timeFor reports whether an attempt that starts after wait still starts
// before the job's deadline.
func (j *Job) timeFor(wait time.Duration, now time.Time) bool {
	return j.deadline.IsZero() || now.Add(wait).Before(j.deadline)
}

// waitForCapacity handles an attempt a that did not place the job for
// want of room only: an auction in which no node bid but some node was
// only busy, one whose every offer was rejected as busy (the nodes gave
// their room to requesters within their share), or a late bid's attempt
// whose bid was dropped (its node is avoided or distrusted) or not
// confirmed (its hold lapsed on the way). Neither the nodes nor the job
// failed: the job waits and asks again, charged to no budget, for at most
// its queue timeout; a job that does not wait (no queue timeout) is
// charged to c. An attempt that made no offer leaves no trace in the
// attempts, so no allocation ID is reused when its number is; one that
// did is kept, uncharged, so that a late confirm of its offer is still
// released.
func (j *Job) waitForCapacity(a *Auction, reason string, c Charge, now time.Time) {
	if j.spec.QueueTimeout == 0 {
		j.attemptFailed(reason, c, now)
		return
	}
	if j.queuedAt.IsZero() {
		j.queuedAt = now
	}
	if limit := j.spec.QueueTimeout; now.Sub(j.queuedAt) >= limit {
		j.finish(types.JobFailed, fmt.Sprintf("no capacity freed up within %s: %s", limit, reason), now)
		return
	}
	wait := min(backoff(j.waits+1), queueBackoffCap)
	if !j.timeFor(wait, now) {
		j.finish(types.JobFailed, reason+"; no time left to wait before the job deadline", now)
		return
	}
	if len(a.offers) == 0 {
		j.info.Attempts = j.info.Attempts[:len(j.info.Attempts)-1]
		j.auctions = j.auctions[:len(j.auctions)-1]
	} else {
		att := j.attempt()
		att.Outcome, att.Reason, att.EndedAt = OutcomeFailed, reason, now
		j.alloc, j.info.Node = "", ""
	}
	j.waits++
	j.retryAt = now.Add(wait)
	j.setState(types.JobPending, "waiting for capacity: "+reason, now)
}

// backoff is the wait after the n-th failed attempt: 100ms, doubling, at most 5s.
func backoff(n int) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffCap; i++ {
		d *= 2
	}
	return min(d, backoffCap)
}

func (j *Job) attempt() *Attempt { return &j.info.Attempts[len(j.info.Attempts)-1] }

func (j *Job) setState(s types.JobState, reason string, now time.Time) {
	j.info.State, j.info.Reason = s, reason
	j.touch(now)
}

func (j *Job) touch(now time.Time) {
	j.info.UpdatedAt = now
	j.info.Revision++
}

func (j *Job) emit(a Action) { j.actions = append(j.actions, a) }

// finish moves the job to a terminal state, closing the active attempt.
func (j *Job) finish(s types.JobState, reason string, now time.Time) {
	if len(j.info.Attempts) > 0 && j.attempt().Outcome == OutcomeActive {
		att := j.attempt()
		att.Outcome, att.Reason, att.EndedAt = outcomeOf(s), reason, now
	}
	j.alloc, j.retryAt = "", time.Time{}
	j.setState(s, reason, now)
}

func outcomeOf(s types.JobState) Outcome {
	switch s {
	case types.JobCompleted:
		return OutcomeCompleted
	case types.JobCancelled:
		return OutcomeCancelled
	}
	return OutcomeFailed
}

// stop releases whatever the job holds or is about to hold.
func (j *Job) stop(why string, now time.Time) {
	if a := j.open(); a != nil {
		a.abort(why)
		j.drain(a, now)
	}
	if j.alloc != "" && !j.released[j.alloc] {
		j.release(j.alloc, why)
	}
}

func (j *Job) release(id types.AllocationID, why string) {
	b := j.holders[id]
	j.released[id] = true
	j.emit(Release{Peer: b.Node.PeerID, Addrs: b.Addrs, Cancel: types.Cancel{JobID: j.info.ID, AllocationID: id, Reason: why}})
}

func (j *Job) note(att *Attempt, text string, now time.Time) {
	if len(att.Notes) < maxNotes {
		att.Notes = append(att.Notes, text)
		j.touch(now)
	}
}

// attemptOf returns the attempt that placed allocation id, if any.
func (j *Job) attemptOf(id types.AllocationID) *Attempt {
	i := slices.IndexFunc(j.info.Attempts, func(a Attempt) bool { return id != "" && a.AllocationID == id })
	if i < 0 {
		return nil
	}
	return &j.info.Attempts[i]
}

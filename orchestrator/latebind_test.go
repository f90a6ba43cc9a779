package orchestrator

import (
	"slices"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// lateBid is a bid peer sends unasked, naming alloc, once its capacity
// frees (late binding), with a hold of 3s.
func lateBid(peer, alloc string) event {
	return func(m machine, now time.Time) {
		b := mkBid("j1", peer, 1, 10, 0.5)
		b.Allocation, b.HoldUntil = types.AllocationID(alloc), now.Add(3*time.Second)
		m.Bid(b, now)
	}
}

// waiting plays the first auction of a job that finds n1 busy and n2
// unable: the job waits for capacity.
func waiting() []step {
	return []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: published(1, 2)},
		{at: 2 * ms, ev: busy("n1")},
		{at: 3 * ms, ev: decline("n2", mem900TiB), state: types.JobPending},
	}
}

func lateSpec() JobSpec {
	s := testSpec()
	s.QueueTimeout, s.EnoughBids = time.Minute, 3
	return s
}

// A job waiting for capacity takes a late bid at once: accepted without an
// auction (nothing published), placed, and its attempt says it was late.
func TestJobTakesALateBid(t *testing.T) {
	j := newTestJob(t, lateSpec())
	run(t, j, append(waiting(),
		step{at: 40 * ms, ev: lateBid("n1", "late-n1"), want: []string{"accept late-n1 -> n1"}, state: types.JobBidding},
		step{at: 41 * ms, ev: confirm("late-n1", 4), want: []string{"invoke late-n1 on n1 epoch 4"}, state: types.JobPlaced},
		step{at: 90 * ms, ev: status("late-n1", types.AllocCompleted, ""), state: types.JobCompleted},
	))
	atts := j.Info().Attempts
	if len(atts) != 1 || !atts[0].Late || atts[0].AllocationID != "late-n1" || atts[0].Outcome != OutcomeCompleted {
		t.Fatalf("attempts %+v", atts)
	}
}

// A late bid that its node does not confirm sends the job back to waiting,
// charged to no budget; the job's next auction goes out as usual, and a
// late confirm of the first offer is released.
func TestJobLateBidNotConfirmed(t *testing.T) {
	spec := lateSpec()
	spec.Retries, spec.Reschedule = 0, -1 // any charge would fail the job
	j := newTestJob(t, spec)
	run(t, j, append(waiting(),
		step{at: 40 * ms, ev: lateBid("n1", "late-n1"), want: []string{"accept late-n1 -> n1"}},
		step{at: 41 * ms, ev: reject("late-n1", "the bid's hold expired"), want: []string{"release late-n1 on n1"}, state: types.JobPending},
		step{at: 240 * ms, ev: tick},
		step{at: 241 * ms, ev: tick, want: []string{"publish j1"}, state: types.JobBidding},
		step{at: 242 * ms, ev: confirm("late-n1", 4), want: []string{"release late-n1 on n1"}},
	))
	atts := j.Info().Attempts
	if len(atts) != 2 || !atts[0].Late || atts[0].Outcome != OutcomeFailed || atts[0].Charge != "" || atts[1].Late {
		t.Fatalf("attempts %+v", atts)
	}
}

// Bids that come between attempts are not late bids unless the job waits
// for capacity, and a late bid is taken only if it can stand: from a node
// that did not fail the job, for an allocation never bid before, within
// its hold. A late bid from a node the job avoids opens an attempt that
// leaves no trace: the job waits on.
func TestJobLateBidRefusals(t *testing.T) {
	t.Run("in backoff after a failure", func(t *testing.T) {
		spec := lateSpec()
		spec.EnoughBids = 1
		j := newTestJob(t, spec)
		run(t, j, []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1"}},
			{at: 3 * ms, ev: lost("j1-a1-n1", "stream reset"), want: []string{"release j1-a1-n1 on n1"}, state: types.JobPending},
			{at: 4 * ms, ev: lateBid("n2", "late-n2"), state: types.JobPending},
		})
	})
	t.Run("expired hold", func(t *testing.T) {
		j := newTestJob(t, lateSpec())
		run(t, j, append(waiting(), step{at: 40 * ms, ev: func(m machine, now time.Time) {
			b := mkBid("j1", "n1", 1, 10, 0.5)
			b.Allocation, b.HoldUntil = "late-n1", now
			m.Bid(b, now)
		}, state: types.JobPending}))
	})
	t.Run("another job", func(t *testing.T) {
		j := newTestJob(t, lateSpec())
		run(t, j, append(waiting(), step{at: 40 * ms, ev: func(m machine, now time.Time) {
			b := mkBid("j2", "n1", 1, 10, 0.5)
			b.Allocation, b.HoldUntil = "late-n1", now.Add(time.Second)
			m.Bid(b, now)
		}, state: types.JobPending}))
	})
	t.Run("no allocation", func(t *testing.T) {
		j := newTestJob(t, lateSpec())
		run(t, j, append(waiting(), step{at: 40 * ms, ev: lateBid("n1", ""), state: types.JobPending}))
	})
	t.Run("an allocation bid before", func(t *testing.T) {
		j := newTestJob(t, lateSpec())
		run(t, j, append(waiting(),
			step{at: 40 * ms, ev: lateBid("n1", "late-n1"), want: []string{"accept late-n1 -> n1"}},
			step{at: 41 * ms, ev: reject("late-n1", "gone"), want: []string{"release late-n1 on n1"}, state: types.JobPending},
			step{at: 42 * ms, ev: lateBid("n3", "late-n1"), state: types.JobPending},
		))
	})
	t.Run("a node that failed the job", func(t *testing.T) {
		j := newTestJob(t, lateSpec())
		run(t, j, append(waiting(),
			step{at: 40 * ms, ev: lateBid("n1", "late-n1"), want: []string{"accept late-n1 -> n1"}},
			step{at: 41 * ms, ev: reject("late-n1", "gone"), want: []string{"release late-n1 on n1"}, state: types.JobPending},
			step{at: 42 * ms, ev: lateBid("n1", "late-n1b"), state: types.JobPending},
		))
	})
	t.Run("an avoided node", func(t *testing.T) {
		spec := lateSpec()
		spec.Avoid = []string{"n1"}
		j := newTestJob(t, spec)
		run(t, j, append(waiting(),
			step{at: 40 * ms, ev: lateBid("n1", "late-n1"), want: []string{"release the bid for j1 on n1"}, state: types.JobPending},
		))
		if atts := j.Info().Attempts; len(atts) != 0 {
			t.Fatalf("attempts %+v", atts)
		}
		if d, _ := j.NextDeadline(); d.IsZero() {
			t.Fatal("the job no longer waits")
		}
	})
}

// A late bid goes through the open auction like any other bid when one is
// open: nothing special happens while bidding.
func TestJobBidWhileBiddingIsNotLate(t *testing.T) {
	j := newTestJob(t, lateSpec())
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: lateBid("n1", "late-n1")},
	})
	if atts := j.Info().Attempts; len(atts) != 1 || atts[0].Late || len(j.auctions[0].bids) != 1 {
		t.Fatalf("attempts %+v", atts)
	}
}

func busyReject(alloc string) event {
	return func(m machine, now time.Time) {
		m.Rejected(types.Reject{JobID: "j1", AllocationID: types.AllocationID(alloc), Reason: "the bid's hold was given up", Busy: true}, now)
	}
}

// Offers rejected as busy (the nodes gave the bids' room to requesters
// within their share) cost the nodes no standing (EventBumped: weight 0)
// and charge nothing to the job: it waits for capacity and asks again,
// leaving those nodes out of its later auctions unless only they bid (a
// node that says so falsely delays the job by one auction). One rejected
// for another reason among them is the nodes' fault, as before; so is a
// job that does not wait.
func TestJobOffersRejectedAsBusy(t *testing.T) {
	bids := func(spec JobSpec) *Job {
		j := newTestJob(t, spec)
		run(t, j, []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: published(1, 2)},
			{at: 2 * ms, ev: bid("n1", 1)},
			{at: 3 * ms, ev: bid("n2", 2), want: []string{"accept j1-a1-n1 -> n1"}},
		})
		return j
	}
	spec := lateSpec()
	spec.Retries, spec.Reschedule = 0, -1
	j := bids(spec)
	var observed []Action
	for _, s := range []step{
		{at: 4 * ms, ev: busyReject("j1-a1-n1"), want: []string{"release j1-a1-n1 on n1", "accept j1-a1-n2 -> n2"}},
		{at: 5 * ms, ev: busyReject("j1-a1-n2"), want: []string{"release j1-a1-n2 on n2"}, state: types.JobPending},
	} {
		s.ev(j, t0.Add(s.at))
		acts := j.Actions()
		for _, a := range acts {
			if _, ok := a.(Observe); ok {
				observed = append(observed, a)
			}
		}
		if got := actionStrings(slices.DeleteFunc(acts, func(a Action) bool { _, ok := a.(Observe); return ok })); !prefixesMatch(got, s.want) {
			t.Fatalf("at %s: %v, want %v", s.at, got, s.want)
		}
		if s.state != "" && j.Info().State != s.state {
			t.Fatalf("at %s: %s (%s)", s.at, j.Info().State, j.Info().Reason)
		}
	}
	atts := j.Info().Attempts
	if len(observed) != 2 || observed[0].(Observe).Event != EventBumped || len(atts) != 1 || atts[0].Charge != "" ||
		!slices.Equal(atts[0].Unconfirmed, []string{"n1", "n2"}) || atts[0].Outcome != OutcomeFailed {
		t.Fatalf("observed %v, attempts %+v", observed, atts)
	}
	if w := eventWeight[EventBumped]; w != 0 {
		t.Fatalf("a bumped offer weighs %v", w)
	}
	run(t, j, []step{{at: 205 * ms, ev: tick, want: []string{"publish j1"}, state: types.JobBidding}})

	j = bids(spec)
	run(t, j, []step{
		{at: 4 * ms, ev: busyReject("j1-a1-n1"), want: []string{"release j1-a1-n1 on n1", "accept j1-a1-n2 -> n2"}},
		{at: 5 * ms, ev: reject("j1-a1-n2", "no"), want: []string{"release j1-a1-n2 on n2"}, state: types.JobFailed},
	})

	spec.QueueTimeout = 0
	j = bids(spec)
	run(t, j, []step{
		{at: 4 * ms, ev: busyReject("j1-a1-n1"), want: []string{"release j1-a1-n1 on n1", "accept j1-a1-n2 -> n2"}},
		{at: 5 * ms, ev: busyReject("j1-a1-n2"), want: []string{"release j1-a1-n2 on n2"}, state: types.JobFailed},
	})
}

// An auction that draws no bid and no busy decline (the nodes asked, a
// sample perhaps, cannot run the job) makes the job's later bid requests
// wide: to every node. Busy declines do not.
func TestJobPublishesWideAfterNoBid(t *testing.T) {
	spec := testSpec()
	spec.Retries, spec.QueueTimeout = 2, time.Minute
	j := newTestJob(t, spec)
	wide := func() bool {
		for _, a := range j.Actions() {
			if p, ok := a.(Publish); ok {
				return p.Wide
			}
		}
		t.Fatal("no publish")
		return false
	}
	j.Start(t0)
	if wide() {
		t.Fatal("the first auction is wide")
	}
	j.Published(1, []string{"n1"}, t0)
	j.Decline(types.Decline{JobID: "j1", Node: types.NodeID{PeerID: "n1"}, Reasons: []string{"busy"}, Busy: true}, t0)
	j.Tick(t0.Add(time.Second))
	if wide() {
		t.Fatal("wide after a busy decline")
	}
	j.Published(1, []string{"n1"}, t0.Add(time.Second))
	j.Decline(types.Decline{JobID: "j1", Node: types.NodeID{PeerID: "n1"}, Reasons: []string{mem900TiB}}, t0.Add(time.Second))
	if j.Info().State != types.JobPending {
		t.Fatalf("state %s", j.Info().State)
	}
	j.Tick(t0.Add(2 * time.Second))
	if !wide() {
		t.Fatal("not wide after an auction in which the node asked could not run the job")
	}
}

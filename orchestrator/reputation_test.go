package orchestrator

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

func TestReputationDecaysByHalfLife(t *testing.T) {
	r := NewReputation(nil, t0)
	r.Record("liar", EventLost, t0)
	for _, c := range []struct {
		after time.Duration
		want  float64
		poor  bool
	}{
		{0, 2, true},
		{HalfLife, 1, true},
		{2 * HalfLife, 0.5, true},
		{2*HalfLife + time.Second, 0.5 * math.Exp2(-float64(time.Second)/float64(HalfLife)), false},
		{10 * HalfLife, 2.0 / 1024, false},
	} {
		if got := r.Penalty("liar", t0.Add(c.after)); math.Abs(got-c.want) > 1e-9 || r.Poor("liar", t0.Add(c.after)) != c.poor {
			t.Errorf("after %s: penalty %v poor %v, want %v %v", c.after, got, r.Poor("liar", t0.Add(c.after)), c.want, c.poor)
		}
	}
	rec, _ := r.Record("liar", EventNoConfirm, t0.Add(HalfLife))
	if rec.Penalty != 2 || rec.Events[EventLost] != 1 || rec.Events[EventNoConfirm] != 1 || rec.Last != EventNoConfirm {
		t.Fatalf("record %+v", rec)
	}
	if r.Penalty("stranger", t0) != 0 || r.Poor("stranger", t0) {
		t.Fatal("a peer never penalised has a penalty")
	}
}

func TestReputationThresholds(t *testing.T) {
	r := NewReputation(nil, t0)
	r.Record("shy", EventRejected, t0)
	r.Record("shy", EventRejected, t0)
	if r.Poor("shy", t0) {
		t.Fatal("two rejects make a peer poor")
	}
	r.Record("shy", EventRejected, t0)
	if !r.Poor("shy", t0) {
		t.Fatal("three rejects at once leave a peer in good standing")
	}
	r.Record("mute", EventNoConfirm, t0)
	if !r.Poor("mute", t0.Add(HalfLife-time.Second)) || r.Poor("mute", t0.Add(HalfLife+time.Second)) {
		t.Fatal("one no_confirm should rank a peer down for one half-life")
	}
}

func TestReputationUnheardUntilItAnswers(t *testing.T) {
	r := NewReputation(nil, t0)
	r.Record("n1", EventNoConfirm, t0)
	if r.Unheard("n1") {
		t.Fatal("a no_confirm marks a peer unheard")
	}
	r.Record("n1", EventSilent, t0)
	if !r.Unheard("n1") {
		t.Fatal("silent does not mark unheard")
	}
	rec, ok := r.Heard("n1")
	if !ok || rec.Unheard || r.Unheard("n1") || rec.Penalty != 2 {
		t.Fatalf("after an answer: %+v %v", rec, ok)
	}
	if _, ok := r.Heard("n1"); ok {
		t.Fatal("a second answer changed the record")
	}
}

func TestReputationKeepsTheMostPenalised(t *testing.T) {
	r := NewReputation(nil, t0)
	for i := range MaxPeers {
		r.Record(fmt.Sprint("p", i), EventRejected, t0)
	}
	if _, dropped := r.Record("new", EventLost, t0); !slices.Equal(dropped, []string{"p0"}) {
		t.Fatalf("a lost peer over the cap dropped %v, want the least penalised, p0", dropped)
	}
	if _, dropped := r.Record("meek", EventRejected, t0); !slices.Equal(dropped, []string{"meek"}) {
		t.Fatalf("the least penalised newcomer dropped %v, want itself", dropped)
	}
	if n := len(r.Table(t0)); n != MaxPeers || r.Penalty("new", t0) != 2 {
		t.Fatalf("%d peers kept; new %v", n, r.Penalty("new", t0))
	}
	back := NewReputation(append(persisted(r, t0), PeerRecord{Peer: "extra", Penalty: 0.1, At: t0}), t0)
	if n := len(back.Table(t0)); n != MaxPeers || back.Penalty("extra", t0) != 0 || back.Penalty("new", t0) != 2 {
		t.Fatalf("restored %d peers, extra %v", n, back.Penalty("extra", t0))
	}
}

func TestReputationTableMostPenalisedFirst(t *testing.T) {
	r := NewReputation(nil, t0)
	r.Record("a", EventRejected, t0)
	r.Record("b", EventLost, t0)
	r.Record("c", EventSilent, t0)
	tab := r.Table(t0.Add(HalfLife))
	var got []string
	for _, s := range tab {
		got = append(got, s.Peer)
	}
	if !slices.Equal(got, []string{"b", "c", "a"}) || !tab[0].Poor || tab[0].Penalty != 1 || !tab[1].Unheard || tab[2].Poor {
		t.Fatalf("table %+v", tab)
	}
}

// persisted is what a PeerStore holds of r: every record.
func persisted(r *Reputation, now time.Time) []PeerRecord {
	var out []PeerRecord
	for _, s := range r.Table(now) {
		out = append(out, clonePeer(*r.peers[s.Peer]))
	}
	return out
}

// The finding of issue 11: a node that confirms, then goes silent, won
// every attempt because its bid was the cheapest. Lost once, it is not
// offered the job's next attempt while an honest node bids.
func TestLiarLostOnceNeverWinsALaterAttempt(t *testing.T) {
	spec := testSpec()
	spec.EnoughBids, spec.Retries = 2, 2
	j := newTestJob(t, spec)
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("liar", 0)},
		{at: 2 * ms, ev: bid("honest", 5), want: []string{"accept j1-a1-liar -> liar"}},
		{at: 3 * ms, ev: confirm("j1-a1-liar", 1), want: []string{"invoke j1-a1-liar on liar", "release the bid for j1 on honest"}},
		{at: 1003 * ms, ev: lost("j1-a1-liar", "no heartbeat for 1s"), want: []string{"release j1-a1-liar"}, state: types.JobPending},
		{at: 1103 * ms, ev: tick, want: []string{"publish j1"}},
		{at: 1104 * ms, ev: bid("liar", 0)},
		{at: 1105 * ms, ev: bid("honest", 5), want: []string{"release the bid for j1 on liar: excluded", "accept j1-a2-honest -> honest"}},
		{at: 1106 * ms, ev: confirm("j1-a2-honest", 2), want: []string{"invoke j1-a2-honest on honest"}},
	})
}

// A bidder that never confirms is offered the next job only after the
// others, even though it is the cheapest.
func TestNoConfirmRanksABidderDownForTheNextJob(t *testing.T) {
	rep := NewReputation(nil, t0)
	first := newStandingAuction(t, rep)
	run(t, first, []step{
		{at: 0, ev: bid("mute", 0)},
		{at: 1 * ms, ev: bid("honest", 5), want: []string{"accept j1-a1-mute -> mute"}},
	})
	first.Tick(t0.Add(2001 * ms))
	observeAll(rep, first.Actions(), t0.Add(2001*ms))
	if !rep.Poor("mute", t0.Add(3*time.Second)) {
		t.Fatal("a bidder that did not confirm is in good standing")
	}
	next := newStandingAuction(t, rep)
	run(t, next, []step{
		{at: 0, ev: bid("mute", 0)},
		{at: 1 * ms, ev: bid("honest", 5), want: []string{"accept j1-a1-honest -> honest"}},
	})
}

// Once a peer was silent for a whole window, the next auction does not
// wait for it: it closes as soon as the others answered.
func TestSilentPeerIsNotWaitedFor(t *testing.T) {
	rep := NewReputation(nil, t0)
	first := newStandingAuction(t, rep)
	run(t, first, []step{
		{at: 0, ev: expect(3)},
		{at: 1 * ms, ev: bid("n1", 1)},
		{at: 2 * ms, ev: decline("n2", "busy")},
		{at: 2 * time.Second, ev: func(m machine, now time.Time) {
			m.Tick(now)
			acts := m.Actions()
			if !slices.ContainsFunc(acts, func(a Action) bool { return a == Observe{Peer: "n3", Event: EventSilent} }) {
				t.Fatalf("n3 not observed silent: %v", acts)
			}
			observeAll(rep, acts, now)
		}},
	})
	next := newStandingAuction(t, rep)
	run(t, next, []step{
		{at: 0, ev: expect(3)},
		{at: 1 * ms, ev: bid("n1", 1)},
		{at: 2 * ms, ev: decline("n2", "busy"), want: []string{"accept j1-a1-n1 -> n1"}},
	})
	if acts := next.Actions(); len(acts) != 0 {
		t.Fatalf("an auction that closed early observed %v", acts)
	}
	rep.Heard("n3") // it answers some request: waited for again
	again := newStandingAuction(t, rep)
	run(t, again, []step{
		{at: 0, ev: expect(3)},
		{at: 1 * ms, ev: bid("n1", 1)},
		{at: 2 * ms, ev: decline("n2", "busy")},
		{at: 3 * ms, ev: decline("n3", "busy"), want: []string{"accept j1-a1-n1 -> n1"}},
	})
}

func TestBidsWithoutOrWithACopiedAllocationAreDropped(t *testing.T) {
	a := newTestAuction(t, AuctionConfig{Enough: 3})
	honest := mkBid("j1", "honest", 5, 10, 0.5)
	honest.Allocation = "j1-secret"
	copycat := mkBid("j1", "copycat", 0, 10, 0.5)
	copycat.Allocation = "j1-secret"
	blank := mkBid("j1", "blank", 0, 10, 0.5)
	run(t, a, []step{
		{at: 0, ev: func(m machine, now time.Time) { m.Bid(honest, now) }},
		{at: 1 * ms, ev: func(m machine, now time.Time) { m.Bid(copycat, now) }},
		{at: 2 * ms, ev: func(m machine, now time.Time) { m.Bid(blank, now) }},
		{at: 2 * time.Second, ev: tick, want: []string{"accept j1-secret -> honest"}},
	})
	// Across attempts: an allocation ID bid in attempt 1 does not come back.
	j := newTestJob(t, testSpec())
	reuse := func(peer string) event {
		return func(m machine, now time.Time) {
			b := mkBid("j1", peer, 1, 10, 0.5)
			b.Allocation = "j1-a1-n1"
			m.Bid(b, now)
		}
	}
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		{at: 2 * ms, ev: reject("j1-a1-n1", "busy"), want: []string{"release j1-a1-n1"}, state: types.JobPending},
		{at: 102 * ms, ev: tick, want: []string{"publish j1"}},
		{at: 103 * ms, ev: reuse("n2")},
		{at: 2102 * ms, ev: tick, state: types.JobFailed},
	})
	if got, want := j.Info().Reason, "gave up after 2 attempts: no node bid within 2s: 1 bid naming no allocation ID or a repeated one"; got != want {
		t.Fatalf("reason %q, want %q", got, want)
	}
}

func TestExpiredHoldsAreSkipped(t *testing.T) {
	a := newTestAuction(t, AuctionConfig{Enough: 2})
	stale := mkBid("j1", "stale", 0, 10, 0.5)
	stale.Allocation, stale.HoldUntil = "j1-stale", t0.Add(1*ms)
	fresh := mkBid("j1", "fresh", 5, 10, 0.5)
	fresh.Allocation, fresh.HoldUntil = "j1-fresh", t0.Add(time.Minute)
	run(t, a, []step{
		{at: 0, ev: func(m machine, now time.Time) { m.Bid(stale, now) }},
		{at: 2 * ms, ev: func(m machine, now time.Time) { m.Bid(fresh, now) }, want: []string{"accept j1-fresh -> fresh"}},
		{at: 3 * ms, ev: reject("j1-fresh", "changed"), want: []string{"release j1-fresh", "failed: none of 2 bidders confirmed: " +
			"stale's hold expired at 03:04:05.001, before its turn; fresh rejected: changed"}},
	})
}

func newStandingAuction(t *testing.T, s Standing) *Auction {
	return newTestAuction(t, AuctionConfig{Enough: 2, Standing: s})
}

// observeAll records the Observe actions in acts, as the shell does.
func observeAll(r *Reputation, acts []Action, now time.Time) {
	for _, a := range acts {
		if o, ok := a.(Observe); ok {
			r.Record(o.Peer, o.Event, now)
		}
	}
}

// A peer whose result disagreed with a quorum is distrusted: its bids are
// dropped and released, even when it bids alone, until it is forgiven.
// Ten agreeing results make a peer trusted; one disagreement ends that.
func TestDistrustedPeerIsNeverChosen(t *testing.T) {
	rep := NewReputation(nil, t0)
	for range TrustAfter - 1 {
		rep.Judge("liar", true, t0)
		rep.Judge("honest", true, t0)
	}
	if rep.Trusted("honest") {
		t.Fatalf("trusted after %d agreements", TrustAfter-1)
	}
	rep.Judge("honest", true, t0)
	rec, _ := rep.Judge("liar", false, t0)
	if !rep.Trusted("honest") || rep.Trusted("liar") || !rep.Distrusted("liar") || rec.Disagreed != 1 || rec.Agreed != TrustAfter-1 {
		t.Fatalf("honest trusted %v; liar %+v", rep.Trusted("honest"), rec)
	}
	a := newStandingAuction(t, rep)
	run(t, a, []step{
		{at: 0, ev: bid("liar", 0)},
		{at: 1 * ms, ev: bid("honest", 5), want: []string{"release the bid for j1 on liar: distrusted", "accept j1-a1-honest -> honest"}},
	})
	alone := newTestAuction(t, AuctionConfig{Enough: 1, Standing: rep})
	run(t, alone, []step{
		{at: 0, ev: bid("liar", 0), want: []string{"release the bid for j1 on liar: distrusted", "failed: no acceptable bid: 1 bid from nodes avoided (other replicas of the unit) or distrusted"}},
	})
	if _, ok := rep.Forgive("liar"); !ok || rep.Distrusted("liar") {
		t.Fatal("forgiven, still distrusted")
	}
	if _, ok := rep.Forgive("liar"); ok {
		t.Fatal("forgiven twice")
	}
	tab := rep.Table(t0)
	if i := slices.IndexFunc(tab, func(s PeerStanding) bool { return s.Peer == "honest" }); i < 0 || !tab[i].Trusted || tab[i].Agreed != TrustAfter {
		t.Fatalf("table %+v", tab)
	}
}

// A job's Avoid drops those bids whoever else bids: a unit's replicas
// never share a node.
func TestAvoidedNodesAreNeverChosen(t *testing.T) {
	a := newTestAuction(t, AuctionConfig{Enough: 2, Avoid: []string{"twin"}})
	run(t, a, []step{
		{at: 0, ev: bid("twin", 0)},
		{at: 1 * ms, ev: bid("other", 5), want: []string{"release the bid for j1 on twin: avoided", "accept j1-a1-other -> other"}},
	})
}

// A liar is not forgotten by being crowded out: peers with no verdict go
// first, whatever their penalties.
func TestReputationKeepsJudgedPeers(t *testing.T) {
	r := NewReputation(nil, t0)
	r.Judge("liar", false, t0)
	for i := range MaxPeers - 1 {
		r.Record(fmt.Sprint("p", i), EventLost, t0)
	}
	if _, dropped := r.Record("new", EventLost, t0.Add(time.Second)); len(dropped) != 1 || dropped[0] == "liar" {
		t.Fatalf("dropped %v", dropped)
	}
	back := NewReputation(persisted(r, t0), t0)
	if !back.Distrusted("liar") {
		t.Fatal("the liar was forgiven by a restart")
	}
}

// Two jobs of one Spread group, auctioned at once to the same bidders,
// are placed on distinct nodes: the second auction to close drops the
// node the first one offered its job to, as it is offered (Holder); and
// the first, turned down, does not fall back on the second's node.
func TestSpreadJobsRunOnDistinctNodes(t *testing.T) {
	var jobs []*Job
	cfg := JobConfig{Requester: "me", Taken: func(g string, self types.JobID) []string {
		var out []string
		for _, j := range jobs {
			if j.info.ID != self && j.spec.Spread == g && j.Holder() != "" {
				out = append(out, j.Holder())
			}
		}
		return out
	}}
	for _, id := range []types.JobID{"j1", "j2"} {
		spec := testSpec()
		spec.ID, spec.EnoughBids, spec.Spread = id, 2, "unit-0"
		j, err := NewJob(spec, cfg, t0)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	j1, j2 := jobs[0], jobs[1]
	run(t, j1, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1)},
		{at: 2 * ms, ev: bid("n2", 5), want: []string{"accept j1-a1-n1 -> n1"}},
	})
	if j1.Holder() != "n1" || j2.Holder() != "" {
		t.Fatalf("holders %q %q", j1.Holder(), j2.Holder())
	}
	bidOn := func(peer string, price int64) event {
		return func(m machine, now time.Time) {
			b := mkBid("j2", peer, price, 10, 0.5)
			b.Allocation = types.AllocationID("j2-a1-" + peer)
			m.Bid(b, now)
		}
	}
	run(t, j2, []step{
		{at: 0, ev: start, want: []string{"publish j2"}},
		{at: 3 * ms, ev: bidOn("n1", 1)},
		{at: 4 * ms, ev: bidOn("n2", 5), want: []string{"release the bid for j2 on n1: avoided", "accept j2-a1-n2 -> n2"}},
	})
	// n1 turns j1 down: its next candidate, n2, was free when its window
	// closed and is j2's now, so it is passed over.
	run(t, j1, []step{
		{at: 5 * ms, ev: reject("j1-a1-n1", "busy"), want: []string{"release j1-a1-n1 on n1: n1 rejected: busy", "release the bid for j1 on n2: avoided: the node took another replica"}},
	})
	if j1.Holder() == "n2" {
		t.Fatal("j1 was offered to the node that holds j2")
	}
}

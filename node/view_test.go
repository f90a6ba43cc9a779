package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// The ledger's view lists what counts now, and its totals are the sums of
// what it lists: an ended hold or an expired lock is in neither.
func TestLedgerView(t *testing.T) {
	l := newTestLedger()
	now := time.Unix(1000, 0)
	mustLock(t, l, "run", "j1", res(1, gib), now)
	if _, err := l.Start("run", l.Epoch(), now); err != nil {
		t.Fatal(err)
	}
	holdLock(t, l, "soon", "j2", "peer", res(0.5, gib), now, 2*time.Second)
	holdLock(t, l, "late", "j3", "peer", res(0.5, gib), now, 5*time.Second)
	holdLock(t, l, "gone", "j4", "peer", res(0.5, gib), now, time.Millisecond)
	if _, err := hold(l, "bid", "j5", "other", res(0.25, gib), now); err != nil {
		t.Fatal(err)
	}
	v := l.View(now.Add(time.Second / 2))
	ids := func() (out []types.AllocationID) {
		for _, h := range v.Holds {
			out = append(out, h.Allocation)
		}
		for _, lk := range v.Locks {
			out = append(out, lk.AllocationID)
		}
		return out
	}()
	if want := []types.AllocationID{"bid", "soon", "late", "run"}; len(ids) != len(want) || ids[0] != want[0] || ids[1] != want[1] || ids[2] != want[2] || ids[3] != want[3] {
		t.Fatalf("listed %v, want %v", ids, want)
	}
	if v.Held != res(0.25, gib) || v.Locked != res(1, 2*gib) || v.Running != res(1, gib) || v.Epoch != l.Epoch() ||
		v.Available != l.Registered().Sub(v.Held).Sub(v.Locked).Sub(v.Running) {
		t.Fatalf("totals %+v", v)
	}
	if after := l.View(now.Add(time.Hour)); len(after.Holds) != 0 || len(after.Locks) != 1 || !after.Locks[0].Running {
		t.Fatalf("an hour later: %+v", after)
	}
}

// The bid log writes its records without being asked, a batch at a time.
func TestBidLogWritesInTheBackground(t *testing.T) {
	st := newMemStore()
	h := newHarness(t, st, 0)
	h.node.HandleBidRequest(requester, &types.BidRequest{JobID: "j", Requester: requester, Executor: "wasm",
		Resources: types.Resources{CPU: 100, Memory: 1 << 20}, Deadline: time.Now().Add(time.Minute)})
	<-h.net.sent
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, _, err := ListBids(st, Query{})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 && recs[0].JobID == "j" && recs[0].Outcome == OutcomeBid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bid records after 5s: %+v", recs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBidLogBoundsDeclines: a requester's declines are kept up to a burst
// and then at a rate, its bids all; another requester has a burst of its
// own; every requester's together stay within the bound of all; what is
// not kept is counted.
func TestBidLogBoundsDeclines(t *testing.T) {
	b := newBidLog(newMemStore(), nil)
	now := time.Now()
	send := func(requester string, bid bool) {
		req := &types.BidRequest{JobID: "j", Requester: requester}
		var msg types.Message = &types.Decline{JobID: "j", Reasons: []string{"busy"}}
		if bid {
			msg = &types.Bid{JobID: "j", Allocation: "a"}
		}
		b.add(Send{Request: req, Msg: msg}, now)
	}
	for range 100 {
		send("flooder", false)
		send("flooder", true)
	}
	send("other", false)
	if kept, lost := len(b.pending), b.Lost(); kept != 100+declineBurst+1 || lost != 100-declineBurst {
		t.Fatalf("kept %d, lost %d; want every bid, %d declines of the flooder's and the other's one", kept, lost, declineBurst)
	}
	now = now.Add(10 * time.Second) // 5 more of the flooder's
	for range 10 {
		send("flooder", false)
	}
	if kept := len(b.pending); kept != 100+declineBurst+1+5 {
		t.Fatalf("kept %d after 10 s, want 5 more", kept)
	}
	before := len(b.pending)
	for i := range 2 * declineBurstAll {
		send(fmt.Sprintf("sybil-%d", i), false)
	}
	if declines := len(b.pending) - before; declines > declineBurstAll {
		t.Fatalf("%d declines kept from many requesters at once, want at most %d", declines, declineBurstAll)
	}
}

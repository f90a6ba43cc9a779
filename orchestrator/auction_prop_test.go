package orchestrator

import (
	"fmt"
	"testing"
	"time"

	"github.com/opendms/dms/types"
	"pgregory.net/rapid"
)

// auctionWatch checks the auction's safety properties on every batch of actions.
type auctionWatch struct {
	t         *rapid.T
	placed    int
	ended     bool                        // Placed or Failed seen
	open      map[types.AllocationID]bool // accepts sent, neither released nor placed
	sent      []types.AllocationID
	confirmed map[types.AllocationID]bool // allocations some node confirmed
	covered   map[types.AllocationID]bool // placed, or released after a confirm
}

func (w *auctionWatch) observe(acts []Action, confirmedNow types.AllocationID) {
	if confirmedNow != "" && w.isSent(confirmedNow) {
		w.confirmed[confirmedNow] = true
	}
	for _, act := range acts {
		w.observeOne(act)
	}
	if len(w.open) > 1 {
		w.t.Fatalf("%d accepts outstanding at once: %v", len(w.open), w.open)
	}
	for id := range w.confirmed {
		if !w.covered[id] {
			w.t.Fatalf("%s was confirmed but neither placed nor released", id)
		}
	}
}

func (w *auctionWatch) observeOne(act Action) {
	switch act := act.(type) {
	case SendAccept:
		if w.ended {
			w.t.Fatalf("accept after the auction ended: %v", act)
		}
		w.open[act.Accept.AllocationID] = true
		w.sent = append(w.sent, act.Accept.AllocationID)
	case Placed:
		w.placed++
		if w.placed > 1 || w.ended || !w.open[act.Confirm.AllocationID] {
			w.t.Fatalf("placement #%d of %s (ended %v, open %v)", w.placed, act.Confirm.AllocationID, w.ended, w.open)
		}
		w.ended = true
		delete(w.open, act.Confirm.AllocationID)
		w.covered[act.Confirm.AllocationID] = true
	case Release:
		delete(w.open, act.Cancel.AllocationID)
		if w.confirmed[act.Cancel.AllocationID] {
			w.covered[act.Cancel.AllocationID] = true
		}
	case Failed:
		if w.ended || len(w.open) > 0 {
			w.t.Fatalf("failure after the end, or with an accept outstanding: %v", act)
		}
		w.ended = true
	}
}

func (w *auctionWatch) isSent(id types.AllocationID) bool {
	for _, s := range w.sent {
		if s == id {
			return true
		}
	}
	return false
}

func TestAuctionNeverDoublePlacesNorLeaksALock(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := AuctionConfig{
			Enough:  rapid.IntRange(0, 4).Draw(t, "enough"),
			Exclude: rapid.SliceOfN(peerGen(), 0, 2).Draw(t, "exclude"),
			Holders: rapid.SliceOfN(peerGen(), 0, 2).Draw(t, "holders"),
		}
		a, err := NewAuction(types.BidRequest{JobID: "j1"}, cfg, DefaultRanking(), t0)
		if err != nil {
			t.Fatal(err)
		}
		w := &auctionWatch{t: t, open: map[types.AllocationID]bool{}, confirmed: map[types.AllocationID]bool{}, covered: map[types.AllocationID]bool{}}
		now := t0
		for range rapid.IntRange(1, 40).Draw(t, "events") {
			now = now.Add(time.Duration(rapid.IntRange(0, 1500).Draw(t, "dt")) * ms)
			confirmed := randomAuctionEvent(t, a, w, now)
			w.observe(a.Actions(), confirmed)
			if a.Done() != w.ended { // no aborts here: Done means Placed or Failed
				t.Fatalf("Done() = %v, but Placed or Failed seen = %v", a.Done(), w.ended)
			}
		}
	})
}

// randomAuctionEvent feeds one random event and returns the allocation it
// confirmed, if it was a confirm.
func randomAuctionEvent(t *rapid.T, a *Auction, w *auctionWatch, now time.Time) types.AllocationID {
	peer := peerGen().Draw(t, "peer")
	alloc := allocGen().Draw(t, "alloc")
	if len(w.sent) > 0 && rapid.Bool().Draw(t, "known") {
		alloc = rapid.SampledFrom(w.sent).Draw(t, "sent")
	}
	switch rapid.IntRange(0, 6).Draw(t, "kind") {
	case 0:
		b := mkBid("j1", peer, rapid.Int64Range(0, 4).Draw(t, "price"), 1, 0)
		b.Allocation = allocGen().Draw(t, "bid alloc") // empty and repeated IDs too
		a.Bid(b, now)
	case 1:
		a.Decline(types.Decline{JobID: "j1", Node: types.NodeID{PeerID: peer}, Reasons: []string{"busy"}}, now)
	case 2:
		a.Confirmed(types.Confirm{JobID: "j1", AllocationID: alloc, Epoch: 1}, now)
		return alloc
	case 3:
		a.Rejected(types.Reject{JobID: "j1", AllocationID: alloc, Reason: "no"}, now)
	case 4:
		a.Expect(rapid.SliceOfN(peerGen(), 0, 5).Draw(t, "reached"), now)
	case 5:
		a.Unanswered(alloc, "stream reset", now)
	default:
		a.Tick(now)
	}
	return ""
}

func peerGen() *rapid.Generator[string] {
	return rapid.Custom(func(t *rapid.T) string { return fmt.Sprint("p", rapid.IntRange(0, 5).Draw(t, "p")) })
}

// allocGen draws from few allocation IDs, the empty one included, so that
// bids collide.
func allocGen() *rapid.Generator[types.AllocationID] {
	return rapid.Custom(func(t *rapid.T) types.AllocationID {
		if n := rapid.IntRange(0, 6).Draw(t, "a"); n > 0 {
			return types.AllocationID(fmt.Sprint("j1-x", n))
		}
		return ""
	})
}

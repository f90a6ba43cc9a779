package orchestrator

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opendms/dms/types"
	"pgregory.net/rapid"
)

// heldBy is one input file of 1 MiB held by peer.
func heldBy(peer string) []types.InputFile {
	return []types.InputFile{{Path: "in", CID: "bafyin", Size: 1 << 20, From: []string{peer}}}
}

// noBid is a bid from peer naming no allocation: dropped, but an answer.
func noBid(peer string) event {
	return func(m machine, now time.Time) { m.Bid(mkBid("j1", peer, 1, 10, 0.5), now) }
}

// TestAuctionWaitsForHolders: with Enough bids in, the window waits up to
// HolderGrace (50 ms by default) for the holders of the inputs (here n3,
// which holds them, bidding dearer than n1 and n2), and no longer than it
// must.
func TestAuctionWaitsForHolders(t *testing.T) {
	unheard := NewReputation(nil, t0)
	unheard.Record("n3", EventSilent, t0)
	cases := []struct {
		name  string
		cfg   AuctionConfig
		steps []step
	}{{
		name: "the holder bids late, within the grace: it is ranked and wins on locality",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"n3"}},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 1)},
			{at: 40 * ms, ev: bid("n3", 3), want: []string{"accept j1-a1-n3 -> n3"}},
		},
	}, {
		name: "the holder is silent: the window closes when the grace ends",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"n3"}},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2)},
			{at: 51 * ms, ev: tick},
			{at: 52 * ms, ev: tick, want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 53 * ms, ev: bid("n3", 3), want: []string{"release the bid for j1 on n3: the bid arrived after the window closed"}},
		},
	}, {
		name: "the holder declines (busy): the window closes at once",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"n3"}},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2)},
			{at: 5 * ms, ev: decline("n3", "cpu: busy"), want: []string{"accept j1-a1-n1 -> n1"}},
		},
	}, {
		name: "the holder bid first: no grace",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"n3"}},
		steps: []step{
			{at: 1 * ms, ev: bid("n3", 3)},
			{at: 2 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n3 -> n3"}},
		},
	}, {
		name: "the holder's bid names no allocation: an answer all the same",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"n3"}},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2)},
			{at: 3 * ms, ev: noBid("n3"), want: []string{"accept j1-a1-n1 -> n1"}},
		},
	}, {
		name: "no holders: the window closes at Enough bids, as before",
		cfg:  AuctionConfig{Enough: 2},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2), want: []string{"accept j1-a1-n1 -> n1"}},
		},
	}, {
		name: "the grace never runs past the window",
		cfg:  AuctionConfig{Enough: 2, Window: 30 * ms, Holders: []string{"n3"}},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2)},
			{at: 29 * ms, ev: tick},
			{at: 30 * ms, ev: tick, want: []string{"accept j1-a1-n1 -> n1"}},
		},
	}, {
		name: "a grace set longer than the default",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"n3"}, HolderGrace: 200 * ms},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2)},
			{at: 150 * ms, ev: bid("n3", 3), want: []string{"accept j1-a1-n3 -> n3"}},
		},
	}, {
		name: "every holder is waited for, each once, and empty IDs never",
		cfg:  AuctionConfig{Enough: 1, Holders: []string{"", "n3", "n2", "n3", ""}},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n3", 3)},
			{at: 3 * ms, ev: bid("", 0)},
			{at: 4 * ms, ev: decline("n2", "busy"), want: []string{"accept j1-a1-n3 -> n3"}},
		},
	}, {
		name: "a holder the request did not reach is not waited for",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"n3", "elsewhere"}},
		steps: []step{
			{at: 0, ev: expect(4)},
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2)},
			{at: 3 * ms, ev: bid("n3", 3), want: []string{"accept j1-a1-n3 -> n3"}},
		},
	}, {
		name: "an unknown holder costs the grace while the peers reached are unknown, nothing once they are",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"elsewhere"}},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2)},
			{at: 10 * ms, ev: expect(3), want: []string{"accept j1-a1-n1 -> n1"}},
		},
	}, {
		name: "an excluded holder is not waited for",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"n3"}, Exclude: []string{"n3"}},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2), want: []string{"accept j1-a1-n1 -> n1"}},
		},
	}, {
		name: "an unheard holder is not waited for",
		cfg:  AuctionConfig{Enough: 2, Holders: []string{"n3"}, Standing: unheard},
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: bid("n2", 2), want: []string{"accept j1-a1-n1 -> n1"}},
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := NewAuction(types.BidRequest{JobID: "j1", Executor: "wasm"}, c.cfg, withLocality(heldBy("n3"), DefaultLocalityWeight), t0)
			if err != nil {
				t.Fatal(err)
			}
			run(t, a, c.steps)
		})
	}
}

// TestHolderGraceDeadline: the grace is the auction's next deadline, and
// a window that closes at its end observes nobody silent: the peers it did
// not hear from were only slower than the grace.
func TestHolderGraceDeadline(t *testing.T) {
	a := newTestAuction(t, AuctionConfig{Enough: 2, Holders: []string{"n3"}})
	a.Expect(nodes(4), t0)
	if d, _ := a.NextDeadline(); !d.Equal(t0.Add(defaultWindow)) {
		t.Fatalf("deadline %s before Enough bids, want the window's", d.Sub(t0))
	}
	bid("n1", 1)(a, t0.Add(1*ms))
	bid("n2", 1)(a, t0.Add(2*ms))
	if d, _ := a.NextDeadline(); !d.Equal(t0.Add(52 * ms)) {
		t.Fatalf("deadline %s with the holder awaited, want 52ms", d.Sub(t0))
	}
	a.Tick(t0.Add(52 * ms))
	for _, act := range a.Actions() {
		if o, ok := act.(Observe); ok {
			t.Fatalf("a close at the grace's end observed %v", o)
		}
	}
	if a.phase != accepting {
		t.Fatalf("phase %v at the grace's end", a.phase)
	}
}

// TestJobWaitsForTheHolderOnlyWithLocality: a job fills Holders from its
// input files' From when its ranking prefers them, and not when locality
// is off: then the window closes at Enough bids, as before.
func TestJobWaitsForTheHolderOnlyWithLocality(t *testing.T) {
	spec := testSpecWith(func(s *JobSpec) {
		s.EnoughBids = 2
		s.Task.Files = append(heldBy("n3"), types.InputFile{Path: "in2", CID: "bafyin2", Size: 10, From: []string{"n3", "", "n4"}})
	})
	for _, c := range []struct {
		name   string
		weight float64
		want   []string // at n3's bid, 40 ms in
	}{
		{"locality on", 0, []string{"accept j1-a1-n3 -> n3"}},
		{"locality off", NoLocality, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			j, err := NewJob(spec, JobConfig{Requester: "me", LocalityWeight: c.weight}, t0)
			if err != nil {
				t.Fatal(err)
			}
			steps := []step{
				{at: 0, ev: start, want: []string{"publish j1"}},
				{at: 1 * ms, ev: bid("n1", 1)},
				{at: 2 * ms, ev: bid("n2", 1)},
				{at: 3 * ms, ev: decline("n4", "busy")},
				{at: 40 * ms, ev: bid("n3", 3), want: c.want},
			}
			if c.weight == NoLocality {
				steps[2].want = []string{"accept j1-a1-n1 -> n1"}
				steps[4].want = []string{"release the bid for j1 on n3: the bid arrived after the window closed"}
			}
			run(t, j, steps)
		})
	}
}

func TestNegativeHolderGraceIsRejected(t *testing.T) {
	if _, err := NewAuction(types.BidRequest{JobID: "j"}, AuctionConfig{HolderGrace: -1}, DefaultRanking(), t0); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
}

// TestHolderGraceIsBounded: whatever the holders (duplicates, empty IDs,
// peers that never answer) and whatever arrives when, once Enough bids
// are in the window closes within HolderGrace, never past its own close;
// and without holders it closes the moment they are in.
func TestHolderGraceIsBounded(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		grace := time.Duration(rapid.IntRange(0, 100).Draw(t, "grace")) * ms
		cfg := AuctionConfig{
			Window:      time.Duration(rapid.IntRange(1, 300).Draw(t, "window")) * ms,
			Enough:      rapid.IntRange(1, 4).Draw(t, "enough"),
			Holders:     rapid.SliceOfN(rapid.SampledFrom([]string{"", "p0", "p1", "p2", "p9"}), 0, 4).Draw(t, "holders"),
			HolderGrace: grace,
		}
		a, err := NewAuction(types.BidRequest{JobID: "j1"}, cfg, withLocality(heldBy("p0"), DefaultLocalityWeight), t0)
		if err != nil {
			t.Fatal(err)
		}
		if grace == 0 {
			grace = defaultHolderGrace
		}
		now, enoughAt := t0, time.Time{}
		for i := range rapid.IntRange(1, 12).Draw(t, "events") {
			now = now.Add(time.Duration(rapid.IntRange(0, 40).Draw(t, "dt")) * ms)
			peer := peerGen().Draw(t, "peer")
			switch rapid.IntRange(0, 3).Draw(t, "kind") {
			case 0, 1:
				b := mkBid("j1", peer, 1, 10, 0.5)
				b.Allocation = types.AllocationID(peer + "-" + string(rune('a'+i)))
				a.Bid(b, now)
			case 2:
				a.Decline(types.Decline{JobID: "j1", Node: types.NodeID{PeerID: peer}}, now)
			default:
				a.Tick(now)
			}
			if a.phase != collecting {
				return
			}
			if enoughAt.IsZero() && len(a.bids) >= cfg.Enough {
				enoughAt = now
			}
			d, _ := a.NextDeadline()
			if d.After(t0.Add(cfg.Window)) {
				t.Fatalf("next deadline %s, past the window %s", d.Sub(t0), cfg.Window)
			}
			if enoughAt.IsZero() {
				continue
			}
			if len(slices.DeleteFunc(slices.Clone(cfg.Holders), func(p string) bool { return p == "" })) == 0 {
				t.Fatalf("no holders, %d bids in (Enough %d), and the window is open", len(a.bids), cfg.Enough)
			}
			if d.After(enoughAt.Add(grace)) {
				t.Fatalf("next deadline %s, over the grace %s after Enough bids at %s", d.Sub(t0), grace, enoughAt.Sub(t0))
			}
		}
	})
}

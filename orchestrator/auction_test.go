package orchestrator

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

const mem900TiB = "memory: need 900 TiB, offered 8 GiB"

// expect tells the auction that its request reached n1..nn.
func expect(n int) event {
	return func(m machine, now time.Time) { m.(*Auction).Expect(nodes(n), now) }
}

// nodes names n1..nn.
func nodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint("n", i+1)
	}
	return out
}

func TestAuctionScenarios(t *testing.T) {
	cases := []struct {
		name  string
		cfg   AuctionConfig
		steps []step
	}{{
		name: "three bids close the window at once; the cheapest wins and confirms",
		steps: []step{
			{at: 0, ev: bid("n1", 3)},
			{at: 5 * ms, ev: bid("n2", 1)},
			{at: 9 * ms, ev: bid("n3", 2), want: []string{"accept j1-a1-n2 -> n2"}},
			{at: 20 * ms, ev: confirm("j1-a1-n2", 7), want: []string{"placed j1-a1-n2 on n2 epoch 7", "release the bid for j1 on n1: placed on another node", "release the bid for j1 on n3: placed on another node"}},
			{at: 3 * time.Second, ev: tick},
		},
	}, {
		name: "the window deadline closes it with a single bid",
		steps: []step{
			{at: 100 * ms, ev: bid("n1", 1)},
			{at: 1999 * ms, ev: tick},
			{at: 2 * time.Second, ev: tick, want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2010 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"placed j1-a1-n1 on n1"}},
		},
	}, {
		name: "nobody bids and every node declines: the reasons are summed",
		steps: []step{
			{at: 0, ev: expect(5)},
			{at: 1 * ms, ev: decline("n1", mem900TiB)},
			{at: 2 * ms, ev: decline("n2", mem900TiB)},
			{at: 3 * ms, ev: decline("n3", mem900TiB)},
			{at: 4 * ms, ev: decline("n4", mem900TiB)},
			{at: 5 * ms, ev: decline("n5", mem900TiB), want: []string{
				"failed: no node bid: 5 nodes declined: memory: need 900 TiB, offered 8 GiB (5 nodes)"}},
		},
	}, {
		name: "declines are grouped, most common first, and silence is counted",
		steps: []step{
			{at: 0, ev: expect(5)},
			{at: 1 * ms, ev: decline("n1", "cpu: need 64 cores, offered 8 cores")},
			{at: 2 * ms, ev: decline("n2", mem900TiB, "executor docker not installed")},
			{at: 3 * ms, ev: decline("n3", mem900TiB)},
			{at: 2 * time.Second, ev: tick, want: []string{"failed: no node bid within 2s: 3 nodes declined: " +
				mem900TiB + " (2 nodes); cpu: need 64 cores, offered 8 cores (1 node); executor docker not installed (1 node); " +
				"2 nodes did not answer"}},
		},
	}, {
		name: "nobody answers",
		steps: []step{
			{at: 2 * time.Second, ev: tick, want: []string{"failed: no node bid within 2s: no node answered"}},
		},
	}, {
		name: "every bid is over the max price",
		steps: []step{
			{at: 0, ev: bid("n1", 9)},
			{at: 2 * time.Second, ev: tick, want: []string{
				"failed: no acceptable bid within 2s: 1 bid priced above 5 or malformed"}},
		},
	}, {
		name: "all expected nodes answered before Enough: close early",
		steps: []step{
			{at: 0, ev: expect(2)},
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: decline("n2", "busy"), want: []string{"accept j1-a1-n1 -> n1"}},
		},
	}, {
		name: "the expected count can arrive after the answers",
		steps: []step{
			{at: 1 * ms, ev: bid("n1", 1)},
			{at: 2 * ms, ev: expect(1), want: []string{"accept j1-a1-n1 -> n1"}},
		},
	}, {
		name: "a reject moves to the next candidate",
		cfg:  AuctionConfig{Enough: 2},
		steps: []step{
			{at: 0, ev: bid("n1", 1)},
			{at: 1 * ms, ev: bid("n2", 2), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2 * ms, ev: reject("j1-a1-n1", "capability changed"), want: []string{
				"release j1-a1-n1 on n1: n1 rejected: capability changed", "accept j1-a1-n2 -> n2"}},
			{at: 3 * ms, ev: confirm("j1-a1-n2", 4), want: []string{"placed j1-a1-n2 on n2 epoch 4"}},
		},
	}, {
		name: "a confirm timeout moves on, and the late confirm is released",
		cfg:  AuctionConfig{Enough: 2},
		steps: []step{
			{at: 0, ev: bid("n1", 1)},
			{at: 1 * ms, ev: bid("n2", 2), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2000 * ms, ev: tick},
			{at: 2001 * ms, ev: tick, want: []string{
				"release j1-a1-n1 on n1: n1 did not confirm within 2s", "accept j1-a1-n2 -> n2"}},
			{at: 2100 * ms, ev: confirm("j1-a1-n1", 3), want: []string{"release j1-a1-n1 on n1: confirmed too late"}},
			{at: 2101 * ms, ev: confirm("j1-a1-n1", 3)},
			{at: 2200 * ms, ev: confirm("j1-a1-n2", 5), want: []string{"placed j1-a1-n2 on n2 epoch 5"}},
			{at: 2300 * ms, ev: confirm("j1-a1-n2", 5)},
		},
	}, {
		name: "a confirm after the deadline, before the tick, is late too",
		cfg:  AuctionConfig{Enough: 1},
		steps: []step{
			{at: 0, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2500 * ms, ev: confirm("j1-a1-n1", 1), want: []string{
				"release j1-a1-n1 on n1: n1 did not confirm", "failed: none of 1 bidder confirmed: n1 did not confirm within 2s",
				"release j1-a1-n1 on n1: confirmed too late"}},
		},
	}, {
		name: "every candidate fails",
		cfg:  AuctionConfig{Enough: 2},
		steps: []step{
			{at: 0, ev: bid("n1", 1)},
			{at: 0, ev: bid("n2", 2), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 1 * ms, ev: reject("j1-a1-n1", ""), want: []string{"release j1-a1-n1", "accept j1-a1-n2 -> n2"}},
			{at: 2001 * ms, ev: tick, want: []string{"release j1-a1-n2", "failed: none of 2 bidders confirmed: " +
				"n1 rejected: no reason given; n2 did not confirm within 2s"}},
		},
	}, {
		name: "wrong job, duplicates and unknown allocations are ignored; a bid after the close is released",
		cfg:  AuctionConfig{Enough: 2},
		steps: []step{
			{at: 0, ev: func(m machine, now time.Time) { m.Bid(mkBid("other", "n9", 0, 10, 0), now) }},
			{at: 0, ev: bid("n1", 1)},
			{at: 0, ev: bid("n1", 0)},
			{at: 0, ev: decline("n1", "changed my mind")},
			{at: 0, ev: bid("", 0)},
			{at: 1 * ms, ev: bid("n2", 2), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2 * ms, ev: bid("n3", 0), want: []string{"release the bid for j1 on n3: the bid arrived after the window closed"}},
			{at: 2 * ms, ev: bid("n3", 0)},
			{at: 3 * ms, ev: confirm("j1-a1-n7", 1)},
			{at: 4 * ms, ev: reject("j1-a1-n7", "no")},
			{at: 5 * ms, ev: func(m machine, now time.Time) {
				m.Confirmed(types.Confirm{JobID: "other", AllocationID: "j1-a1-n1"}, now)
			}},
			{at: 6 * ms, ev: confirm("j1-a1-n1", 2), want: []string{"placed j1-a1-n1 on n1 epoch 2", "release the bid for j1 on n2: placed on another node"}},
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := types.BidRequest{JobID: "j1", Executor: "wasm", Constraints: types.Constraints{MaxPrice: 5 * types.Credit}}
			a, err := NewAuction(req, c.cfg, DefaultRanking(), t0)
			if err != nil {
				t.Fatal(err)
			}
			run(t, a, c.steps)
		})
	}
}

func TestAuctionRequestDeadlineClosesEarly(t *testing.T) {
	req := types.BidRequest{JobID: "j1", Deadline: t0.Add(500 * ms)}
	a, err := NewAuction(req, AuctionConfig{}, DefaultRanking(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := a.NextDeadline(); !ok || !d.Equal(req.Deadline) {
		t.Fatalf("NextDeadline = %s, %v; want the request's deadline", d, ok)
	}
	run(t, a, []step{
		{at: 100 * ms, ev: bid("n1", 1)},
		{at: 500 * ms, ev: tick, want: []string{"accept j1-a1-n1 -> n1"}},
	})
	if d, _ := a.NextDeadline(); !d.Equal(t0.Add(2500 * ms)) {
		t.Fatalf("confirm deadline %s", d)
	}
	run(t, a, []step{{at: 600 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"placed"}}})
	if _, ok := a.NextDeadline(); ok || !a.Done() {
		t.Fatal("a placed auction still has a deadline or is not done")
	}
}

func TestAuctionAcceptNamesTheBidsAllocation(t *testing.T) {
	a := newTestAuction(t, AuctionConfig{Enough: 1})
	b := mkBid("j1", "n1", 1, 1, 0)
	b.Allocation = "j1-7f3a9c"
	a.Bid(b, t0)
	acts := a.Actions()
	if len(acts) != 1 || acts[0].(SendAccept).Accept.AllocationID != "j1-7f3a9c" {
		t.Fatalf("actions %v", acts)
	}
	if acts[0].(SendAccept).Accept.Resources != (types.Resources{CPU: 1000, Memory: 64 << 20}) {
		t.Fatalf("accept does not carry the request's resources: %+v", acts[0])
	}
}

func TestAuctionDeclineSummaryIsBounded(t *testing.T) {
	a := newTestAuction(t, AuctionConfig{})
	a.Expect(nodes(8), t0)
	for i := range 8 {
		a.Decline(types.Decline{JobID: "j1", Node: types.NodeID{PeerID: fmt.Sprint("n", i+1)}, Reasons: []string{fmt.Sprint("reason ", i)}}, t0)
	}
	acts := a.Actions()
	want := "failed: no node bid: 8 nodes declined: reason 0 (1 node); reason 1 (1 node); reason 2 (1 node); " +
		"reason 3 (1 node); reason 4 (1 node); and 3 other reasons"
	if len(acts) != 1 || acts[0].String() != want {
		t.Fatalf("actions %v", acts)
	}
}

func TestNewAuctionRejectsBadInput(t *testing.T) {
	for name, c := range map[string]struct {
		req  types.BidRequest
		cfg  AuctionConfig
		want error
	}{
		"no job":          {types.BidRequest{}, AuctionConfig{}, ErrInvalidSpec},
		"negative window": {types.BidRequest{JobID: "j"}, AuctionConfig{Window: -1}, ErrInvalidConfig},
		"negative enough": {types.BidRequest{JobID: "j"}, AuctionConfig{Enough: -1}, ErrInvalidConfig},
	} {
		if _, err := NewAuction(c.req, c.cfg, DefaultRanking(), t0); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
}

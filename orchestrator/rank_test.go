package orchestrator

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/opendms/dms/types"
	"pgregory.net/rapid"
)

func peers(bids []types.Bid) []string {
	out := make([]string, len(bids))
	for i, b := range bids {
		out[i] = b.Node.PeerID
	}
	return out
}

func TestRankCheaperWinsWhenEqualOtherwise(t *testing.T) {
	got := DefaultRanking().Rank([]types.Bid{
		mkBid("j", "a", 3, 10, 0.2), mkBid("j", "b", 1, 10, 0.2), mkBid("j", "c", 2, 10, 0.2),
	})
	if want := []string{"b", "c", "a"}; !slices.Equal(peers(got), want) {
		t.Fatalf("order %v, want %v", peers(got), want)
	}
}

func TestRankEachCriterion(t *testing.T) {
	cases := map[string][]types.Bid{ // the bid from peer "x" must rank first
		"higher capability score": {mkBid("j", "y", 1, 10, 0.5), mkBid("j", "x", 1, 20, 0.5)},
		"higher load (binpack)":   {mkBid("j", "y", 1, 10, 0.1), mkBid("j", "x", 1, 10, 0.9)},
		"tie broken by peer id":   {mkBid("j", "y", 1, 10, 0.5), mkBid("j", "x", 1, 10, 0.5)},
		"price outweighs load":    {mkBid("j", "y", 4, 10, 0.9), mkBid("j", "x", 1, 10, 0.1)},
	}
	for name, bids := range cases {
		if got := DefaultRanking().Rank(bids); got[0].Node.PeerID != "x" {
			t.Errorf("%s: order %v", name, peers(got))
		}
	}
	spread := map[string][]types.Bid{
		"lower load (spread)":  {mkBid("j", "y", 1, 10, 0.9), mkBid("j", "x", 1, 10, 0.1)},
		"price outweighs load": {mkBid("j", "y", 4, 10, 0.1), mkBid("j", "x", 1, 10, 0.9)},
	}
	for name, bids := range spread {
		if got := SpreadRanking().Rank(bids); got[0].Node.PeerID != "x" {
			t.Errorf("%s: order %v", name, peers(got))
		}
	}
}

func TestRankFilters(t *testing.T) {
	r := DefaultRanking()
	r.MaxPrice = 5 * types.Credit
	overByMicro := mkBid("j", "g", 5, 10, 0)
	overByMicro.Price += types.MicroCredit
	in := []types.Bid{
		mkBid("j", "a", 6, 10, 0),   // over max price
		mkBid("j", "b", 1, 10, 0),   // kept
		mkBid("j", "b", 0, 99, 0),   // duplicate peer: the first bid stands
		mkBid("j", "", 1, 10, 0),    // no peer
		mkBid("j", "c", -1, 10, 0),  // negative price
		mkBid("j", "d", 1, -1, 0),   // negative score
		mkBid("j", "e", 1, 10, 1.5), // load out of range
		mkBid("j", "f", 5, 10, 0),   // at max price: kept
		overByMicro,                 // one micro-credit over max price
	}
	got := r.Rank(in)
	if want := []string{"b", "f"}; !slices.Equal(peers(got), want) || got[0].Price != types.Credit {
		t.Fatalf("kept %v (first price %v), want %v", peers(got), got[0].Price, want)
	}
}

func TestRankValidate(t *testing.T) {
	for _, r := range []Ranking{
		{MaxPrice: -1},
		{Scorers: []WeightedScorer{{Scorer: nil, Weight: 1}}},
		{Scorers: []WeightedScorer{{Scorer: PriceScorer{}, Weight: math.NaN()}}},
		{Scorers: []WeightedScorer{{Scorer: PriceScorer{}, Weight: -1}}},
	} {
		if _, err := NewAuction(types.BidRequest{JobID: "j"}, AuctionConfig{}, r, t0); err == nil {
			t.Errorf("ranking %+v accepted", r)
		}
	}
}

// naiveRank is the ranking spelled out with loops and an insertion sort.
func naiveRank(r Ranking, bids []types.Bid) []types.Bid {
	var cands []types.Bid
	for _, b := range bids {
		dup := false
		for _, c := range cands {
			dup = dup || c.Node.PeerID == b.Node.PeerID
		}
		ok := b.Node.PeerID != "" && b.Price >= 0 && b.Score >= 0 && b.Load >= 0 && b.Load <= 1 &&
			!math.IsInf(b.Score, 1)
		if ok && !dup && (r.MaxPrice == 0 || b.Price <= r.MaxPrice) {
			cands = append(cands, b)
		}
	}
	total := make([]float64, len(cands))
	for _, ws := range r.Scorers {
		for i, s := range ws.Scorer.Score(cands) {
			total[i] += ws.Weight * s
		}
	}
	type scored struct {
		b types.Bid
		t float64
	}
	var out []scored
	for i, b := range cands {
		k := len(out)
		for k > 0 && (out[k-1].t < total[i] || (out[k-1].t == total[i] && out[k-1].b.Node.PeerID > b.Node.PeerID)) {
			k--
		}
		out = slices.Insert(out, k, scored{b, total[i]})
	}
	res := make([]types.Bid, len(out))
	for i, s := range out {
		res[i] = s.b
	}
	return res
}

func genBid() *rapid.Generator[types.Bid] {
	return rapid.Custom(func(t *rapid.T) types.Bid {
		return types.Bid{
			JobID: "j",
			Node:  types.NodeID{PeerID: fmt.Sprintf("p%d", rapid.IntRange(0, 8).Draw(t, "peer"))},
			Price: types.Credits(rapid.IntRange(-1, 10).Draw(t, "price")) * types.Credit / 2,
			Score: float64(rapid.IntRange(0, 5).Draw(t, "score")),
			Load:  float64(rapid.IntRange(0, 12).Draw(t, "load")) / 10,
		}
	})
}

func TestRankMatchesNaive(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		bids := rapid.SliceOf(genBid()).Draw(t, "bids")
		r := DefaultRanking()
		r.MaxPrice = types.Credits(rapid.IntRange(0, 5).Draw(t, "max")) * types.Credit
		got, want := r.Rank(bids), naiveRank(r, bids)
		if !slices.EqualFunc(got, want, func(a, b types.Bid) bool { return a.Node.PeerID == b.Node.PeerID && a.Price == b.Price }) {
			t.Fatalf("Rank %v, naive %v", peers(got), peers(want))
		}
	})
}

func TestRankIgnoresArrivalOrderAndRewardsCheaper(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		bids := rapid.SliceOfNDistinct(genBid(), 1, 9, func(b types.Bid) string { return b.Node.PeerID }).Draw(t, "bids")
		r := DefaultRanking()
		shuffled := rapid.Permutation(bids).Draw(t, "shuffled")
		if a, b := peers(r.Rank(bids)), peers(r.Rank(shuffled)); !slices.Equal(a, b) {
			t.Fatalf("order depends on arrival: %v vs %v", a, b)
		}
		// Making one valid bid cheaper never moves it down.
		before := r.Rank(bids)
		if len(before) == 0 {
			return
		}
		i := rapid.IntRange(0, len(before)-1).Draw(t, "which")
		cheaper := slices.Clone(before)
		cheaper[i].Price = 0
		after := r.Rank(cheaper)
		pos := func(list []types.Bid) int {
			return slices.IndexFunc(list, func(b types.Bid) bool { return b.Node.PeerID == before[i].Node.PeerID })
		}
		if pos(after) > pos(before) {
			t.Fatalf("cheaper bid moved from %d to %d", pos(before), pos(after))
		}
	})
}

// fixedScorer rates bids by a table, to test clamping and contract checks.
type fixedScorer []float64

func (fixedScorer) Name() string                       { return "fixed" }
func (f fixedScorer) Score(bids []types.Bid) []float64 { return f[:min(len(f), len(bids))] }

func TestRankClampsCustomScores(t *testing.T) {
	r := Ranking{Scorers: []WeightedScorer{{Scorer: fixedScorer{math.NaN(), 7, -3}, Weight: 1}}}
	got := r.Rank([]types.Bid{mkBid("j", "a", 1, 1, 0), mkBid("j", "b", 1, 1, 0), mkBid("j", "c", 1, 1, 0)})
	if want := []string{"b", "a", "c"}; !slices.Equal(peers(got), want) {
		t.Fatalf("order %v, want %v (NaN and -3 count as 0, 7 as 1)", peers(got), want)
	}
}

func TestRankPanicsOnABrokenScorer(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a scorer returning too few scores went unnoticed")
		}
	}()
	r := Ranking{Scorers: []WeightedScorer{{Scorer: fixedScorer{1}, Weight: 1}}}
	r.Rank([]types.Bid{mkBid("j", "a", 1, 1, 0), mkBid("j", "b", 1, 1, 0)})
}

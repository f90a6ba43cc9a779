package orchestrator

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/opendms/dms/types"
)

// Scorer rates the candidate bids of one auction relative to each other.
// Score returns one value per bid, in the same order, from 0 (worst) to 1
// (best); values outside that range are clamped and NaN counts as 0. It must
// not modify bids.
type Scorer interface {
	Name() string
	Score(bids []types.Bid) []float64
}

// WeightedScorer is one stage of a Ranking. Weight must be finite and not
// negative; a zero weight disables the stage.
type WeightedScorer struct {
	Scorer Scorer
	Weight float64
}

// Ranking orders the bids of one auction, as a pipeline in the manner of
// Nomad's rank iterators: filters drop the bids that may not win, then each
// scorer rates the survivors and the weighted sum decides.
//
// The filters, cheapest first: a malformed bid (no peer ID; price
// negative; capability score negative or not finite; load outside 0..1)
// is dropped, then a bid priced above MaxPrice (compared exactly, to the
// micro-credit), then any later bid from a peer that already bid (the
// first one stands).
type Ranking struct {
	MaxPrice types.Credits // per core-hour; 0 means no limit
	Scorers  []WeightedScorer
}

// DefaultRanking is BinpackRanking.
func DefaultRanking() Ranking { return BinpackRanking() }

// BinpackRanking weighs price and capability score equally and packing
// (PackScorer) half as much: load changes by the minute, price and
// capability do not. Packing keeps whole nodes free for large jobs, as a
// central scheduler's best fit does (Nomad's default, binpack, for the same
// reason): spreading small jobs over every node leaves none with room for
// a large one, which then waits (docs/benchmarks.md, placement).
func BinpackRanking() Ranking {
	return Ranking{Scorers: []WeightedScorer{
		{Scorer: PriceScorer{}, Weight: 1},
		{Scorer: CapabilityScorer{}, Weight: 1},
		{Scorer: PackScorer{}, Weight: 0.5},
	}}
}

// SpreadRanking is BinpackRanking that prefers the least loaded bidder
// (LoadScorer) instead: jobs spread over the nodes, each node's own
// contention (a host whose owner uses it too) is least, and a large job
// may find no node with room while the network is busy.
func SpreadRanking() Ranking {
	return Ranking{Scorers: []WeightedScorer{
		{Scorer: PriceScorer{}, Weight: 1},
		{Scorer: CapabilityScorer{}, Weight: 1},
		{Scorer: LoadScorer{}, Weight: 0.5},
	}}
}

func (r Ranking) validate() error {
	if r.MaxPrice < 0 {
		return fmt.Errorf("%w: ranking max price %s", ErrInvalidConfig, r.MaxPrice)
	}
	for i, ws := range r.Scorers {
		if ws.Scorer == nil {
			return fmt.Errorf("%w: ranking stage %d has no scorer", ErrInvalidConfig, i)
		}
		if !finiteNonNegative(ws.Weight) {
			return fmt.Errorf("%w: scorer %s has weight %v", ErrInvalidConfig, ws.Scorer.Name(), ws.Weight)
		}
	}
	return nil
}

// Rank returns the bids that pass the filters, best first. The order is
// deterministic: equal totals are broken by PeerID, so it does not depend on
// the order the bids arrived in (except which of a peer's duplicates stands).
// bids is not modified. Rank panics if a Scorer breaks its contract by
// returning the wrong number of values.
func (r Ranking) Rank(bids []types.Bid) []types.Bid {
	cands := r.filter(bids)
	total := r.totals(cands)
	order := make([]int, len(cands))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(total[b], total[a]); c != 0 {
			return c
		}
		return cmp.Compare(cands[a].Node.PeerID, cands[b].Node.PeerID)
	})
	out := make([]types.Bid, len(cands))
	for i, k := range order {
		out[i] = cands[k]
	}
	return out
}

// totals is the weighted sum of every scorer's rating of each candidate.
func (r Ranking) totals(cands []types.Bid) []float64 {
	total := make([]float64, len(cands))
	for _, ws := range r.Scorers {
		if ws.Weight == 0 {
			continue
		}
		s := ws.Scorer.Score(cands)
		if len(s) != len(cands) {
			panic(fmt.Sprintf("orchestrator: scorer %s returned %d scores for %d bids", ws.Scorer.Name(), len(s), len(cands)))
		}
		for i, v := range s {
			total[i] += ws.Weight * clamp01(v)
		}
	}
	return total
}

func (r Ranking) filter(bids []types.Bid) []types.Bid {
	seen := make(map[string]bool, len(bids))
	out := make([]types.Bid, 0, len(bids))
	for _, b := range bids {
		if !wellFormed(b) || (r.MaxPrice > 0 && b.Price > r.MaxPrice) || seen[b.Node.PeerID] {
			continue
		}
		seen[b.Node.PeerID] = true
		out = append(out, b)
	}
	return out
}

func wellFormed(b types.Bid) bool {
	return b.Node.PeerID != "" && b.Price >= 0 && finiteNonNegative(b.Score) &&
		b.Load >= 0 && b.Load <= 1
}

// PriceScorer prefers cheaper bids. Prices are exact (types.Credits); the
// scores, relative to the cheapest and dearest bid, need not be.
type PriceScorer struct{}

// Name implements Scorer.
func (PriceScorer) Name() string { return "price" }

// Score implements Scorer.
func (PriceScorer) Score(bids []types.Bid) []float64 {
	return normalize(bids, func(b types.Bid) float64 { return float64(b.Price) }, false)
}

// CapabilityScorer prefers bids with a higher capability score (Bid.Score).
type CapabilityScorer struct{}

// Name implements Scorer.
func (CapabilityScorer) Name() string { return "capability" }

// Score implements Scorer.
func (CapabilityScorer) Score(bids []types.Bid) []float64 {
	return normalize(bids, func(b types.Bid) float64 { return b.Score }, true)
}

// LocalityScorer prefers the bidders that already hold a task's input
// files (types.Task.Files): a bid scores the share of the input bytes that
// name its node in From, a file of unknown size (0) counting as one byte.
// Unlike the other scorers it is absolute, not relative to the other bids:
// when no bidder holds anything, every bid scores 0. A job with input
// files adds one to its Ranking (Job.ranking); the zero value scores 0.
type LocalityScorer struct {
	held  map[string]float64 // bytes held, by PeerID
	total float64
}

// NewLocalityScorer rates bids against files.
func NewLocalityScorer(files []types.InputFile) LocalityScorer {
	s := LocalityScorer{held: make(map[string]float64)}
	for _, f := range files {
		size := float64(max(f.Size, 1))
		s.total += size
		for i, p := range f.From {
			if !slices.Contains(f.From[:i], p) { // a peer named twice holds the file once
				s.held[p] += size
			}
		}
	}
	return s
}

// Holders lists the peers that hold some of the files, sorted.
func (s LocalityScorer) Holders() []string {
	return slices.Sorted(maps.Keys(s.held))
}

// Name implements Scorer.
func (LocalityScorer) Name() string { return "locality" }

// Score implements Scorer.
func (s LocalityScorer) Score(bids []types.Bid) []float64 {
	out := make([]float64, len(bids))
	if s.total == 0 {
		return out
	}
	for i, b := range bids {
		out[i] = s.held[b.Node.PeerID] / s.total
	}
	return out
}

// LoadScorer prefers less loaded nodes (Bid.Load).
type LoadScorer struct{}

// Name implements Scorer.
func (LoadScorer) Name() string { return "load" }

// Score implements Scorer.
func (LoadScorer) Score(bids []types.Bid) []float64 {
	return normalize(bids, func(b types.Bid) float64 { return b.Load }, false)
}

// PackScorer prefers more loaded nodes (Bid.Load): the fullest node that
// bid, that is the best fit, goes first.
type PackScorer struct{}

// Name implements Scorer.
func (PackScorer) Name() string { return "pack" }

// Score implements Scorer.
func (PackScorer) Score(bids []types.Bid) []float64 {
	return normalize(bids, func(b types.Bid) float64 { return b.Load }, true)
}

// normalize maps each bid's value linearly onto 0..1 across the set: the
// best value scores 1, the worst 0. When all values are equal, all score 1.
func normalize(bids []types.Bid, value func(types.Bid) float64, higherBetter bool) []float64 {
	out := make([]float64, len(bids))
	if len(bids) == 0 {
		return out
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, b := range bids {
		lo, hi = min(lo, value(b)), max(hi, value(b))
	}
	for i, b := range bids {
		switch v := value(b); {
		case hi == lo:
			out[i] = 1
		case higherBetter:
			out[i] = (v - lo) / (hi - lo)
		default:
			out[i] = (hi - v) / (hi - lo)
		}
	}
	return out
}

func clamp01(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return min(v, 1)
}

func finiteNonNegative(v float64) bool { return v >= 0 && !math.IsInf(v, 1) }

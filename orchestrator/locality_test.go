package orchestrator

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/opendms/dms/types"
	"pgregory.net/rapid"
)

func TestLocalityScorer(t *testing.T) {
	s := NewLocalityScorer([]types.InputFile{
		{Path: "a", CID: "c1", Size: 600, From: []string{"x", "y"}},
		{Path: "b", CID: "c2", Size: 300, From: []string{"y", "y"}}, // named twice: held once
		{Path: "c", CID: "c3", Size: 98},                            // nobody named
		{Path: "d", CID: "c4", From: []string{"z"}},                 // size unknown: 1 byte
		{Path: "e", CID: "c5", From: []string{"z"}},
	})
	bids := []types.Bid{mkBid("j", "x", 1, 1, 0), mkBid("j", "y", 1, 1, 0), mkBid("j", "z", 1, 1, 0), mkBid("j", "w", 1, 1, 0)}
	want := []float64{0.6, 0.9, 0.002, 0}
	got := s.Score(bids)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Fatalf("scores %v, want %v", got, want)
		}
	}
	if got := (LocalityScorer{}).Score(bids); !slices.Equal(got, make([]float64, 4)) {
		t.Fatalf("the zero scorer gave %v", got)
	}
	if got := NewLocalityScorer(nil).Score(bids); !slices.Equal(got, make([]float64, 4)) {
		t.Fatalf("no files gave %v", got)
	}
}

// withLocality is DefaultRanking with a locality stage of weight w.
func withLocality(files []types.InputFile, w float64) Ranking {
	r := DefaultRanking()
	r.Scorers = append(r.Scorers, WeightedScorer{Scorer: NewLocalityScorer(files), Weight: w})
	return r
}

func TestRankHolderWins(t *testing.T) {
	files := []types.InputFile{{Path: "in", CID: "c", Size: 1 << 20, From: []string{"y"}}}
	cases := []struct {
		name string
		bids []types.Bid
		want string // first, with locality at the default weight
	}{
		{"otherwise equal", []types.Bid{mkBid("j", "x", 1, 10, 0.5), mkBid("j", "y", 1, 10, 0.5)}, "y"},
		{"the holder dearer", []types.Bid{mkBid("j", "x", 1, 10, 0.5), mkBid("j", "y", 3, 10, 0.5)}, "y"},
		{"the holder dearer and emptier", []types.Bid{mkBid("j", "x", 1, 10, 0.9), mkBid("j", "y", 3, 10, 0.1)}, "y"},
		{"the holder worse in everything", []types.Bid{mkBid("j", "x", 1, 20, 0.9), mkBid("j", "y", 3, 10, 0.1)}, "x"},
	}
	for _, c := range cases {
		if got := withLocality(files, DefaultLocalityWeight).Rank(c.bids); got[0].Node.PeerID != c.want {
			t.Errorf("%s: order %v, want %s first", c.name, peers(got), c.want)
		}
		if got := DefaultRanking().Rank(c.bids); got[0].Node.PeerID != "x" {
			t.Errorf("%s without locality: order %v", c.name, peers(got))
		}
	}
}

// genFiles draws input files held by peers p0..p8.
func genFiles() *rapid.Generator[[]types.InputFile] {
	return rapid.SliceOfN(rapid.Custom(func(t *rapid.T) types.InputFile {
		from := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) string {
			return fmt.Sprintf("p%d", rapid.IntRange(0, 8).Draw(t, "peer"))
		}), 0, 3).Draw(t, "from")
		return types.InputFile{Size: rapid.Int64Range(0, 1<<30).Draw(t, "size"), From: from}
	}), 0, 20)
}

// naiveLocality is the share of the input bytes peer holds, spelled out.
func naiveLocality(files []types.InputFile, peer string) float64 {
	var held, total float64
	for _, f := range files {
		size := float64(f.Size)
		if size == 0 {
			size = 1
		}
		total += size
		if slices.Contains(f.From, peer) {
			held += size
		}
	}
	if total == 0 {
		return 0
	}
	return held / total
}

func TestLocalityMatchesNaive(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		files := genFiles().Draw(t, "files")
		bids := rapid.SliceOf(genBid()).Draw(t, "bids")
		got := NewLocalityScorer(files).Score(bids)
		for i, b := range bids {
			if want := naiveLocality(files, b.Node.PeerID); math.Abs(got[i]-want) > 1e-9 || got[i] < 0 || got[i] > 1+1e-9 {
				t.Fatalf("bid of %s scored %v, want %v", b.Node.PeerID, got[i], want)
			}
		}
		r := withLocality(files, float64(rapid.IntRange(0, 4).Draw(t, "weight")))
		r.MaxPrice = types.Credits(rapid.IntRange(0, 5).Draw(t, "max")) * types.Credit
		if a, b := peers(r.Rank(bids)), peers(naiveRank(r, bids)); !slices.Equal(a, b) {
			t.Fatalf("Rank %v, naive %v", a, b)
		}
	})
}

// TestHoldingMoreNeverMovesABidDown: when a bidder comes to hold one more
// of the input files, its bid ranks no lower.
func TestHoldingMoreNeverMovesABidDown(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		files := genFiles().Draw(t, "files")
		if len(files) == 0 {
			return
		}
		bids := rapid.SliceOfNDistinct(genBid(), 1, 9, func(b types.Bid) string { return b.Node.PeerID }).Draw(t, "bids")
		r := withLocality(files, DefaultLocalityWeight)
		before := r.Rank(bids)
		if len(before) == 0 {
			return
		}
		who := before[rapid.IntRange(0, len(before)-1).Draw(t, "who")].Node.PeerID
		more := types.CloneInputFiles(files)
		f := rapid.IntRange(0, len(more)-1).Draw(t, "file")
		if slices.Contains(more[f].From, who) {
			return
		}
		more[f].From = append(more[f].From, who)
		after := withLocality(more, DefaultLocalityWeight).Rank(bids)
		pos := func(list []types.Bid) int {
			return slices.IndexFunc(list, func(b types.Bid) bool { return b.Node.PeerID == who })
		}
		if pos(after) > pos(before) {
			t.Fatalf("%s holds more and moved from %d to %d", who, pos(before), pos(after))
		}
	})
}

// TestJobOffersToTheHolderFirst: a job whose task names input files
// offers itself to the bidder holding them, where without locality the
// cheaper bid (or the tie-break) wins; NoLocality turns it off.
func TestJobOffersToTheHolderFirst(t *testing.T) {
	spec := testSpec()
	spec.EnoughBids = 2
	spec.Task.Files = []types.InputFile{{Path: "in/a", CID: "bafyin", Size: 100, From: []string{"n2"}}}
	for _, c := range []struct {
		name   string
		weight float64
		spec   JobSpec
		n2     int64 // n2's price; n1's is 1
		want   string
	}{
		{"equal bids: the holder", 0, spec, 1, "accept j1-a1-n2 -> n2"},
		{"the holder dearer", 0, spec, 2, "accept j1-a1-n2 -> n2"},
		{"locality off", NoLocality, spec, 1, "accept j1-a1-n1 -> n1"},
		{"no input files", 0, testSpecWith(func(s *JobSpec) { s.EnoughBids = 2 }), 1, "accept j1-a1-n1 -> n1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			j, err := NewJob(c.spec, JobConfig{Requester: "me", LocalityWeight: c.weight}, t0)
			if err != nil {
				t.Fatal(err)
			}
			run(t, j, []step{
				{at: 0, ev: start, want: []string{"publish j1"}},
				{at: 1 * ms, ev: bid("n1", 1)},
				{at: 2 * ms, ev: bid("n2", c.n2), want: []string{c.want}},
			})
		})
	}
}

func testSpecWith(tweak func(*JobSpec)) JobSpec {
	s := testSpec()
	tweak(&s)
	return s
}

func TestLocalityWeightValidation(t *testing.T) {
	for _, w := range []float64{-2, -0.5, math.NaN(), math.Inf(1)} {
		if _, err := NewJob(testSpec(), JobConfig{LocalityWeight: w}, t0); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("job weight %v: %v", w, err)
		}
		if _, err := (Config{Self: "me", LocalityWeight: w}).withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("orchestrator weight %v: %v", w, err)
		}
	}
	for _, w := range []float64{0, NoLocality, 0.5, 100} {
		if _, err := NewJob(testSpec(), JobConfig{LocalityWeight: w}, t0); err != nil {
			t.Errorf("weight %v: %v", w, err)
		}
	}
}

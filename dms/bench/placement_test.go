package bench

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/opendms/dms/orchestrator"
)

func TestPlacementQuickHasEveryKey(t *testing.T) {
	res, err := Run(context.Background(), "placement", Options{Quick: true})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Results
	if r["load"] != placementHeadline {
		t.Errorf("load = %v, want %v", r["load"], placementHeadline)
	}
	checkRatios(t, "headline", r)
	rows, ok := r["rows"].([]map[string]any)
	if !ok || len(rows) != len(placementLoads) {
		t.Fatalf("rows = %#v, want one per load %v", r["rows"], placementLoads)
	}
	for i, row := range rows {
		if row["load"] != placementLoads[i] {
			t.Errorf("row %d has load %v, want %v", i, row["load"], placementLoads[i])
		}
		checkRatios(t, "row", row)
		for _, k := range []string{"mean_response_ms_auction", "mean_response_ms_central"} {
			if v, ok := row[k].(float64); !ok || !(v > 0) || math.IsInf(v, 0) {
				t.Errorf("row %d: %s = %v, want a positive number", i, k, row[k])
			}
		}
		if n, ok := row["jobs"].(int); !ok || n <= 0 {
			t.Errorf("row %d: jobs = %v", i, row["jobs"])
		}
	}
	if _, err := json.Marshal(res); err != nil {
		t.Errorf("the result does not marshal: %v", err)
	}
}

// checkRatios wants finite ratios, not far below 1: the central scheduler
// knows everything and pays no message delay, so the auction may beat it on
// a job only by luck (another job's placement leaving it room), never by
// half.
func checkRatios(t *testing.T, what string, m map[string]any) {
	t.Helper()
	for _, k := range []string{"ratio_mean", "ratio_p99", "ratio_of_means"} {
		v, ok := m[k].(float64)
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) || v < 0.5 {
			t.Errorf("%s: %s = %v, want a finite ratio >= 0.5", what, k, m[k])
		}
	}
	if m["ratio_p99"].(float64) < m["ratio_mean"].(float64)*0.5 {
		t.Errorf("%s: p99 %v far below the mean %v", what, m["ratio_p99"], m["ratio_mean"])
	}
}

func TestPlacementSameSeedSameFigures(t *testing.T) {
	c := plConfig{seed: 7, nodes: 20, jobs: 300, load: 0.9}
	a, err := placementRow(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := placementRow(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs of one seed differ:\n%+v\n%+v", a, b)
	}
	c.seed++
	if d, err := placementRow(context.Background(), c); err != nil || reflect.DeepEqual(a, d) {
		t.Fatalf("another seed gives the same figures (%v): %+v", err, d)
	}
}

// At a load so light that no job ever waits, the central scheduler's
// response is the service time itself, and the auction adds only its
// messages: a few milliseconds on jobs that last a second on average.
func TestPlacementIdleClusterCostsOnlyMessages(t *testing.T) {
	w := newPlWorkload(3, 50, 300, 0.02)
	for i, r := range plCentral(w) {
		if r != w.jobs[i].service {
			t.Fatalf("job %d: central response %s, service %s", i, r, w.jobs[i].service)
		}
	}
	row, err := placementRow(context.Background(), plConfig{seed: 3, nodes: 50, jobs: 300, load: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	if extra := row.meanAuction - row.meanCentral; extra < 0 || extra > 10*time.Millisecond {
		t.Fatalf("auction mean %s vs central %s: the auction should add a few ms", row.meanAuction, row.meanCentral)
	}
}

func TestPlacementCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := placementRow(ctx, plConfig{seed: 1, nodes: 5, jobs: 50, load: 0.5}); err == nil {
		t.Fatal("a cancelled context did not stop the simulation")
	}
}

// TestPlacementFull runs the full scenario, then the ranking variants its
// report compares, when DMS_BENCH_PLACEMENT=1: that takes minutes, so the
// test suite skips it.
func TestPlacementFull(t *testing.T) {
	if os.Getenv("DMS_BENCH_PLACEMENT") == "" {
		t.Skip("set DMS_BENCH_PLACEMENT=1 to run the full placement scenario")
	}
	start := time.Now()
	res, err := Run(context.Background(), "placement", Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s\n(%s)", out, time.Since(start).Round(time.Millisecond))
	for _, v := range plVariants() {
		for _, load := range placementLoads {
			c := plConfig{seed: placementSeed, nodes: placementNodes, jobs: placementJobs, load: load, ranking: v.ranking, enough: v.enough}
			row, err := placementRow(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%-26s load %.2f: ratio_mean %.4f ratio_p99 %.3f ratio_of_means %.4f auctions/job %.3f busy declines from holds %.1f%%",
				v.name, load, row.ratioMean, row.ratioP99, row.ratioOfMeans, row.auctionsPerJob, 100*row.heldBusy)
		}
	}
}

type plVariant struct {
	name    string
	ranking orchestrator.Ranking // no scorers: DefaultRanking
	enough  int
}

// plVariants are the rankings and bid counts tried against the default.
// With every node at the same price and score, DefaultRanking
// (BinpackRanking) orders by load alone: the fullest of the first three
// bidders wins.
func plVariants() []plVariant {
	return []plVariant{
		{name: "default, enough 1", enough: 1},
		{name: "default, enough 50 (all)", enough: 50},
		{name: "no scorer (peer ID order)", ranking: orchestrator.Ranking{Scorers: []orchestrator.WeightedScorer{{Scorer: orchestrator.LoadScorer{}, Weight: 0}}}},
		{name: "spread (emptiest first)", ranking: orchestrator.SpreadRanking()},
		{name: "spread, enough 50 (all)", ranking: orchestrator.SpreadRanking(), enough: 50},
	}
}

package bench

import (
	"math"
	"slices"
	"time"

	"github.com/opendms/dms/types"
)

// ms converts d to milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// dist is a sorted sample of durations.
type dist []time.Duration

func newDist(ds []time.Duration) dist {
	d := slices.Clone(ds)
	slices.Sort(d)
	return d
}

// pct returns the p-th percentile (0 < p <= 100, nearest rank) in
// milliseconds; 0 for an empty sample.
func (d dist) pct(p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return ms(d[max(0, min(i, len(d)-1))])
}

func (d dist) mean() float64 {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return ms(sum / time.Duration(len(d)))
}

// latencies returns the runs' latencies, submit to verified output.
func latencies(runs []run) dist {
	ds := make([]time.Duration, 0, len(runs))
	for _, r := range runs {
		if r.err == nil {
			ds = append(ds, r.latency())
		}
	}
	return newDist(ds)
}

// phases returns the median time from submission until each state was
// first seen, and until the output was verified: where a job's time goes.
func phases(runs []run) map[string]float64 {
	out := map[string]float64{}
	for _, s := range []types.JobState{types.JobBidding, types.JobPlaced, types.JobRunning, types.JobCompleted} {
		var ds []time.Duration
		for _, r := range runs {
			if t, ok := r.seen[s]; ok && r.err == nil {
				ds = append(ds, t.Sub(r.submitted))
			}
		}
		if len(ds) > 0 {
			out[string(s)] = newDist(ds).pct(50)
		}
	}
	out["verified"] = latencies(runs).pct(50)
	return out
}

// msList returns durations in milliseconds, in their order.
func msList(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}

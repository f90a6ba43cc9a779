package orchestrator

import (
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestScale(t *testing.T) {
	s := Scaling{Min: 0, Max: 10, Concurrency: 8}
	for _, tc := range []struct {
		name string
		load Load
		s    Scaling
		want int
	}{
		{"idle scales to zero", Load{}, s, 0},
		{"idle keeps the minimum", Load{}, Scaling{Min: 2, Max: 10, Concurrency: 8}, 2},
		{"one queued call wants one instance", Load{Queued: 1}, s, 1},
		{"10 calls/s of 1ms are served on demand", Load{Rate: 10, Duration: time.Millisecond}, s, 0},
		{"100 calls/s of 1ms keep one instance", Load{Rate: 100, Duration: time.Millisecond}, s, 1},
		{"2000 calls/s of 10ms: 20 in flight, 25 with headroom, 4 instances", Load{Rate: 2000, Duration: 10 * time.Millisecond}, s, 4},
		{"a burst in flight and queued counts now", Load{InFlight: 16, Queued: 30, Rate: 1, Duration: time.Millisecond}, s, 6},
		{"capped at the maximum", Load{Queued: 1000}, s, 10},
		{"absurd rate saturates", Load{Rate: math.MaxFloat64, Duration: time.Hour}, Scaling{Max: math.MaxInt, Concurrency: 1}, math.MaxInt32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Scale(tc.load, tc.s)
			if d.Want != tc.want || d.Reason == "" {
				t.Fatalf("Scale(%+v, %+v) = %+v, want %d and a reason", tc.load, tc.s, d, tc.want)
			}
		})
	}
}

// TestScaleProperties: the decision lies within the bounds, serves every
// call in flight or queued (within Max), and never shrinks as load grows.
func TestScaleProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := Scaling{Min: rapid.IntRange(0, 5).Draw(t, "min"), Concurrency: rapid.IntRange(1, 64).Draw(t, "concurrency")}
		s.Max = rapid.IntRange(s.Min, 50).Draw(t, "max")
		l := Load{
			InFlight: rapid.IntRange(0, 5000).Draw(t, "inflight"), Queued: rapid.IntRange(0, 5000).Draw(t, "queued"),
			Rate:     rapid.Float64Range(0, 1e5).Draw(t, "rate"),
			Duration: time.Duration(rapid.Int64Range(0, int64(time.Second)).Draw(t, "duration")),
		}
		d := Scale(l, s)
		if d.Want < s.Min || d.Want > s.Max {
			t.Fatalf("want %d outside [%d, %d]", d.Want, s.Min, s.Max)
		}
		if need := (l.InFlight + l.Queued + s.Concurrency - 1) / s.Concurrency; d.Want < min(need, s.Max) {
			t.Fatalf("want %d instances for %d calls of concurrency %d", d.Want, l.InFlight+l.Queued, s.Concurrency)
		}
		more := l
		more.Queued += rapid.IntRange(0, 100).Draw(t, "more queued")
		more.Rate *= 1 + rapid.Float64Range(0, 2).Draw(t, "more rate")
		if Scale(more, s).Want < d.Want {
			t.Fatalf("more load wants fewer instances")
		}
	})
}

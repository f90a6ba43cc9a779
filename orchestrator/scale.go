package orchestrator

import (
	"fmt"
	"math"
	"time"
)

// Load is what a function's queue knows of its load at one moment: the
// input of Scale. It is a snapshot; Scale keeps nothing between calls.
type Load struct {
	Ready    int // warm instances serving calls
	Starting int // instances being auctioned or started
	InFlight int // calls running on the instances
	Queued   int // calls waiting for a free instance
	// Rate is the calls arriving per second (a moving average), and
	// Duration the mean time a call holds an instance.
	Rate     float64
	Duration time.Duration
}

// Scaling bounds a function's instances: Min are kept warm whatever the
// load (0: scale to zero), at most Max run, each serving Concurrency calls
// at once.
type Scaling struct {
	Min, Max    int
	Concurrency int
}

// Headroom is the share of capacity Scale keeps above the measured load,
// so that a rise in the rate does not queue calls before the next decision.
const Headroom = 1.25

// MinAverage is the least average of calls in flight that keeps
// instances for the rate alone: a function called now and then is served
// on demand (its calls in flight and queued), and does not hold an
// instance for a rate that decays towards zero without reaching it.
const MinAverage = 0.1

// Decision is what Scale decides: the instances wanted, and the reason, for
// a person reading why a function scaled.
type Decision struct {
	Want   int
	Reason string
}

// Scale decides how many instances a function's queue wants, from its
// load: by Little's law, rate x duration calls are in flight on average,
// which Concurrency-sized instances serve with Headroom to spare (once
// that average is MinAverage or more); calls in flight and queued now are
// served at once, not on average. The result lies within [Min, Max].
func Scale(l Load, s Scaling) Decision {
	c := max(s.Concurrency, 1)
	want, reason := 0, "no load"
	if avg := l.Rate * l.Duration.Seconds(); avg*Headroom >= MinAverage {
		if n := ceilDiv(avg*Headroom, c); n > want {
			want, reason = n, fmt.Sprintf("%.0f calls/s x %s = %.1f calls in flight on average", l.Rate, l.Duration.Round(time.Microsecond), avg)
		}
	}
	if n := ceilDiv(float64(l.InFlight+l.Queued), c); n > want {
		want, reason = n, fmt.Sprintf("%d calls in flight and %d queued", l.InFlight, l.Queued)
	}
	switch {
	case want < s.Min:
		return Decision{Want: s.Min, Reason: fmt.Sprintf("the minimum of %d (%s)", s.Min, reason)}
	case want > s.Max:
		return Decision{Want: s.Max, Reason: fmt.Sprintf("the maximum of %d (%s)", s.Max, reason)}
	}
	return Decision{Want: want, Reason: reason}
}

// ceilDiv is the whole instances of c calls each that serve n calls,
// saturating at math.MaxInt32 so an absurd rate cannot overflow.
func ceilDiv(n float64, c int) int {
	v := math.Ceil(n / float64(c))
	if v > math.MaxInt32 || math.IsNaN(v) {
		return math.MaxInt32
	}
	return int(v)
}

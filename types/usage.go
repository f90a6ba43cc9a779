package types

import (
	"fmt"
	"math"
	"math/bits"
	"time"
)

// Usage is what a program used, as its executor measured it (not as its
// task asked): one allocation's run, one call of a warm instance, or a warm
// instance over a span of time (a receipt's period, or its whole life).
// Every quantity is an integer, so sums are exact; docs/architecture.md
// (Metering) says how each executor measures them and how precisely.
type Usage struct {
	// CPU is the CPU time the program used, user and system together,
	// on every thread: it may exceed Wall for a program with threads.
	CPU time.Duration `json:"cpu_ns"`
	// Wall is how long it ran (a warm instance: how long it was warm).
	Wall time.Duration `json:"wall_ns"`
	// MemoryPeak is the most memory it was seen to hold; MemoryLimit is
	// what it was allowed (the memory locked for it).
	MemoryPeak  Bytes `json:"memory_peak"`
	MemoryLimit Bytes `json:"memory_limit"`
	// PeakMiBms and LimitMiBms are memory held over time, in MiB × ms:
	// MemoryPeak, and MemoryLimit, for Wall (MemoryTime). The limit's is
	// what the provider set aside; the peak's what the program could be
	// seen to need.
	PeakMiBms  int64 `json:"memory_peak_mib_ms"`
	LimitMiBms int64 `json:"memory_limit_mib_ms"`
	// OutputBytes is what the program gave back: its stdout and stderr as
	// kept (within the output limit) and its output files.
	OutputBytes int64 `json:"output_bytes"`
	// Calls is how many calls a warm instance served; 0 for a run.
	Calls uint64 `json:"calls,omitempty"`
}

// mibMs is a MiB held for a millisecond, in byte-nanoseconds.
const mibMs = (1 << 20) * uint64(time.Millisecond)

// MemoryTime returns b held for d in MiB × ms, rounded to the nearest; 0
// when either is not positive, math.MaxInt64 past it.
//
// Why MiB × ms: it is the grain providers bill memory at (a MiB, a
// millisecond), an integer, and it cannot overflow in practice: a TiB
// held for a century is 3.3e18, under int64's 9.2e18. Bytes × seconds
// would round a short call's use to nothing; bytes × nanoseconds would
// overflow after 64 GiB held for two minutes.
func MemoryTime(b Bytes, d time.Duration) int64 {
	if b <= 0 || d <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(b), uint64(d)) // byte-nanoseconds, 128 bits
	if hi >= mibMs {
		return math.MaxInt64 // the quotient needs more than 64 bits
	}
	q, r := bits.Div64(hi, lo, mibMs)
	if r >= mibMs-r { // r >= mibMs/2, without rounding mibMs/2 down
		q++
	}
	return int64(min(q, math.MaxInt64))
}

// WithMemoryTime returns u with PeakMiBms and LimitMiBms computed from its
// memory and wall time.
func (u Usage) WithMemoryTime() Usage {
	u.PeakMiBms = MemoryTime(u.MemoryPeak, u.Wall)
	u.LimitMiBms = MemoryTime(u.MemoryLimit, u.Wall)
	return u
}

// Add returns u and v together, as a total of both: times, memory × time,
// output and calls summed (saturating at their largest value), the memory
// peak and limit the larger of the two.
func (u Usage) Add(v Usage) Usage {
	return Usage{
		CPU:         time.Duration(addSat(int64(u.CPU), int64(v.CPU))),
		Wall:        time.Duration(addSat(int64(u.Wall), int64(v.Wall))),
		MemoryPeak:  max(u.MemoryPeak, v.MemoryPeak),
		MemoryLimit: max(u.MemoryLimit, v.MemoryLimit),
		PeakMiBms:   addSat(u.PeakMiBms, v.PeakMiBms),
		LimitMiBms:  addSat(u.LimitMiBms, v.LimitMiBms),
		OutputBytes: addSat(u.OutputBytes, v.OutputBytes),
		Calls:       u.Calls + min(v.Calls, math.MaxUint64-u.Calls),
	}
}

// Since returns what u, a running total of one instance, adds to earlier,
// an earlier total of the same: CPU and wall time, output and calls are
// the differences (never negative); the memory peak and limit are u's, so
// a period's peak is the peak since the instance began; memory × time is
// that peak and that limit for the period's wall time.
func (u Usage) Since(earlier Usage) Usage {
	d := Usage{
		CPU:         max(u.CPU-earlier.CPU, 0),
		Wall:        max(u.Wall-earlier.Wall, 0),
		MemoryPeak:  u.MemoryPeak,
		MemoryLimit: u.MemoryLimit,
		OutputBytes: max(u.OutputBytes-earlier.OutputBytes, 0),
		Calls:       u.Calls - min(earlier.Calls, u.Calls),
	}
	return d.WithMemoryTime()
}

// Check reports what makes u impossible as one measurement: a negative
// quantity, or memory × time that does not follow from its memory and
// wall time. A sum of measurements (Add) need not pass: its memory × time
// is the sum of theirs.
func (u Usage) Check() error {
	for _, q := range []struct {
		name string
		v    int64
	}{
		{"cpu", int64(u.CPU)}, {"wall", int64(u.Wall)}, {"memory peak", int64(u.MemoryPeak)},
		{"memory limit", int64(u.MemoryLimit)}, {"output", u.OutputBytes},
	} {
		if q.v < 0 {
			return fmt.Errorf("%w: %s is negative (%d)", ErrBadUsage, q.name, q.v)
		}
	}
	if want := u.WithMemoryTime(); u.PeakMiBms != want.PeakMiBms || u.LimitMiBms != want.LimitMiBms {
		return fmt.Errorf("%w: memory × time %d and %d MiB·ms, where its memory and wall time make %d and %d",
			ErrBadUsage, u.PeakMiBms, u.LimitMiBms, want.PeakMiBms, want.LimitMiBms)
	}
	return nil
}

// addSat returns a+b, or the int64 it would run past.
func addSat(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}

package bench

import (
	"math"
	"runtime"
	"strings"
	"time"
)

// The batch scenario's heap measures. The process holds every node, and
// its live heap, hundreds of megabytes, grows with badger's tables and
// the time-bound caches of gossipsub and the DHT as much as with the
// batch; so each sample also estimates, from the heap profile, the bytes
// that the batches' quorum state holds: what orchestrator/quorum
// allocated (units, replicas, verdicts, digests) and is still live.

// heapProfileRate is the average bytes between the allocations the heap
// profile samples while the scenario runs (runtime.MemProfileRate, 512
// KiB by default): a few megabytes of quorum state in a heap of hundreds
// need finer samples. The makespans show no cost of it.
const heapProfileRate = 4 << 10

// quorumPackage prefixes the functions whose allocations are the quorum
// state.
const quorumPackage = "github.com/opendms/dms/orchestrator/quorum."

// heapSample is the heap when Ended units had ended: the live heap, and
// of it the quorum state's estimate; and the CPU time the sample took.
type heapSample struct {
	Ended  int    `json:"ended"`
	Bytes  uint64 `json:"bytes"`
	Quorum uint64 `json:"quorum_bytes"`
	cpu    time.Duration
}

// sampleHeap collects garbage and measures the heap; runtime.GC publishes
// the heap profile of the collection before it returns.
func sampleHeap(ended int) (heapSample, error) {
	began, err := processCPU()
	if err != nil {
		return heapSample{}, err
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h := heapSample{Ended: ended, Bytes: m.HeapAlloc, Quorum: quorumInUse()}
	end, err := processCPU()
	h.cpu = end - began
	return h, err
}

// quorumInUse estimates the live bytes allocated by quorumPackage: the
// heap profile's records whose stack passes through it, scaled up for
// the sampling as pprof scales them.
func quorumInUse() uint64 {
	n, _ := runtime.MemProfile(nil, false)
	var recs []runtime.MemProfileRecord
	for ok := false; !ok; {
		recs = make([]runtime.MemProfileRecord, n+64) // room for new records
		n, ok = runtime.MemProfile(recs, false)
	}
	rate := float64(runtime.MemProfileRate)
	var sum float64
	for _, r := range recs[:n] {
		if objects := r.InUseObjects(); objects > 0 && inPackage(r.Stack(), quorumPackage) {
			size := float64(r.InUseBytes())
			sum += size / (1 - math.Exp(-size/float64(objects)/rate))
		}
	}
	return uint64(sum)
}

// inPackage reports whether a function of the stack starts with prefix.
func inPackage(stack []uintptr, prefix string) bool {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, prefix) {
			return true
		}
		if !more {
			return false
		}
	}
}

// slope is how many bytes of y the heap grew per unit ended: the slope of
// the least-squares line through the samples (0 for fewer than two).
func slope(s []heapSample, y func(heapSample) uint64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, p := range s {
		x, y := float64(p.Ended), float64(y(p))
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if d := n*sxx - sx*sx; n >= 2 && d != 0 {
		return (n*sxy - sx*sy) / d
	}
	return 0
}

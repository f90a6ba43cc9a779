package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The daemon hands back to the operating system the memory its heap grew
// to under load once the load is gone. The Go runtime keeps freed heap
// pages for reuse and returns them slowly, and a daemon that goes idle
// collects no garbage until the runtime forces a collection two minutes
// later: after a burst of jobs its resident memory stays at the burst's
// peak. A trim is debug.FreeOSMemory: one collection and a full return of
// free pages. It comes at the first quiet second after
// a busy spell, and once more trimAgain later, when the jobs of the spell
// have left the orchestrator's memory (dms keeps a finished job 10 s).
const (
	trimEvery = time.Second
	trimAgain = 15 * time.Second
	// quietRate is the allocation rate below which the daemon counts as
	// idle: what its background work (gossip heartbeats, DHT upkeep)
	// allocates stays under it, what running jobs allocate does not.
	quietRate = 1 << 20 // bytes per second
	// trimSlack is how much more memory than after the last trim the
	// runtime must hold for a trim to be worth a collection.
	trimSlack = 8 << 20
)

// memSample is what the trimmer reads from the runtime.
type memSample struct {
	allocs uint64 // bytes allocated since the process started
	held   uint64 // bytes of memory the runtime holds from the OS
}

var memMetrics = []string{"/gc/heap/allocs:bytes", "/memory/classes/total:bytes", "/memory/classes/heap/released:bytes"}

func readMemSample() memSample {
	s := make([]metrics.Sample, len(memMetrics))
	for i, name := range memMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	return memSample{allocs: s[0].Value.Uint64(), held: s[1].Value.Uint64() - s[2].Value.Uint64()}
}

// shouldTrim says whether to trim now, given the samples one interval
// (every) apart and what the runtime held after the last trim: when the
// interval was quiet and the runtime holds trimSlack more than then.
func shouldTrim(prev, cur memSample, every time.Duration, afterTrim uint64) bool {
	return quiet(prev, cur, every) && cur.held > afterTrim+trimSlack
}

// quiet says whether the daemon allocated below quietRate between prev
// and cur, every apart.
func quiet(prev, cur memSample, every time.Duration) bool {
	return float64(cur.allocs-prev.allocs)/every.Seconds() < quietRate
}

// trimWhenIdle trims after every busy spell (see trimEvery and trimAgain)
// until ctx ends.
func trimWhenIdle(ctx context.Context, every time.Duration, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev := readMemSample()
	afterTrim := prev.held
	var again time.Time // when to trim once more, if still quiet; zero: no second trim due
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
		cur := readMemSample()
		trim := shouldTrim(prev, cur, every, afterTrim)
		switch {
		case trim:
			again = now.Add(trimAgain)
		case !quiet(prev, cur, every):
			again = time.Time{} // busy again: this spell's end will trim
		case !again.IsZero() && !now.Before(again):
			trim, again = true, time.Time{}
		}
		if trim {
			debug.FreeOSMemory()
			before := cur.held
			cur = readMemSample()
			afterTrim = cur.held
			logger.Debug("idle: returned free memory to the OS", "held_mb", before>>20, "now_mb", afterTrim>>20)
		}
		prev = cur
	}
}

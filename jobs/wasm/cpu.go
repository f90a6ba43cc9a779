package wasm

import (
	"runtime"
	"time"
)

// onThread runs f on the calling goroutine locked to its OS thread, and
// returns the CPU time that thread spent in f. wazero runs a guest's code,
// and the host functions it calls, on the goroutine that calls it, and
// starts no thread of its own to run it, so this is the guest's CPU time:
// user and system, and none of the time it slept or waited to be
// scheduled. 0 where a thread's CPU time cannot be read (threadCPU).
//
// Locking costs nothing while f computes; each time the guest blocks (a
// sleep), the runtime hands its other goroutines to another thread and
// back, a few microseconds (BenchmarkMetering).
func onThread(f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, ok := threadCPU()
	f()
	after, ok2 := threadCPU()
	if !ok || !ok2 {
		return 0
	}
	return max(after-before, 0)
}

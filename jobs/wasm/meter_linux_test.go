package wasm

import (
	"syscall"
	"testing"
	"time"
)

// processCPU returns the CPU time the whole test process has used.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCPUOfABurningGuest: a guest that spins for 200 ms of wall time is
// metered with the CPU time it burnt: no more than its wall time, and
// nearly all that the process spent meanwhile (the rest is the Go
// runtime's own threads, its collector). Were the guest run on threads
// the meter does not see, its share would fall; were wall time taken for
// CPU time, it would pass the process's on a loaded machine.
func TestCPUOfABurningGuest(t *testing.T) {
	bin, e := setup(t)
	run(t, e, guestInput(bin, "burn", "1ms")) // compiled, and the memory pool filled
	before := processCPU(t)
	out, err := run(t, e, guestInput(bin, "burn", "200ms"))
	spent := processCPU(t) - before
	if err != nil || out.ExitCode != 0 {
		t.Fatalf("out %+v, err %v", out, err)
	}
	u := out.Usage
	t.Logf("cpu %s, wall %s, the process's cpu %s", u.CPU, u.Wall, spent)
	if u.Wall < 200*time.Millisecond || u.Wall != out.Duration {
		t.Errorf("wall %s, duration %s: want the run's, at least 200ms", u.Wall, out.Duration)
	}
	// getrusage counts in clock ticks' worth of precision on some kernels: 10ms of slack.
	if u.CPU > u.Wall || u.CPU > spent+10*time.Millisecond {
		t.Errorf("cpu %s is over the wall time %s or the process's cpu %s", u.CPU, u.Wall, spent)
	}
	if u.CPU < spent*8/10 || u.CPU < 50*time.Millisecond {
		t.Errorf("cpu %s: under 80%% of the process's %s, or under 50ms of a 200ms spin", u.CPU, spent)
	}
}

// TestCPUOfASleepingGuest: a guest that sleeps is metered with its wall
// time, not as CPU time. What it spends beyond a guest that exits at once
// (its runtime's start, which a loaded machine stretches: CI measured 211
// ms of it under -race beside other tests) is under a fifth of the sleep.
func TestCPUOfASleepingGuest(t *testing.T) {
	bin, e := setup(t)
	run(t, e, guestInput(bin, "exit", "0")) // compiled, and the memory pool filled
	base, err := run(t, e, guestInput(bin, "exit", "0"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(t, e, guestInput(bin, "sleep", "2s"))
	if err != nil {
		t.Fatal(err)
	}
	u := out.Usage
	t.Logf("cpu %s, wall %s; exiting at once: cpu %s", u.CPU, u.Wall, base.Usage.CPU)
	if u.Wall < 2*time.Second || u.CPU <= 0 || u.CPU-base.Usage.CPU > u.Wall/5 {
		t.Fatalf("cpu %s, wall %s, at once %s: want some cpu, and under a fifth of the sleep beyond the guest that exits", u.CPU, u.Wall, base.Usage.CPU)
	}
}

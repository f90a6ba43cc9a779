package docker

import (
	"runtime"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// TestUsageOfABurningContainer: a container that holds 16 MiB and spins
// for 1.5s is metered from the engine's stats with CPU time (at most what
// its wall time allows on this host) and a peak of at least its 16 MiB,
// within its limit.
func TestUsageOfABurningContainer(t *testing.T) {
	e := newExecutor(t, Config{})
	out := mustRun(t, e, guest("burn", "1500ms", "16"))
	u := out.Usage
	t.Logf("cpu %s, wall %s, memory peak %s of %s", u.CPU, u.Wall, u.MemoryPeak, u.MemoryLimit)
	if u.CPU <= 0 || u.CPU > u.Wall*time.Duration(runtime.NumCPU()) {
		t.Errorf("cpu %s over a wall time of %s", u.CPU, u.Wall)
	}
	if u.MemoryPeak < 16<<20 || u.MemoryPeak > u.MemoryLimit || u.MemoryLimit != jobs.DefaultMemory {
		t.Errorf("memory peak %s, limit %s", u.MemoryPeak, u.MemoryLimit)
	}
	if u.Wall != out.Duration || u.OutputBytes != int64(len(out.Stdout)+len(out.Stderr)) || u.Calls != 0 {
		t.Errorf("usage %+v of output %+v", u, out)
	}
	if err := u.Check(); err != nil {
		t.Error(err)
	}
}

// TestWarmUsage: a warm container's usage is its CPU time and memory, as
// sampled, the answered calls' output and count, and its wall time since
// Warm; it stops changing once closed.
func TestWarmUsage(t *testing.T) {
	e := newExecutor(t, Config{MeterEvery: 100 * time.Millisecond})
	i := warmIn(t, e, guest("warm"))
	var calls types.Usage
	for range 2 {
		out, err := call(i, "burn", "700", 0)
		if err != nil || string(out.Stdout) != "burnt" {
			t.Fatalf("out %+v, err %v", out, err)
		}
		if u := out.Usage; u.Calls != 1 || u.Wall != out.Duration || u.OutputBytes != 5 {
			t.Errorf("a call's usage %+v", u)
		}
		calls = calls.Add(out.Usage)
	}
	u := i.Usage()
	t.Logf("cpu %s, wall %s, memory peak %s", u.CPU, u.Wall, u.MemoryPeak)
	if u.Calls != 2 || u.OutputBytes != calls.OutputBytes || u.Wall < calls.Wall || u.CPU <= 0 || u.MemoryPeak <= 0 {
		t.Errorf("instance %+v, calls summed %+v", u, calls)
	}
	if err := u.Check(); err != nil {
		t.Error(err)
	}
	i.Close()
	if after, again := i.Usage(), i.Usage(); after != again || after.CPU < u.CPU {
		t.Errorf("usage after Close %+v, then %+v", after, again)
	}
}

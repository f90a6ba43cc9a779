package wasm

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

const mib = types.Bytes(1 << 20)

// TestMemoryPeakGrows: a guest that allocates 32 MiB more than another is
// metered with at least that much more memory, within its limit.
func TestMemoryPeakGrows(t *testing.T) {
	bin, e := setup(t)
	peak := func(n string) types.Usage {
		out, err := run(t, e, guestInput(bin, "alloc", n))
		if err != nil || out.ExitCode != 0 {
			t.Fatalf("alloc %s: out %+v, err %v", n, out, err)
		}
		return out.Usage
	}
	small, large := peak("1"), peak("33")
	t.Logf("peak %s after 1 MiB, %s after 33 MiB", small.MemoryPeak, large.MemoryPeak)
	if small.MemoryPeak < mib || large.MemoryPeak-small.MemoryPeak < 32*mib {
		t.Errorf("peaks %s and %s: want at least 32 MiB apart", small.MemoryPeak, large.MemoryPeak)
	}
	for _, u := range []types.Usage{small, large} {
		if u.MemoryLimit != jobs.DefaultMemory || u.MemoryPeak > u.MemoryLimit {
			t.Errorf("peak %s, limit %s; want within the default %s", u.MemoryPeak, u.MemoryLimit, jobs.DefaultMemory)
		}
		if err := u.Check(); err != nil || u.LimitMiBms == 0 || u.PeakMiBms == 0 {
			t.Errorf("%+v: %v", u, err)
		}
	}
}

// TestUsageCountsOutputAsKept: output bytes are stdout and stderr as
// kept, not what the guest wrote past the limit.
func TestUsageCountsOutputAsKept(t *testing.T) {
	bin, e := setup(t)
	in := guestInput(bin, "flood", "5000")
	in.OutputLimit = 1000
	out, err := run(t, e, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Usage.OutputBytes; got != 2000 || out.Usage.Calls != 0 {
		t.Fatalf("output %d bytes, calls %d; want 2000 and 0", got, out.Usage.Calls)
	}
}

// TestWarmUsage: a warm instance's usage sums its calls' (each metered as
// a run is), counts them, takes the most memory its calls held at once,
// and its wall time since Warm; after Close it stops changing.
func TestWarmUsage(t *testing.T) {
	bin, e := setup(t)
	// Each call allocates 16 MiB and holds them for 300ms.
	inst, err := e.Warm(context.Background(), guestInput(bin, "alloc", "16", "300ms"))
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	call := func() *jobs.Output {
		out, err := inst.Call(context.Background(), jobs.CallInput{})
		if err != nil {
			t.Error(err)
			return &jobs.Output{}
		}
		return out
	}
	var wg sync.WaitGroup
	outs := make([]*jobs.Output, 2)
	for i := range outs {
		wg.Go(func() { outs[i] = call() })
	}
	wg.Wait()
	u := inst.Usage()
	var sum types.Usage
	for _, o := range outs {
		if o.Usage.Calls != 1 {
			t.Errorf("a call's usage counts %d calls", o.Usage.Calls)
		}
		sum = sum.Add(o.Usage)
	}
	t.Logf("calls' peaks %s and %s, the instance's %s", outs[0].Usage.MemoryPeak, outs[1].Usage.MemoryPeak, u.MemoryPeak)
	if u.Calls != 2 || u.CPU != sum.CPU || u.OutputBytes != sum.OutputBytes || u.CPU <= 0 {
		t.Errorf("instance %+v, calls summed %+v", u, sum)
	}
	// Both calls hold their 16 MiB for 300ms, so they overlap.
	if u.MemoryPeak <= max(outs[0].Usage.MemoryPeak, outs[1].Usage.MemoryPeak) || u.MemoryPeak > 2*sum.MemoryPeak {
		t.Errorf("instance peak %s, calls' %s and %s: want more than either, at most both", u.MemoryPeak, outs[0].Usage.MemoryPeak, outs[1].Usage.MemoryPeak)
	}
	if u.Wall < 300*time.Millisecond || u.MemoryLimit != jobs.DefaultMemory {
		t.Errorf("wall %s, limit %s", u.Wall, u.MemoryLimit)
	}
	if err := u.Check(); err != nil {
		t.Error(err)
	}
	inst.Close()
	if after, again := inst.Usage(), inst.Usage(); after != again || after.Wall < u.Wall {
		t.Errorf("usage after Close %+v, then %+v", after, again)
	}
}

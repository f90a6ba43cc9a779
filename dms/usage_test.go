package dms

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// TestJobUsageReachesRequester: what a job used, as the provider's
// executor measured it, comes back to its requester in the job's result
// and its attempt, and in its JSON. The job sleeps 300ms then prints: its wall time is the
// sleep's, its CPU time a small part of it, its memory the module's one
// page, under the spec's limit.
func TestJobUsageReachesRequester(t *testing.T) {
	nodes := testNet(t, 2, func(i int) bool { return i != 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := tinySpec(t, 300*time.Millisecond, "slept\n")
	h, err := nodes[0].Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	job, err := h.Wait(ctx)
	if err != nil || job.State != types.JobCompleted || job.Result == nil {
		t.Fatalf("job %+v, %v", job, err)
	}
	u := job.Result.Usage
	if u == nil {
		t.Fatal("the result carries no usage")
	}
	t.Logf("usage %+v", *u)
	if u.Wall < 300*time.Millisecond || u.CPU <= 0 || u.CPU > u.Wall/3 {
		t.Errorf("cpu %s, wall %s: want a sleeper's", u.CPU, u.Wall)
	}
	if u.MemoryPeak != 64<<10 || u.MemoryLimit != spec.Resources.Memory || u.OutputBytes != int64(len("slept\n")) || u.Calls != 0 {
		t.Errorf("usage %+v of a one-page module under %s that printed 6 bytes", *u, spec.Resources.Memory)
	}
	if err := u.Check(); err != nil {
		t.Error(err)
	}
	if last := job.Attempts[len(job.Attempts)-1].Usage; last == nil || *last != *u {
		t.Errorf("the last attempt's usage %+v, the result's %+v", last, *u)
	}
	raw, err := json.Marshal(job)
	if err != nil || !strings.Contains(string(raw), `"usage":{"cpu_ns":`) {
		t.Fatalf("the job's JSON lacks its usage: %s (%v)", raw, err)
	}
}

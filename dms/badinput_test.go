package dms

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// buildGuest builds the wasm executor's test program (a Go wasip1 guest
// whose first argument picks a misbehaviour: loop, membomb, flood N, ...)
// into dir and returns the module's path.
func buildGuest(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "guest.wasm")
	cmd := exec.Command("go", "build", "-o", out, "../jobs/wasm/testdata/guest")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test guest: %v\n%s", err, b)
	}
	return out
}

// TestMisbehavingGuests runs programs that loop forever, allocate without
// end and flood stdout on a real provider: each job ends as it must, says
// why, within a bound, and afterwards the same provider has all its
// capability back and runs the hello job.
func TestMisbehavingGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm guest and runs jobs on two nodes; skipped with -short")
	}
	guest := buildGuest(t, t.TempDir())
	nodes := testNet(t, 2, func(i int) bool { return i == 1 }) // node 0 submits, node 1 runs
	requester, provider := nodes[0], nodes[1]
	// A first run compiles the guest (seconds under -race), so the bounds
	// below measure the runs alone.
	warm := helloSpec(t)
	warm.Name, warm.Module, warm.Args = "warm-up", guest, []string{"exit", "0"}
	if _, job := submitAndWait(t, requester, warm, 2*time.Minute); job.State != types.JobCompleted {
		t.Fatalf("warm-up: %s (%s)", job.State, job.Reason)
	}

	cases := []struct {
		name   string
		args   []string
		tune   func(*jobs.Spec)
		within time.Duration
		check  func(t *testing.T, h *Handle, job api.Job)
	}{{
		name:   "loop",
		args:   []string{"loop"},
		tune:   func(s *jobs.Spec) { s.Timeout = jobs.Duration(2 * time.Second) },
		within: 15 * time.Second,
		check: func(t *testing.T, _ *Handle, job api.Job) {
			wantFailed(t, job, "jobs: timeout: stopped after 2s")
		},
	}, {
		name:   "membomb",
		args:   []string{"membomb"},
		tune:   func(s *jobs.Spec) { s.Resources.Memory = 32 << 20 },
		within: 45 * time.Second,
		check: func(t *testing.T, _ *Handle, job api.Job) {
			wantFailed(t, job, "jobs: memory limit exceeded", "over its limit of 32 MiB")
		},
	}, {
		name:   "flood forever",
		args:   []string{"flood", "1000000000000"},
		tune:   func(s *jobs.Spec) { s.Timeout = jobs.Duration(2 * time.Second) },
		within: 15 * time.Second,
		check: func(t *testing.T, _ *Handle, job api.Job) {
			wantFailed(t, job, "jobs: timeout: stopped after 2s")
		},
	}, {
		name:   "flood past the output limit",
		args:   []string{"flood", "3000000"},
		within: 30 * time.Second,
		check: func(t *testing.T, h *Handle, job api.Job) {
			if job.State != types.JobCompleted || job.Result == nil || !job.Result.StdoutTruncated || !job.Result.StderrTruncated {
				t.Fatalf("job %s (%s), result %+v; want completed with both outputs truncated", job.State, job.Reason, job.Result)
			}
			out, err := h.Stdout(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 1<<20 { // the node's default output limit
				t.Fatalf("kept %d bytes of stdout, want the 1 MiB limit", len(out))
			}
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := helloSpec(t)
			spec.Name, spec.Module, spec.Args = strings.ReplaceAll(c.name, " ", "-"), guest, c.args
			if c.tune != nil {
				c.tune(spec)
			}
			start := time.Now()
			h, job := submitAndWait(t, requester, spec, c.within)
			t.Logf("%s: %s in %s: %s", c.name, job.State, time.Since(start).Round(time.Millisecond), job.Reason)
			if len(job.Attempts) != 1 || job.Attempts[0].Node != provider.host.ID() {
				t.Fatalf("attempts %+v; want one, on the provider %s", job.Attempts, provider.host.ID())
			}
			c.check(t, h, job)
			providerUnaffected(t, requester, provider)
		})
	}
}

// submitAndWait submits spec from d and waits at most within for its end.
func submitAndWait(t *testing.T, d *DMS, spec *jobs.Spec, within time.Duration) (*Handle, api.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	h, err := d.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	job, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("job %s did not end within %s: %v (last: %s %s)", spec.Name, within, err, job.State, job.Reason)
	}
	return h, job
}

func wantFailed(t *testing.T, job api.Job, reason ...string) {
	t.Helper()
	if job.State != types.JobFailed {
		t.Fatalf("job %s (%s); want failed", job.State, job.Reason)
	}
	for _, r := range reason {
		if !strings.Contains(job.Reason, r) {
			t.Fatalf("reason %q does not say %q", job.Reason, r)
		}
	}
	if strings.Contains(job.Reason, "goroutine ") || strings.Contains(job.Reason, "panic") {
		t.Fatalf("reason holds a stack trace: %q", job.Reason)
	}
}

// providerUnaffected checks the provider released everything and still
// runs the hello job.
func providerUnaffected(t *testing.T, requester, provider *DMS) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var info api.NodeInfo
	waitFor(t, 10*time.Second, "the provider to release the job's capability", func() bool {
		var err error
		info, err = provider.Node(ctx)
		return err == nil && info.Available == info.Registered && info.Running == 0
	})
	// hello's first run compiles 2.5 MB of Wasm: over 30 s once under
	// -race with the other test packages on two cores.
	h, job := submitAndWait(t, requester, helloSpec(t), 90*time.Second)
	if job.State != types.JobCompleted || job.Node != provider.host.ID() {
		t.Fatalf("hello after the bad job: %s on %q (%s)", job.State, job.Node, job.Reason)
	}
	out, err := h.Stdout(ctx)
	if err != nil || !strings.Contains(string(out), "hello from dms") {
		t.Fatalf("hello after the bad job printed %q, %v", out, err)
	}
}

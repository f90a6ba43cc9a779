package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Every scenario of this file runs with Options.Quick: the figures are
// meaningless, the test only shows that each runs to its end and reports
// its keys with sane values. Targets are for `dms bench`, never for tests.

// checkKeys fails t unless every key is in res as a non-negative number.
func checkKeys(t *testing.T, res map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		v, ok := res[k]
		if !ok {
			t.Errorf("no key %q in %v", k, res)
			continue
		}
		var x float64
		switch v := v.(type) {
		case int:
			x = float64(v)
		case int64:
			x = float64(v)
		case float64:
			x = v
		default:
			t.Errorf("%s = %v (%T), want a number", k, v, v)
			continue
		}
		if x < 0 {
			t.Errorf("%s = %v, want >= 0", k, x)
		}
	}
}

func runQuick(t *testing.T, name string, o Options) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o.Quick, o.Dir = true, t.TempDir()
	res, err := Run(ctx, name, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != name {
		t.Fatalf("scenario %q, want %q", res.Scenario, name)
	}
	t.Logf("%s: %v", name, res.Results)
	return res.Results
}

// want checks an exact value.
func want(t *testing.T, res map[string]any, key string, v any) {
	t.Helper()
	if fmt.Sprint(res[key]) != fmt.Sprint(v) {
		t.Errorf("%s = %v, want %v (error: %v)", key, res[key], v, res["error"])
	}
}

func TestBenchSequential(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "sequential", Options{})
	checkKeys(t, res, "p50_ms", "p95_ms", "p99_ms", "jobs", "failed")
	want(t, res, "jobs", 10)
	want(t, res, "failed", 0)
}

func TestBenchBurst(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "burst", Options{})
	checkKeys(t, res, "jobs", "failed", "makespan_ms", "p50_ms", "p95_ms",
		"burst500_jobs", "burst500_failed", "burst500_makespan_ms", "burst500_p50_ms", "burst500_p95_ms")
	want(t, res, "jobs", 10)
	want(t, res, "burst500_jobs", 20)
	want(t, res, "failed", 0)
}

func TestBenchThroughput(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "throughput", Options{})
	checkKeys(t, res, "jobs_per_s", "p99_ms")
	steps, ok := res["steps"].([]map[string]any)
	if !ok || len(steps) == 0 {
		t.Fatalf("steps = %v", res["steps"])
	}
	for _, s := range steps {
		checkKeys(t, s, "rate_per_s", "submitted", "jobs", "failed", "p99_ms", "achieved_per_s")
	}
}

func TestBenchNodeLoss(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "node-loss", Options{})
	checkKeys(t, res, "recovery_ms")
	runs, ok := res["runs"].([]map[string]any)
	if !ok || len(runs) != 1 {
		t.Fatalf("runs = %v", res["runs"])
	}
	checkKeys(t, runs[0], "recovery_ms", "detect_ms", "attempts")
	if runs[0]["attempts"].(int) < 2 {
		t.Errorf("attempts = %v, want a second one after the node closed", runs[0]["attempts"])
	}
}

func TestBenchLargeWasm(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "large-wasm", Options{})
	checkKeys(t, res, "module_mb", "overhead_p50_ms", "overhead_p95_ms", "jobs")
	want(t, res, "jobs", 3)
	if b := res["module_bytes"].(int); b <= 0 {
		t.Errorf("module_bytes = %v, want the module's size", b)
	}
}

// binDir holds the dms binary that dmsBinary builds, removed by TestMain.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// dmsBinary builds cmd/dms once for the scenarios that run daemons.
var dmsBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "dms-bench-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "dms")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/dms").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building dms: %v\n%s", err, out)
	}
	return bin, nil
})

func binary(t *testing.T) string {
	t.Helper()
	bin, err := dmsBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestBenchMemory(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "memory", Options{Bin: binary(t)})
	checkKeys(t, res, "idle_rss_mb", "after_rss_mb", "rss_ratio", "jobs")
	want(t, res, "jobs", 200)
	want(t, res, "failed", 0)
	if res["idle_rss_mb"].(float64) <= 0 {
		t.Errorf("idle_rss_mb = %v, want a measured size", res["idle_rss_mb"])
	}
}

func TestBenchGateway(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "gateway", Options{Bin: binary(t)})
	checkKeys(t, res, "p50_ms", "p95_ms", "calls_per_s", "idle_rss_mb", "after_rss_mb", "peak_rss_mb")
	want(t, res, "calls_sequential", 10)
	want(t, res, "calls_load", 100)
	want(t, res, "failed_sequential", 0)
	want(t, res, "failed_load", int64(0))
	if _, ok := res["error"]; ok {
		t.Errorf("error = %v", res["error"])
	}
}

func TestBenchGatewayFailover(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "gateway-failover", Options{Bin: binary(t)})
	checkKeys(t, res, "recovered_ms", "calls_failed", "calls_after_kill", "new_leader_seen_ms", "calls_per_s_before")
	if res["new_leader"] == "" || res["new_leader"] == res["killed_leader"] {
		t.Errorf("the queue's leader %v killed, then led by %q", res["killed_leader"], res["new_leader"])
	}
}

func TestBenchDisk(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "disk", Options{})
	checkKeys(t, res, "budget_mb", "written_mb", "requester_home_before_mb", "requester_home_peak_mb", "requester_home_after_mb",
		"requester_blob_after_mb", "took_s", "jobs_per_s", "jobs", "failed")
	want(t, res, "jobs", 40)
	want(t, res, "failed", 0)
	want(t, res, "within_budget", true)
	providers, ok := res["providers"].([]map[string]any)
	if !ok || len(providers) != 2 {
		t.Fatalf("providers = %v", res["providers"])
	}
	ran := 0
	for _, p := range providers {
		checkKeys(t, p, "home_before_mb", "home_peak_mb", "home_after_mb", "blob_after_mb", "jobs")
		if p["blob_after_mb"].(float64) > res["budget_mb"].(float64) {
			t.Errorf("a provider holds %v MiB of blobs, over the budget of %v", p["blob_after_mb"], res["budget_mb"])
		}
		ran += p["jobs"].(int)
	}
	if ran != 40 {
		t.Errorf("the providers ran %d jobs, want 40", ran)
	}
	if res["written_mb"].(float64) <= res["budget_mb"].(float64) {
		t.Errorf("wrote %v MiB, not more than the budget of %v: the collector had nothing to do", res["written_mb"], res["budget_mb"])
	}
}

func TestBenchMemoryNeedsADmsBinary(t *testing.T) {
	_, err := Run(context.Background(), "memory", Options{Quick: true, Dir: t.TempDir()})
	if err == nil {
		t.Fatal("memory ran with the test binary as its daemon")
	}
}

func TestRunUnknownScenario(t *testing.T) {
	_, err := Run(context.Background(), "no-such", Options{})
	if err == nil {
		t.Fatal("no error for an unknown scenario")
	}
}

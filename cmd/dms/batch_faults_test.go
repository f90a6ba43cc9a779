package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
)

// faultBatchUnits is the managed batch of TestFaultKillManagersAndProviders:
// unit i sleeps i%3+1 seconds, so each result names how long its unit slept.
const faultBatchUnits = 30

// TestFaultKillManagersAndProvidersMidBatch kills, with kill -9, the
// daemons a managed batch rests on while it runs: its submitter and a
// provider and one of its three managers at once, then (with those back,
// but for the provider) a second manager. Every unit ends exactly once in
// the batch's results, with its own result, decided by two replicas on
// distinct nodes.
func TestFaultKillManagersAndProvidersMidBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs seven daemons in network namespaces; skipped with -short")
	}
	lab := newNetlab(t, 7)
	// 0 submits, 1-3 manage, 4-6 compute.
	nodes := startLab(t, lab, buildBinary(t), map[int]bool{0: true, 1: true, 2: true, 3: true}, nil)
	sub, managers, providers := nodes[0], nodes[1:4], nodes[4:]

	file := faultBatchFile(t, managers)
	var started api.Batch
	if err := json.Unmarshal([]byte(cliOK(t, sub.bin, "batch", "run", file, "--detach", "--home", sub.home, "-o", "json")), &started); err != nil || started.ID == "" {
		t.Fatalf("batch run --detach: %+v, %v", started, err)
	}
	id := started.ID
	status := func() api.Batch {
		var b api.Batch
		out := cliOK(t, sub.bin, "batch", "status", id, "--home", sub.home, "-o", "json")
		if err := json.Unmarshal([]byte(out), &b); err != nil {
			t.Fatalf("batch status: %v\n%s", err, out)
		}
		return b
	}
	completed := func(n int) func() bool {
		return func() bool { b := status(); return b.Counts.Completed >= n || b.State != api.BatchRunning }
	}
	eventually(t, 60*time.Second, "a few units collected", completed(4))

	sub.kill9(t)
	providers[0].kill9(t)
	managers[0].kill9(t)
	t.Logf("killed the submitter, a provider and a manager at %d of %d units", 4, faultBatchUnits)
	time.Sleep(3 * time.Second)
	managers[0].restart(t)
	sub.restart(t)

	eventually(t, 90*time.Second, "more units collected", completed(faultBatchUnits/2))
	if b := status(); b.State == api.BatchRunning {
		managers[1].kill9(t)
		t.Logf("killed a second manager at %d units completed", b.Counts.Completed)
	}
	var done api.Batch
	eventually(t, 120*time.Second, "the batch to end", func() bool { done = status(); return done.State != api.BatchRunning })
	var units []api.BatchUnit
	if err := json.Unmarshal([]byte(cliOK(t, sub.bin, "batch", "results", id, "--home", sub.home, "-o", "json")), &units); err != nil {
		t.Fatal(err)
	}
	if c := done.Counts; done.State != api.BatchCompleted || c.Units != faultBatchUnits || c.Completed != faultBatchUnits || c.Failed != 0 {
		for _, u := range units {
			if u.State != api.BatchCompleted {
				t.Errorf("unit %d %s: %s; replicas %+v", u.Index, u.State, u.Failure, u.Replicas)
				break
			}
		}
		t.Fatalf("batch ended %s %q: %+v", done.State, done.Reason, c)
	}
	seen := map[int]int{}
	for _, u := range units {
		seen[u.Index]++
		if u.State != api.BatchCompleted || u.Result == nil || u.Digest == "" {
			t.Errorf("unit %d: %s %q", u.Index, u.State, u.Failure)
			continue
		}
		agreed := map[string]bool{}
		for _, r := range u.Replicas {
			if r.Digest == u.Digest && r.Node != "" {
				agreed[r.Node] = true
			}
		}
		if len(agreed) < 2 {
			t.Errorf("unit %d decided by %d distinct nodes, want 2: %+v", u.Index, len(agreed), u.Replicas)
		}
	}
	if len(units) != faultBatchUnits || len(seen) != faultBatchUnits {
		t.Fatalf("%d units listed, %d distinct: want %d once each (%v)", len(units), len(seen), faultBatchUnits, seen)
	}
	dir := t.TempDir()
	cliOK(t, sub.bin, "batch", "results", id, "--out", dir, "--home", sub.home)
	for i := range faultBatchUnits {
		want := fmt.Sprintf("slept %d seconds\n", i%3+1)
		if got, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i), "stdout")); err != nil || !strings.HasSuffix(string(got), want) {
			t.Errorf("unit %d: stdout %q, %v: want it to end %q", i, got, err, want)
		}
	}
}

// faultBatchFile writes the batch of faultBatchUnits units of examples/sleep
// managed by managers: replication 2, quorum 2.
func faultBatchFile(t *testing.T, managers []*labNode) string {
	t.Helper()
	module, err := filepath.Abs(filepath.Join("..", "..", "examples", "sleep", "sleep.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	var ids, params []string
	for _, m := range managers {
		ids = append(ids, strconv.Quote(m.peerID))
	}
	for i := range faultBatchUnits {
		params = append(params, fmt.Sprintf("    - {args: [\"%d\"]}", i%3+1))
	}
	spec := fmt.Sprintf(`name: faults
template:
  module: %s
  resources: {cpu: 0.1, memory: 64MiB}
  timeout: 30s
units:
  params:
%s
replication: 2
quorum: 2
deadline: 40s
parallel: 6
managers: [%s]
`, module, strings.Join(params, "\n"), strings.Join(ids, ", "))
	path := filepath.Join(t.TempDir(), "batch.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

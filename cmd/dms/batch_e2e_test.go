package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendms/dms/dms/api"
)

// helloBatch runs examples/hello's module once per file of parts/, each
// unit on both providers.
const helloBatch = `name: hello-batch
template:
  module: hello.wasm
  args: ["{{unit}}"]
  resources: {cpu: 0.1, memory: 16MiB}
  bid_window: 300ms
  enough_bids: 2
units:
  dir: parts
replication: 2
parallel: 2
`

// helloBatchFile writes helloBatch next to a copy of examples/hello's
// module and a directory parts/ of three files.
func helloBatchFile(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(helloFlowFile(t))
	files := map[string]string{"batch.yaml": helloBatch, "parts/a.txt": "a", "parts/b.txt": "b", "parts/c.txt": "c"}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "batch.yaml")
}

// TestBatchEndToEnd drives the batch commands over HTTP against a real
// requester (node 0, its API on, no compute) and two providers: every
// unit runs on both, their results agree, and results --out saves the
// verdicts; the providers' reputation counts their agreeing results.
func TestBatchEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of three nodes; skipped with -short")
	}
	net := requesterNet(t, 3)
	home := net.Homes[0]

	code, out, errOut := runCLI(t, "batch", "run", helloBatchFile(t), "--home", home, "-o", "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var done api.Batch
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &done) != nil || done.State != api.BatchCompleted {
		t.Fatalf("run: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if c := done.Counts; c.Units != 3 || c.Completed != 3 || c.Replicas != 6 || c.Disagreed != 0 {
		t.Fatalf("counts %+v: want 3 units decided by 6 agreeing replicas", c)
	}
	if code, out, _ := runCLI(t, "batch", "list", "--home", home); code != 0 || !strings.Contains(out, done.ID+"  hello-batch  completed  3/3   0 ") {
		t.Errorf("list: exit %d:\n%s", code, out)
	}
	if code, out, _ := runCLI(t, "batch", "status", done.ID, "--home", home); code != 0 ||
		!strings.Contains(out, "3/3 done, 0 failed, 0 running, 0 queued\n  replicas 6, 0 disagreed") {
		t.Errorf("status: exit %d:\n%s", code, out)
	}
	dir := t.TempDir()
	if code, out, errOut := runCLI(t, "batch", "results", done.ID, "--out", dir, "--home", home); code != 0 || !strings.HasPrefix(out, "saved the results of 3 units") {
		t.Fatalf("results --out: exit %d, %s%s", code, out, errOut)
	}
	for _, unit := range []string{"a.txt", "b.txt", "c.txt"} {
		if got, err := os.ReadFile(filepath.Join(dir, unit, "stdout")); err != nil || string(got) != "hello from dms: args=["+unit+"]\n" {
			t.Errorf("%s/stdout: %q, %v", unit, got, err)
		}
	}
	code, out, _ = runCLI(t, "peers", "reputation", "-o", "json", "--home", home)
	var rep []api.PeerReputation
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("reputation: exit %d, %s", code, out)
	}
	agreed := map[string]int{}
	for _, p := range rep {
		agreed[p.ID] = p.Agreed
		if p.Distrusted || p.Disagreed != 0 {
			t.Errorf("an honest provider judged a liar: %+v", p)
		}
	}
	for _, d := range net.Nodes[1:] {
		if id := mustNode(t, d).PeerID; agreed[id] != 3 {
			t.Errorf("provider %s agreed %d times, want once a unit: %v", id, agreed[id], agreed)
		}
	}
	if code, _, errOut := runCLI(t, "batch", "cancel", done.ID, "--home", home); code != 1 || !strings.Contains(errOut, "already completed") {
		t.Fatalf("cancel of a completed batch: exit %d, %s", code, errOut)
	}
}

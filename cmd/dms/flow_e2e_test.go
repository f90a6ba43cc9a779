package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/bench"
)

// helloFlow is a flow of examples/hello's module: one step, a fan-out
// over a list after it, and a step that needs both. No step reads
// another's files, so a node need not fetch inputs.
const helloFlow = `name: hello-flow
steps:
  first:
    module: hello.wasm
    args: [one]
  fan:
    needs: [first]
    for_each: [x, y]
    module: hello.wasm
    args: ["{{item}}", "{{index}}"]
  last:
    needs: [first, fan]
    module: hello.wasm
    args: [two]
outputs: [first.stdout, fan.stdout, last.stdout]
`

// helloFlowFile writes helloFlow next to a copy of examples/hello's module.
func helloFlowFile(t *testing.T) string {
	t.Helper()
	module, err := os.ReadFile(filepath.Join("..", "..", "examples", "hello", "hello.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.wasm"), module, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "flow.yaml")
	if err := os.WriteFile(path, []byte(helloFlow), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// helloFlowOutput is what `dms flow run` prints of helloFlow's outputs.
const helloFlowOutput = `==> first.stdout <==
hello from dms: args=[one]
==> fan.stdout/0 <==
hello from dms: args=[x 0]
==> fan.stdout/1 <==
hello from dms: args=[y 1]
==> last.stdout <==
hello from dms: args=[two]
`

// TestDevstackRunsAFlow: `dms devstack --flow` runs a flow on a network
// of real nodes and prints its outputs.
func TestDevstackRunsAFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of three nodes; skipped with -short")
	}
	code, out, errOut := runCLI(t, "devstack", "--nodes", "3", "--flow", helloFlowFile(t))
	if code != 0 || out != helloFlowOutput {
		t.Fatalf("exit %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, helloFlowOutput, errOut)
	}
	for _, want := range []string{"first: completed\n", "fan: completed, 2/2 done\n", "last: completed\n", "completed in "} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// TestDevstackWordcount is the example's promise: `dms devstack --flow
// examples/wordcount/flow.yaml` prints the word counts of its text/,
// expected.txt, under the name of its one output.
func TestDevstackWordcount(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of three nodes; skipped with -short")
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "examples", "wordcount", "expected.txt"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "devstack", "--nodes", "3", "--flow", filepath.Join("..", "..", "examples", "wordcount", "flow.yaml"))
	if code != 0 || out != "==> reduce.stdout <==\n"+string(want) {
		t.Fatalf("exit %d, stdout:\n%.400s\nwant expected.txt\nstderr:\n%s", code, out, errOut)
	}
}

func TestDevstackJobOrFlow(t *testing.T) {
	code, _, errOut := runCLI(t, "devstack", "--job", "a.yaml", "--flow", "b.yaml")
	if code != 1 || !strings.Contains(errOut, "--job and --flow: give one of them") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestFlowEndToEnd drives the flow commands over HTTP against a real
// requester (node 0, its API on, no compute) and a provider: a flow runs
// on the provider and answers; run again, every instance is served from
// the cache and says so; status, list and outputs --out show it.
func TestFlowEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of two nodes; skipped with -short")
	}
	net := requesterNet(t, 2)
	home := net.Homes[0]
	file := helloFlowFile(t)

	code, out, errOut := runCLI(t, "flow", "run", file, "--home", home)
	if code != 0 || out != helloFlowOutput {
		t.Fatalf("first run: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	provider := mustNode(t, net.Nodes[1]).PeerID
	code, out, errOut = runCLI(t, "flow", "run", file, "--home", home, "-o", "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var again api.Flow
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &again) != nil || again.State != api.FlowCompleted {
		t.Fatalf("second run: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, st := range again.Steps {
		if st.Counts.Cached != st.Counts.Total || st.Counts.Total == 0 {
			t.Errorf("second run: step %s not served from the cache: %+v", st.Name, st.Counts)
		}
	}
	if len(again.Outputs) != 4 || again.Outputs[0].Node != provider {
		t.Errorf("outputs %+v: want 4, held by the provider %s", again.Outputs, provider)
	}

	code, out, _ = runCLI(t, "flow", "status", again.ID, "--home", home)
	for _, want := range []string{"flow " + again.ID + " (hello-flow): completed", "  first                    completed (cached)\n",
		"  └─ fan                   completed           2/2 done, 2 cached\n", "  last (needs fan, first)  completed (cached)\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ := runCLI(t, "flow", "list", "--home", home); code != 0 || strings.Count(out, "hello-flow  completed  3/3") != 2 {
		t.Errorf("list: exit %d:\n%s", code, out)
	}
	dir := t.TempDir()
	if code, out, errOut := runCLI(t, "flow", "outputs", again.ID, "--out", dir, "--home", home); code != 0 {
		t.Fatalf("outputs --out: exit %d, %s%s", code, out, errOut)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "fan.stdout", "1")); err != nil || string(got) != "hello from dms: args=[y 1]\n" {
		t.Fatalf("fan.stdout/1: %q, %v", got, err)
	}
	if code, _, errOut := runCLI(t, "flow", "cancel", again.ID, "--home", home); code != 1 || !strings.Contains(errOut, "already completed") {
		t.Fatalf("cancel of a completed flow: exit %d, %s", code, errOut)
	}
}

// requesterNet starts n nodes on loopback: node 0 a requester with its
// API on and no compute, the others providers. The test closes them.
func requesterNet(t *testing.T, n int) *bench.Network {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	net, err := bench.StartNetwork(ctx, bench.NetworkConfig{
		Nodes: n, Compute: func(i int) bool { return i > 0 },
		Options:       func(i int) []dms.Option { return devstackAPI(i) },
		BenchDuration: devstackBench, Ready: bench.ReadyAnyPeer,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	return net
}

func mustNode(t *testing.T, d *dms.DMS) api.NodeInfo {
	t.Helper()
	info, err := d.Node(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

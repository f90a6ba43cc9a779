package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The scenarios themselves are tested in dms/bench; these test the
// command: its flags, its errors and its two output formats.

func TestBenchNeedsAScenario(t *testing.T) {
	code, _, errOut := runCLI(t, "bench")
	if code != 1 || !strings.Contains(errOut, "no --scenario") || !strings.Contains(errOut, "sequential, burst") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestBenchUnknownScenarioListsTheOthers(t *testing.T) {
	code, out, errOut := runCLI(t, "bench", "--scenario", "nope")
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, name := range []string{`"nope"`, "sequential", "node-loss", "memory", "large-wasm", "or all"} {
		if !strings.Contains(errOut, name) {
			t.Errorf("stderr %q does not name %s", errOut, name)
		}
	}
}

func TestBenchList(t *testing.T) {
	code, out, _ := runCLI(t, "bench", "--list")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, name := range []string{"sequential", "burst", "throughput", "node-loss", "memory", "large-wasm"} {
		if !strings.Contains(out, name) {
			t.Errorf("--list does not name %s:\n%s", name, out)
		}
	}
}

func TestBenchJSONIsOneObjectPerLine(t *testing.T) {
	code, out, errOut := runCLI(t, "bench", "--scenario", "large-wasm", "--quick", "-o", "json", "--dir", t.TempDir(), "--log-level", "warn")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1:\n%s", len(lines), out)
	}
	var res struct {
		Scenario string         `json:"scenario"`
		Results  map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &res); err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "large-wasm" || res.Results["jobs"] != 3.0 || res.Results["overhead_p50_ms"] == nil {
		t.Fatalf("result %+v", res)
	}
}

func TestBenchTable(t *testing.T) {
	code, out, errOut := runCLI(t, "bench", "--scenario", "sequential", "--quick", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, row := range []string{"KEY", "p50_ms", "p99_ms", "phases_p50_ms.running", "jobs "} {
		if !strings.Contains(out, row) {
			t.Errorf("no %q in the table:\n%s", row, out)
		}
	}
}

func TestBenchTableFlattensNestedFigures(t *testing.T) {
	var rows [][]string
	flatten("", map[string]any{
		"p99_ms": 1.5, "jobs": 3,
		"steps": []map[string]any{{"rate_per_s": 50}},
		"runs":  map[string]float64{"placed": 0.25},
	}, &rows)
	got := make([]string, len(rows))
	for i, r := range rows {
		got[i] = r[0] + "=" + r[1]
	}
	want := "jobs=3 p99_ms=1.5 runs.placed=0.25 steps.0.rate_per_s=50"
	if strings.Join(got, " ") != want {
		t.Fatalf("rows %v, want %s", got, want)
	}
}

// tinyCommand is the smallest WASI command: a _start that returns at once.
var tinyCommand = []byte("\x00asm\x01\x00\x00\x00" +
	"\x01\x04\x01\x60\x00\x00" + // type 0: () -> ()
	"\x03\x02\x01\x00" + // function 0 of type 0
	"\x07\x0a\x01\x06_start\x00\x00" + // exported as _start
	"\x0a\x04\x01\x02\x00\x0b") // its body: end

// devstack starts its network with bench.StartNetwork: it still places
// and runs a job.
func TestDevstackRunsAJob(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tiny.wasm"), tinyCommand, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(spec, []byte("name: tiny\nmodule: tiny.wasm\nresources: {cpu: 0.1, memory: 16MiB}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "devstack", "--nodes", "3", "--job", spec)
	if code != 0 || !strings.Contains(errOut, "completed") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
}

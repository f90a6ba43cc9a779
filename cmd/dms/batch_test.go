package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/orchestrator/quorum"
	"github.com/opendms/dms/types"
)

// squaresBatch runs hello.wasm once per file of parts/.
const squaresBatch = `name: squares
template:
  module: hello.wasm
  args: ["{{unit}}"]
units:
  dir: parts
replication: 2
`

// batchFile writes a batch spec next to a module hello.wasm and a
// directory parts/ of four files, and returns its path.
func batchFile(t *testing.T, spec string) string {
	t.Helper()
	dir := filepath.Dir(jobFile(t, ""))
	if err := os.MkdirAll(filepath.Join(dir, "parts"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		if err := os.WriteFile(filepath.Join(dir, "parts", name+".txt"), []byte("part "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "batch.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// snap is batch b-1 in state with counts, updated ms after flowT0.
func snap(state string, c api.BatchCounts, ms int) api.Batch {
	return api.Batch{ID: "b-1", Name: "squares", State: state, Counts: c, CreatedAt: flowT0, UpdatedAt: flowT0.Add(time.Duration(ms) * time.Millisecond)}
}

// squaresRun scripts a run of squaresBatch as batch b-1: the first watch
// sees it start and is then dropped, as when the daemon restarts; the
// second sees the rest, to end with final. It returns final.
func squaresRun(svc *fakeService, final api.Batch) api.Batch {
	run := api.BatchRunning
	svc.scriptBatchWatches(
		[]api.Batch{
			snap(run, api.BatchCounts{Units: 4, Queued: 4}, 0),
			snap(run, api.BatchCounts{Units: 4, Running: 3, Queued: 1, Replicas: 6}, 100),
		},
		[]api.Batch{
			snap(run, api.BatchCounts{Units: 4, Completed: 2, Running: 2, Replicas: 8, Rate: 1, ETA: 2 * time.Second}, 1000),
			snap(run, api.BatchCounts{Units: 4, Completed: 3, Running: 1, Replicas: 9, Disagreed: 1, Rate: 1.5, ETA: time.Second}, 2000),
			final,
		})
	return final
}

var squaresDone = snap(api.BatchCompleted, api.BatchCounts{Units: 4, Completed: 4, Replicas: 10, Disagreed: 1, Late: 1}, 2500)

func TestBatchRun(t *testing.T) {
	svc := newFakeService()
	squaresRun(svc, squaresDone)
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "batch", "run", batchFile(t, squaresBatch), "--home", home)
	want := `submitted batch b-1 (4 units)
batch b-1: 0/4 done, 0 failed, 0 running, 4 queued; replicas 0, 0 disagreed, 0 late
batch b-1: 2/4 done, 0 failed, 2 running, 0 queued; replicas 8, 0 disagreed, 0 late
batch b-1: 3/4 done, 0 failed, 1 running, 0 queued; replicas 9, 1 disagreed, 0 late
batch b-1 (squares): completed, 2.5s
  [####################] 4/4 done, 0 failed, 0 running, 0 queued
  replicas 10, 1 disagreed, 1 late
save the results with ` + "`dms batch results b-1 --out DIR`" + `
`
	if code != 0 || out != "" || errOut != want {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
	}
	if svc.watches != 2 {
		t.Errorf("%d watches: the dropped one was not opened again", svc.watches)
	}
	spec := svc.batches["b-1"].Spec
	if spec == nil || spec.Template.Module == "hello.wasm" || spec.Units.Dir != "" || len(spec.Units.Files) != 4 ||
		spec.Units.Files["c.txt"] != svc.blob("part c") {
		t.Fatalf("the module and the units' files were not uploaded: %+v", spec)
	}
}

func TestBatchRunFailed(t *testing.T) {
	svc := newFakeService()
	failed := snap(api.BatchCompleted, api.BatchCounts{Units: 4, Completed: 3, Failed: 1, Replicas: 9}, 2500)
	failed.Reason = "1 of 4 units failed: no quorum within their replicas"
	squaresRun(svc, failed)
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "batch", "run", batchFile(t, squaresBatch), "--home", home)
	want := "  [####################] 3/4 done, 1 failed, 0 running, 0 queued\n  replicas 9, 0 disagreed, 0 late\n" +
		"  reason: 1 of 4 units failed: no quorum within their replicas\n" +
		"dms: batch b-1: 1 of 4 units failed (see `dms batch results b-1`)\n"
	if code != 1 || out != "" || !strings.HasSuffix(errOut, want) {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant it to end with:\n%s", code, out, errOut, want)
	}

	svc = newFakeService()
	cancelled := snap(api.BatchCancelled, api.BatchCounts{Units: 4, Completed: 1, Queued: 3, Replicas: 2}, 900)
	cancelled.Reason = "cancelled by its submitter"
	squaresRun(svc, cancelled)
	home = newDaemon(t, svc)
	code, _, errOut = runCLI(t, "batch", "run", batchFile(t, squaresBatch), "--home", home)
	if code != 1 || !strings.HasSuffix(errOut, "dms: batch b-1 cancelled: cancelled by its submitter\n") {
		t.Fatalf("cancelled: exit %d, stderr:\n%s", code, errOut)
	}
}

func TestBatchRunJSON(t *testing.T) {
	svc := newFakeService()
	squaresRun(svc, squaresDone)
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "batch", "run", batchFile(t, squaresBatch), "-o", "json", "--home", home)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 { // the snapshots of both watches
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	var last api.Batch
	for _, l := range lines {
		if err := json.Unmarshal([]byte(l), &last); err != nil || last.ID != "b-1" {
			t.Fatalf("not a batch: %s (%v)", l, err)
		}
	}
	if last.State != api.BatchCompleted || last.Counts.Completed != 4 {
		t.Fatalf("the last line is not the final batch: %+v", last)
	}
}

func TestBatchRunDetach(t *testing.T) {
	home := newDaemon(t, newFakeService())
	if code, out, errOut := runCLI(t, "batch", "run", batchFile(t, squaresBatch), "-d", "--home", home); code != 0 || out != "b-1\n" || errOut != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ := runCLI(t, "batch", "run", batchFile(t, squaresBatch), "--detach", "-o", "json", "--home", home)
	if code != 0 || strings.TrimSpace(out) != "{\n  \"id\": \"b-2\"\n}" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
}

// TestBatchRunCtrlC interrupts `dms batch run` while the batch runs: it
// stops following, says how to follow the batch again, and cancels
// nothing.
func TestBatchRunCtrlC(t *testing.T) {
	svc := newFakeService()
	svc.holdWatch, svc.held = true, make(chan struct{}, 1)
	svc.scriptBatchWatches([]api.Batch{snap(api.BatchRunning, api.BatchCounts{Units: 4, Running: 2, Queued: 2}, 0)})
	home := newDaemon(t, svc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan int)
	go func() {
		done <- execute(ctx, []string{"batch", "run", batchFile(t, squaresBatch), "--home", home}, &out, &errOut)
	}()
	select {
	case <-svc.held:
	case <-time.After(10 * time.Second):
		t.Fatal("dms batch run did not watch the batch")
	}
	eventually(t, 10*time.Second, "dms batch run to show the batch", func() bool { return strings.Contains(errOut.String(), "0/4 done") })
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("dms batch run did not return after Ctrl-C")
	}
	want := "dms: interrupted; batch b-1 goes on in the daemon: follow it with `dms batch status b-1 --watch`, stop it with `dms batch cancel b-1`\n"
	if code != 1 || !strings.HasSuffix(errOut.String(), want) || !strings.Contains(errOut.String(), "batch b-1: 0/4 done, 0 failed, 2 running, 2 queued") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
	}
	if b, _ := svc.GetBatch(context.Background(), "b-1"); b.State != api.BatchRunning {
		t.Fatalf("the batch was stopped: %s", b.State)
	}
}

// TestBatchRunBadInput: what is wrong in the file or the directory is
// said, and the daemon is not asked to run anything.
func TestBatchRunBadInput(t *testing.T) {
	svc := newFakeService()
	home := newDaemon(t, svc)
	missing := filepath.Join(t.TempDir(), "nothere.yaml")
	emptyDir := batchFile(t, squaresBatch)
	if err := os.RemoveAll(filepath.Join(filepath.Dir(emptyDir), "parts")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(filepath.Dir(emptyDir), "parts"), 0o755); err != nil {
		t.Fatal(err)
	}
	refuses(t, home, []string{"batch", "run"}, []badFile{
		{"missing file", missing, []string{"dms: batch spec: open " + missing + ": no such file or directory"}},
		{"bad quorum", batchFile(t, squaresBatch+"quorum: 3\n"),
			[]string{"batch.yaml: invalid batch spec:\n", "  quorum: 3 is outside 1 to the replication (2)"}},
		{"two kinds of units", batchFile(t, strings.Replace(squaresBatch, "dir: parts\n", "dir: parts\n  range: 1..3\n", 1)), []string{"units: give exactly one of range, params, dir or files"}},
		{"typo", batchFile(t, squaresBatch+"replicaton: 3\n"), []string{`unknown field "replicaton"`, `did you mean "replication"?`}},
		{"missing dir", batchFile(t, strings.Replace(squaresBatch, "dir: parts", "dir: nothere", 1)), []string{"units.dir: open ", "nothere: no such file or directory"}},
		{"empty dir", emptyDir, []string{"units.dir: ", "parts holds no files"}},
		{"missing module", batchFile(t, strings.Replace(squaresBatch, "hello.wasm", "nothere.wasm", 1)), []string{"template: api: uploading module", "nothere.wasm"}},
	})
	if len(svc.batches) != 0 {
		t.Fatalf("batches submitted: %v", svc.batches)
	}
}

func TestBatchStatus(t *testing.T) {
	svc := newFakeService()
	home := newDaemon(t, svc)
	if code, _, errOut := runCLI(t, "batch", "run", batchFile(t, squaresBatch+"adaptive: true\nmax_replicas: 5\n"), "-d", "--home", home); code != 0 {
		t.Fatal(errOut)
	}
	svc.putBatch(snap(api.BatchRunning, api.BatchCounts{Units: 4, Completed: 1, Failed: 1, Running: 1, Queued: 1, Replicas: 4, Rate: 0.5, ETA: 4 * time.Second}, 0))
	code, out, errOut := runCLI(t, "batch", "status", "b-1", "--home", home)
	for _, want := range []string{"batch b-1 (squares): running, ",
		"\n  [##########..........] 1/4 done, 1 failed, 1 running, 1 queued\n",
		"\n  replicas 4, 0 disagreed, 0 late; 0.50 units/s, ETA 4s\n",
		"\n  replication 2, quorum 2, max_replicas 5, adaptive, deadline 10m, parallel "} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status lacks %q: exit %d, stdout:\n%s%s", want, code, out, errOut)
		}
	}
	code, out, _ = runCLI(t, "batch", "status", "b-1", "-o", "json", "--home", home)
	var got api.Batch
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.ID != "b-1" || got.Counts.Failed != 1 || got.Spec == nil || !got.Spec.Adaptive {
		t.Fatalf("status json: exit %d, %s", code, out)
	}
	if code, _, errOut := runCLI(t, "batch", "status", "b-9", "--home", home); code != 1 || !strings.Contains(errOut, "batch b-9") {
		t.Fatalf("unknown batch: exit %d, %s", code, errOut)
	}
}

// TestBatchStatusWatch follows a batch to its end: a line per tenth of
// its units ended, then its picture; with --output json, the snapshots.
func TestBatchStatusWatch(t *testing.T) {
	svc := newFakeService()
	svc.putBatch(snap(api.BatchRunning, api.BatchCounts{Units: 4, Queued: 4}, 0))
	squaresRun(svc, squaresDone)
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "batch", "status", "b-1", "--watch", "--home", home)
	if code != 0 || strings.Count(out, "\n") != 6 || !strings.HasSuffix(out, "batch b-1 (squares): completed, 2.5s\n"+
		"  [####################] 4/4 done, 0 failed, 0 running, 0 queued\n  replicas 10, 1 disagreed, 1 late\n") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	squaresRun(svc, squaresDone)
	code, out, _ = runCLI(t, "batch", "status", "b-1", "-w", "-o", "json", "--home", home)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var last api.Batch
	if code != 0 || len(lines) != 5 || json.Unmarshal([]byte(lines[4]), &last) != nil || last.State != api.BatchCompleted {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestBatchListCancel(t *testing.T) {
	svc := newFakeService()
	busy := snap(api.BatchRunning, api.BatchCounts{Units: 100, Completed: 37, Running: 8, Queued: 55}, 0)
	busy.ID = "b-busy"
	finished := snap(api.BatchCompleted, api.BatchCounts{Units: 10, Completed: 9, Failed: 1}, 0)
	finished.ID = "b-done"
	for _, b := range []api.Batch{busy, finished} {
		svc.putBatch(b)
	}
	home := newDaemon(t, svc)
	runCases(t, home, []cliCase{
		{[]string{"batch", "list"}, 0, "ID      NAME     STATE      DONE    FAILED  CREATED\n"},
		{[]string{"batch", "list"}, 0, "b-busy  squares  running    37/100  0       2026-12-01 "},
		{[]string{"batch", "list"}, 0, "b-done  squares  completed  9/10    1       2026-12-01 "},
		{[]string{"batch", "list", "-o", "json"}, 0, `"id": "b-busy"`},
		{[]string{"batch", "cancel", "b-busy"}, 0, "cancelled batch b-busy"},
		{[]string{"batch", "cancel", "b-done"}, 1, "already completed"},
		{[]string{"batch", "cancel", "b-nope"}, 1, "b-nope"},
		{[]string{"batch", "frobnicate"}, 1, `unknown command "frobnicate" for "dms batch"`},
		{[]string{"batch", "results"}, 1, "takes one ID argument"},
	})
}

// resultsBatch stores batch b-1 of five units: two completed (one with
// output files), one failed, one running, one queued.
func resultsBatch(svc *fakeService, first string) {
	svc.putBatch(snap(api.BatchRunning, api.BatchCounts{Units: 5, Completed: 2, Failed: 1, Running: 1, Queued: 1}, 0))
	res := func(stdout string, files map[string]string) *types.Result {
		r := &types.Result{Stdout: svc.blob(stdout), Stderr: svc.blob(""), Files: map[string]string{}}
		for name, content := range files {
			r.Files[name] = svc.blob(content)
		}
		return r
	}
	svc.units = map[string][]api.BatchUnit{"b-1": {
		{Index: 0, Value: first, State: api.BatchCompleted, Result: res("one\n", nil), Node: "12D3KooWProducerNode", Replicas: make([]quorum.Replica, 2)},
		{Index: 1, Value: "b.txt", State: api.BatchCompleted, Result: res("two\n", map[string]string{"sq.txt": "4", "sub/more.txt": "more"}), Replicas: make([]quorum.Replica, 2)},
		{Index: 2, Value: "c.txt", State: api.BatchFailed, Failure: "no quorum of 2 after 5 replicas: 2 results that disagree", Replicas: make([]quorum.Replica, 5)},
		{Index: 3, Value: "d.txt", State: api.BatchRunning, Replicas: make([]quorum.Replica, 1)},
		{Index: 4, Value: "e.txt", State: api.BatchQueued},
	}}
}

func TestBatchResults(t *testing.T) {
	svc := newFakeService()
	resultsBatch(svc, "a.txt")
	home := newDaemon(t, svc)
	one := svc.blob("one\n")
	runCases(t, home, []cliCase{
		{[]string{"batch", "results", "b-1"}, 0, "INDEX  VALUE  STATE      REPLICAS  NODE       RESULT\n0      a.txt  completed  2         …ucerNode  " + one + "\n"},
		{[]string{"batch", "results", "b-1"}, 0, " (+2 files)\n"},
		{[]string{"batch", "results", "b-1"}, 0, "2      c.txt  failed     5         -          no quorum of 2 after 5 replicas: 2 results that disagree\n"},
		{[]string{"batch", "results", "b-1"}, 0, "4      e.txt  queued     0         -          -\n"},
		{[]string{"batch", "results", "b-1", "-o", "json"}, 0, `"failure": "no quorum of 2 after 5 replicas`},
		{[]string{"batch", "results", "b-9"}, 1, "batch b-9"},
	})

	dir := filepath.Join(t.TempDir(), "out")
	code, out, errOut := runCLI(t, "batch", "results", "b-1", "--out", dir, "--home", home)
	if code != 1 || out != "saved the results of 2 units in "+dir+": 4 files, 13 B\n" ||
		errOut != "unit 2 (c.txt) failed: no quorum of 2 after 5 replicas: 2 results that disagree\n"+
			"batch b-1: 2 units not ended yet (follow it with `dms batch status b-1 --watch`)\n"+
			"dms: batch b-1: 1 of 5 units failed (listed above)\n" {
		t.Fatalf("--out: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	for name, want := range map[string]string{"a.txt/stdout": "one\n", "b.txt/stdout": "two\n", "b.txt/outputs/sq.txt": "4", "b.txt/outputs/sub/more.txt": "more"} {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name))); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("%s holds %v: want only the completed units", dir, entries)
	}
	code, out, _ = runCLI(t, "batch", "results", "b-1", "--out", dir, "-o", "json", "--home", home)
	var units []api.BatchUnit
	if code != 1 || json.Unmarshal([]byte(out), &units) != nil || len(units) != 5 {
		t.Fatalf("--out -o json: exit %d, %s", code, out)
	}
}

// TestBatchResultsRefusesEscapes: a unit value that would land outside
// --out is refused, and nothing at all is written.
func TestBatchResultsRefusesEscapes(t *testing.T) {
	for _, bad := range []string{"..", "../x", "/etc", "a/../../x", ""} {
		t.Run(bad, func(t *testing.T) {
			svc := newFakeService()
			resultsBatch(svc, bad)
			home := newDaemon(t, svc)
			root := t.TempDir()
			code, out, errOut := runCLI(t, "batch", "results", "b-1", "--out", filepath.Join(root, "out"), "--home", home)
			if code != 1 || out != "" || !strings.Contains(errOut, "would be written outside the directory: refused, nothing written") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Fatalf("written: %v", entries)
			}
		})
	}
}

// TestBatchResultsPages: a batch of more units than a page is read a page
// at a time, whole.
func TestBatchResultsPages(t *testing.T) {
	svc := newFakeService()
	n := 2*api.MaxUnitsPage + 7
	svc.putBatch(snap(api.BatchRunning, api.BatchCounts{Units: n, Queued: n}, 0))
	units := make([]api.BatchUnit, n)
	for i := range units {
		units[i] = api.BatchUnit{Index: i, State: api.BatchQueued}
	}
	svc.units = map[string][]api.BatchUnit{"b-1": units}
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "batch", "results", "b-1", "-o", "json", "--home", home)
	var got []api.BatchUnit
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != n || got[n-1].Index != n-1 {
		t.Fatalf("exit %d, %d units, stderr %q", code, len(got), errOut)
	}
}

func TestBatchMissingDaemon(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{{"batch", "list"}, {"batch", "status", "b-1"}, {"batch", "run", batchFile(t, squaresBatch)}} {
		code, _, errOut := runCLI(t, append(args, "--home", home)...)
		if code != 1 || !strings.Contains(errOut, "no running daemon for home") {
			t.Errorf("dms %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
}

// TestBatchExample: examples/hello/batch.yaml uploads and submits as it
// says.
func TestBatchExample(t *testing.T) {
	svc := newFakeService()
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "batch", "run", filepath.Join("..", "..", "examples", "hello", "batch.yaml"), "-d", "--home", home)
	if code != 0 || out != "b-1\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if b := svc.batches["b-1"].Spec; b.Len() != 20 || b.Replication != 2 || b.Quorum != 2 || svc.blobs[b.Template.Module] == nil {
		t.Fatalf("the example as submitted: %+v", b)
	}
}

// TestBatchLines: a batch's picture shows the rate and the time left only
// while it runs, and why it ended when it did not end well.
func TestBatchLines(t *testing.T) {
	run := snap(api.BatchRunning, api.BatchCounts{Units: 1000, Completed: 500, Failed: 10, Running: 64, Queued: 426, Replicas: 1100, Rate: 12.4, ETA: 41 * time.Second}, 0)
	want := []string{
		"batch b-1 (squares): running, 1m0s",
		"  [##########..........] 500/1000 done, 10 failed, 64 running, 426 queued",
		"  replicas 1100, 0 disagreed, 0 late; 12 units/s, ETA 41s",
	}
	if got := batchLines(run, flowT0.Add(time.Minute)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("running:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	over := run
	over.State, over.Reason, over.UpdatedAt = api.BatchCancelled, "cancelled by its submitter", flowT0.Add(90*time.Second)
	got := batchLines(over, flowT0.Add(time.Hour))
	if len(got) != 4 || got[0] != "batch b-1 (squares): cancelled, 1m30s" || got[2] != "  replicas 1100, 0 disagreed, 0 late" ||
		got[3] != "  reason: cancelled by its submitter" {
		t.Fatalf("cancelled:\n%s", strings.Join(got, "\n"))
	}
}

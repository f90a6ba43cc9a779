package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
)

// flowFile writes a flow spec next to a module hello.wasm and returns its
// path.
func flowFile(t *testing.T, spec string) string {
	t.Helper()
	path := jobFile(t, "")
	path = filepath.Join(filepath.Dir(path), "flow.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const wordcountFlow = `name: wordcount
steps:
  split:
    module: hello.wasm
  count:
    for_each: split/*
    module: hello.wasm
    inputs:
      part.txt: item
  reduce:
    module: hello.wasm
    inputs:
      counts/: count.stdout
`

// wordcountRun scripts a run of wordcountFlow as flow f-1: the first watch
// sees split served from the cache and is then dropped, as the daemon
// drops a slow watcher; the second sees the rest, to the end. It returns
// the final flow.
func wordcountRun(svc *fakeService, outs ...api.Output) api.Flow {
	run, done := api.FlowRunning, api.FlowCompleted
	at := func(ms int) time.Time { return flowT0.Add(time.Duration(ms) * time.Millisecond) }
	ev := func(step string, in api.FlowInstance) api.FlowEvent {
		return api.FlowEvent{Step: step, Instance: &in, At: at(100)}
	}
	start := testFlow(run, "",
		flowStep("split", false, run, nil),
		flowStep("count", true, run, []string{"split"}),
		flowStep("reduce", false, run, []string{"count"}))
	start.UpdatedAt = flowT0
	mid := testFlow(run, "",
		flowStep("split", false, run, nil, inst(0, "", "cached")),
		flowStep("count", true, run, []string{"split"}, fanInsts(3, 0, 0, 0)...),
		flowStep("reduce", false, run, []string{"count"}))
	end := testFlow(done, "",
		flowStep("split", false, done, nil, inst(0, "", "cached")),
		flowStep("count", true, done, []string{"split"}, fanInsts(3, 3, 1, 0)...),
		flowStep("reduce", false, done, []string{"count"}, inst(0, "", done)))
	end.Outputs = outs
	svc.scriptWatches(
		[]api.FlowEvent{
			{Flow: &start, State: run, At: flowT0},
			ev("split", inst(0, "", api.FlowPending)),
			ev("split", inst(0, "", "cached")),
			ev("count", inst(0, "part-0.txt", api.FlowPending)),
		},
		[]api.FlowEvent{
			{Flow: &mid, State: run, At: at(200)},
			ev("count", inst(0, "part-0.txt", api.FlowRunning)),
			ev("count", inst(1, "part-1.txt", "cached")),
			ev("count", inst(2, "part-2.txt", api.FlowRunning)),
			ev("count", inst(0, "part-0.txt", done)),
			ev("count", inst(2, "part-2.txt", done)),
			ev("reduce", inst(0, "", api.FlowPending)),
			ev("reduce", inst(0, "", api.FlowRunning)),
			ev("reduce", inst(0, "", done)),
			{Flow: &end, State: done, At: end.UpdatedAt},
		})
	return end
}

func TestFlowRun(t *testing.T) {
	svc := newFakeService()
	big := bytes.Repeat([]byte("x"), maxShownOutput+1)
	bigCID := svc.blob(string(big))
	wordcountRun(svc,
		api.Output{Name: "reduce.stdout", CID: svc.blob("the\t3\ndms\t2"), Size: 11},
		api.Output{Name: "count.stdout/part-0.txt", CID: svc.blob("\x00\x01binary"), Size: 8},
		api.Output{Name: "split/big.txt", CID: bigCID, Size: int64(len(big))})
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "flow", "run", flowFile(t, wordcountFlow), "--home", home)
	if code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	wantErr := `submitted flow f-1
split: completed (cached)
count: running, 0/3 done, 1 running
count: completed, 3/3 done, 1 cached
reduce: running
reduce: completed
flow f-1 completed in 2.5s
`
	if errOut != wantErr {
		t.Errorf("progress:\n%s\nwant:\n%s", errOut, wantErr)
	}
	wantOut := "==> reduce.stdout <==\nthe\t3\ndms\t2\n" +
		"==> count.stdout/part-0.txt <==\n" + svc.blob("\x00\x01binary") + " (8 B, not text; save it with `dms flow outputs f-1 --out DIR`)\n" +
		"==> split/big.txt <==\n" + bigCID + " (64.0 KiB: larger than 64 KiB; save it with `dms flow outputs f-1 --out DIR`)\n"
	if out != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, wantOut)
	}
	if svc.watches != 2 {
		t.Errorf("%d watches: the dropped one was not opened again", svc.watches)
	}
	spec := svc.flows["f-1"].Spec
	if spec == nil || spec.Step("split").Job.Module == "hello.wasm" {
		t.Fatalf("the module was not uploaded: %+v", spec)
	}
}

func TestFlowRunFailed(t *testing.T) {
	svc := newFakeService()
	failed := api.FlowFailed
	reason := "step count [part-1.txt]: job j-2 exited with code 1: boom"
	start := testFlow(api.FlowRunning, "", flowStep("split", false, api.FlowRunning, nil), flowStep("count", true, api.FlowRunning, []string{"split"}))
	end := testFlow(failed, reason,
		flowStep("split", false, failed, nil, inst(0, "", api.FlowCompleted)),
		flowStep("count", true, failed, []string{"split"}, inst(0, "part-0.txt", api.FlowCompleted), failedInst(1, "part-1.txt", "job j-2 exited with code 1: boom")),
		flowStep("reduce", false, failed, []string{"count"}))
	svc.scriptWatches([]api.FlowEvent{{Flow: &start}, {Flow: &end, State: failed, Reason: reason}})
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "flow", "run", flowFile(t, wordcountFlow), "--home", home)
	want := "submitted flow f-1\nsplit: completed\ncount: failed, 1/2 done, 1 failed: [part-1.txt] job j-2 exited with code 1: boom\nreduce: skipped\n" +
		"dms: flow f-1 failed: " + reason + "\n"
	if code != 1 || out != "" || errOut != want {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
	}
}

func TestFlowRunJSON(t *testing.T) {
	svc := newFakeService()
	wordcountRun(svc, api.Output{Name: "reduce.stdout", CID: svc.blob("the\t3\n"), Size: 6})
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "flow", "run", flowFile(t, wordcountFlow), "-o", "json", "--home", home)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 15 { // the events of both watches, then the flow
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	for _, l := range lines[:len(lines)-1] {
		var ev api.FlowEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.At.IsZero() {
			t.Fatalf("not an event: %s (%v)", l, err)
		}
	}
	var final api.Flow
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &final); err != nil || final.ID != "f-1" || final.State != "completed" || len(final.Outputs) != 1 {
		t.Fatalf("last line is not the final flow: %s (%v)", lines[len(lines)-1], err)
	}
}

func TestFlowRunDetach(t *testing.T) {
	home := newDaemon(t, newFakeService())
	if code, out, errOut := runCLI(t, "flow", "run", flowFile(t, wordcountFlow), "-d", "--home", home); code != 0 || out != "f-1\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ := runCLI(t, "flow", "run", flowFile(t, wordcountFlow), "--detach", "-o", "json", "--home", home)
	if code != 0 || strings.TrimSpace(out) != "{\n  \"id\": \"f-2\"\n}" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
}

// TestFlowRunCtrlC interrupts `dms flow run` while the flow runs: it
// stops following, says how to follow the flow again, and cancels
// nothing.
func TestFlowRunCtrlC(t *testing.T) {
	svc := newFakeService()
	svc.holdWatch, svc.held = true, make(chan struct{}, 1)
	run := api.FlowRunning
	f := testFlow(run, "", flowStep("split", false, run, nil, inst(0, "", run)))
	svc.scriptWatches([]api.FlowEvent{{Flow: &f, State: run}})
	home := newDaemon(t, svc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	args := []string{"flow", "run", flowFile(t, wordcountFlow), "--home", home}
	done := make(chan int)
	go func() { done <- execute(ctx, args, &out, &errOut) }()
	eventually(t, 10*time.Second, "dms flow run to show the flow", func() bool { return strings.Contains(errOut.String(), "split: running\n") })
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("dms flow run did not return after Ctrl-C")
	}
	want := "dms: interrupted; flow f-1 goes on in the daemon: follow it with `dms flow status f-1 --watch`, stop it with `dms flow cancel f-1`\n"
	if code != 1 || !strings.HasSuffix(errOut.String(), want) || !strings.Contains(errOut.String(), "split: running\n") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
	}
	if fl, _ := svc.GetFlow(context.Background(), "f-1"); fl.State != run {
		t.Fatalf("the flow was stopped: %s", fl.State)
	}
}

// lockedBuffer is a buffer a test reads while a command writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestFlowRunBadInput: what is wrong in the file is said with its line,
// and the daemon is not asked.
func TestFlowRunBadInput(t *testing.T) {
	svc := newFakeService()
	home := newDaemon(t, svc)
	missing := filepath.Join(t.TempDir(), "nothere.yaml")
	refuses(t, home, []string{"flow", "run"}, []badFile{
		{"missing file", missing, []string{"dms: flow spec: open " + missing + ": no such file or directory"}},
		{"cycle", flowFile(t, "name: cyc\nsteps:\n  a:\n    module: hello.wasm\n    needs: [b]\n  b:\n    module: hello.wasm\n    inputs: {x: a.stdout}\n"),
			[]string{"flow.yaml: invalid flow spec:\n", "  steps: cycle: a -> b -> a (line 3)\n"}},
		{"unknown step", flowFile(t, "name: x\nsteps:\n  a:\n    module: hello.wasm\n    inputs: {x: nope.stdout}\n"),
			[]string{"steps.a.inputs.x: nope.stdout names no step (step at line 3)"}},
		{"fan-out as one file", flowFile(t, "name: x\nsteps:\n  a:\n    module: hello.wasm\n    for_each: [p, q]\n  b:\n    module: hello.wasm\n    inputs: {x: a.stdout}\n"),
			[]string{"give it a key ending in / (a directory) (step at line 6)"}},
		{"yaml syntax", flowFile(t, "name: [x\n"), []string{"line"}},
		{"missing module", flowFile(t, "name: x\nsteps:\n  a:\n    module: nothere.wasm\n"), []string{"nothere.wasm"}},
	})
	if len(svc.flows) != 0 {
		t.Fatalf("flows submitted: %v", svc.flows)
	}
}

func TestFlowStatus(t *testing.T) {
	svc := newFakeService()
	run := api.FlowRunning
	svc.putFlow(testFlow(run, "",
		flowStep("split", false, run, nil, inst(0, "", "cached")),
		flowStep("count", true, run, []string{"split"}, fanInsts(40, 10, 5, 2)...)))
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "flow", "status", "f-1", "--home", home)
	for _, want := range []string{"flow f-1 (wordcount): running, ", "\n  split     completed (cached)\n",
		"\n  └─ count  running             10/40 done, 5 cached, 2 running [#####...............]\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status lacks %q: exit %d, stdout:\n%s%s", want, code, out, errOut)
		}
	}
	code, out, _ = runCLI(t, "flow", "status", "f-1", "-o", "json", "--home", home)
	var got api.Flow
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.ID != "f-1" || len(got.Steps) != 2 || got.Steps[1].Counts.Cached != 5 {
		t.Fatalf("status json: exit %d, %s", code, out)
	}
	if code, _, errOut := runCLI(t, "flow", "status", "f-9", "--home", home); code != 1 || !strings.Contains(errOut, "flow f-9") {
		t.Fatalf("unknown flow: exit %d, %s", code, errOut)
	}
}

// TestFlowStatusWatch follows a flow to its end: a line per step change,
// then the tree; with --output json, the events and the flow.
func TestFlowStatusWatch(t *testing.T) {
	svc := newFakeService()
	wordcountRun(svc)
	svc.putFlow(testFlow(api.FlowRunning, ""))
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "flow", "status", "f-1", "--watch", "--home", home)
	want := `split: completed (cached)
count: running, 0/3 done, 1 running
count: completed, 3/3 done, 1 cached
reduce: running
reduce: completed
flow f-1 completed in 2.5s
flow f-1 (wordcount): completed, 2.5s
  split         completed (cached)
  └─ count      completed           3/3 done, 1 cached
     └─ reduce  completed
`
	if code != 0 || out != want {
		t.Fatalf("exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}
	wordcountRun(svc)
	code, out, _ = runCLI(t, "flow", "status", "f-1", "-w", "-o", "json", "--home", home)
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			t.Fatalf("not JSON: %s", sc.Text())
		}
		n++
	}
	if code != 0 || n != 15 {
		t.Fatalf("exit %d, %d lines:\n%s", code, n, out)
	}
}

func TestFlowListCancelOutputs(t *testing.T) {
	svc := newFakeService()
	run, done := api.FlowRunning, api.FlowCompleted
	busy := testFlow(run, "", flowStep("a", false, run, nil, inst(0, "", done)), flowStep("b", false, run, []string{"a"}))
	busy.ID = "f-busy"
	finished := testFlow(done, "", flowStep("a", false, done, nil, inst(0, "", done)))
	finished.ID = "f-done"
	finished.Outputs = []api.Output{
		{Name: "a.stdout", CID: svc.blob("out\n"), Size: 4, Node: "12D3KooWProducerNode"},
		{Name: "b.stdout/part-0.txt", CID: svc.blob("part\n"), Size: 5},
	}
	failed := testFlow(api.FlowFailed, "step a: boom", flowStep("a", false, api.FlowFailed, nil, failedInst(0, "", "boom")))
	failed.ID = "f-failed"
	for _, f := range []api.Flow{busy, finished, failed} {
		svc.putFlow(f)
	}
	home := newDaemon(t, svc)
	runCases(t, home, []cliCase{
		{[]string{"flow", "list"}, 0, "ID        NAME       STATE      STEPS  CREATED\n"},
		{[]string{"flow", "list"}, 0, "f-busy    wordcount  running    1/2    2026-12-01 "},
		{[]string{"flow", "list"}, 0, "f-done    wordcount  completed  1/1    2026-12-01 "},
		{[]string{"flow", "list", "-o", "json"}, 0, `"id": "f-failed"`},
		{[]string{"flow", "outputs", "f-done"}, 0, "a.stdout             " + finished.Outputs[0].CID + "  4 B   …ucerNode"},
		{[]string{"flow", "outputs", "f-done", "-o", "json"}, 0, `"name": "b.stdout/part-0.txt"`},
		{[]string{"flow", "outputs", "f-busy"}, 1, "flow f-busy is running: no outputs yet (follow it with `dms flow status f-busy --watch`)"},
		{[]string{"flow", "outputs", "f-failed"}, 1, "flow f-failed failed: step a: boom: it has no outputs"},
		{[]string{"flow", "cancel", "f-busy"}, 0, "cancelled flow f-busy"},
		{[]string{"flow", "cancel", "f-done"}, 1, "already completed"},
		{[]string{"flow", "cancel", "f-nope"}, 1, "f-nope"},
		{[]string{"flow", "frobnicate"}, 1, `unknown command "frobnicate" for "dms flow"`},
		{[]string{"flow", "status"}, 1, "takes one ID argument"},
	})

	dir := filepath.Join(t.TempDir(), "out")
	code, out, errOut := runCLI(t, "flow", "outputs", "f-done", "--out", dir, "--home", home)
	if code != 0 || !strings.Contains(out, filepath.Join(dir, "b.stdout", "part-0.txt")+"  5 B\n") {
		t.Fatalf("--out: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for name, want := range map[string]string{"a.stdout": "out\n", "b.stdout/part-0.txt": "part\n"} {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name))); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
}

// TestFlowOutputsRefusesEscapes: an output name that would land outside
// --out is refused, and nothing at all is written.
func TestFlowOutputsRefusesEscapes(t *testing.T) {
	for _, bad := range []string{"../x", "a/../../x", "/etc/x", "a/./b", ""} {
		t.Run(bad, func(t *testing.T) {
			svc := newFakeService()
			f := testFlow(api.FlowCompleted, "")
			f.Outputs = []api.Output{{Name: "fine.txt", CID: svc.blob("fine")}, {Name: bad, CID: svc.blob("evil")}}
			svc.putFlow(f)
			home := newDaemon(t, svc)
			root := t.TempDir()
			dir := filepath.Join(root, "out")
			code, out, errOut := runCLI(t, "flow", "outputs", "f-1", "--out", dir, "--home", home)
			if code != 1 || out != "" || !strings.Contains(errOut, "would be written outside the directory: refused, nothing written") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Fatalf("written: %v", entries)
			}
		})
	}
}

func TestFlowMissingDaemon(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{{"flow", "list"}, {"flow", "status", "f-1"}, {"flow", "run", flowFile(t, wordcountFlow)}} {
		code, _, errOut := runCLI(t, append(args, "--home", home)...)
		if code != 1 || !strings.Contains(errOut, "no running daemon for home") {
			t.Errorf("dms %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

// runCLI runs the command line and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// jobFile writes a job spec next to a module hello.wasm and an input
// directory in/, and returns its path.
func jobFile(t *testing.T, spec string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in", "data.txt"), []byte("input"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const helloSpec = "name: hello\nmodule: hello.wasm\n"

// completedRun is a job that bids, runs on a peer and completes.
func completedRun(svc *fakeService, exitCode int, stdout, stderr string) {
	res := &types.Result{ExitCode: exitCode, Stdout: svc.blob(stdout), Stderr: svc.blob(stderr), DurationMillis: 12}
	svc.events = []api.Job{
		{State: types.JobPending},
		{State: types.JobBidding},
		{State: types.JobPlaced, Node: "12D3KooWPeer"},
		{State: types.JobRunning, Node: "12D3KooWPeer"},
		{State: types.JobRunning, Node: "12D3KooWPeer"}, // no change: no line
		{State: types.JobCompleted, Node: "12D3KooWPeer", Result: res},
	}
}

func TestJobRunSuccess(t *testing.T) {
	svc := newFakeService()
	completedRun(svc, 0, "hello, world\n", "")
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "job", "run", jobFile(t, helloSpec+"input_dir: in\n"), "--home", home)
	if code != 0 || out != "hello, world\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	want := "submitted job job-1\npending\nbidding\nplaced on 12D3KooWPeer\nrunning on 12D3KooWPeer\ncompleted in 12ms\n"
	if errOut != want {
		t.Fatalf("progress:\n%s\nwant:\n%s", errOut, want)
	}
	spec := svc.submitted[0]
	if _, ok := spec.ModuleCID(); !ok {
		t.Fatalf("the module was not uploaded: %q", spec.Module)
	}
	if _, err := svc.GetBlob(context.Background(), spec.InputDir); err != nil {
		t.Fatalf("the input directory was not uploaded: %q: %v", spec.InputDir, err)
	}
}

func TestJobRunFailure(t *testing.T) {
	svc := newFakeService()
	svc.events = []api.Job{{State: types.JobBidding}, {State: types.JobFailed, Reason: "no node bid before the deadline"}}
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "job", "run", jobFile(t, helloSpec), "--home", home)
	if code != 1 || out != "" || !strings.HasSuffix(errOut, "dms: job job-1 failed: no node bid before the deadline\n") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
}

func TestJobRunProgramExitsNonZero(t *testing.T) {
	svc := newFakeService()
	completedRun(svc, 3, "partial\n", "boom\n")
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "job", "run", jobFile(t, helloSpec), "--home", home)
	if code != 1 || out != "partial\n" || !strings.Contains(errOut, "boom\n") || !strings.Contains(errOut, "exited with code 3") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
}

func TestJobRunDetachJSON(t *testing.T) {
	svc := newFakeService()
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "job", "run", jobFile(t, helloSpec), "--detach", "--output", "json", "--home", home)
	var got map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got["id"] != "job-1" || len(got) != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "job", "run", jobFile(t, helloSpec), "-d", "--home", home); code != 0 || out != "job-2\n" {
		t.Fatalf("table detach: exit %d, stdout %q", code, out)
	}
}

func TestJobRunInvalidSpec(t *testing.T) {
	home := newDaemon(t, newFakeService())
	code, out, errOut := runCLI(t, "job", "run", jobFile(t, "module: hello.wasm\nresources: {memory: lots}\n"), "--home", home)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"job.yaml: invalid job spec:", "\n  name: required", "\n  resources.memory: "} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestJobStatusJSON(t *testing.T) {
	svc := newFakeService()
	svc.putJob(api.Job{ID: "j1", Name: "hello", State: types.JobRunning, Node: "12D3KooWPeer", Attempts: []api.Attempt{
		{AllocationID: "j1-a1-c0", Node: "12D3KooWGoneAway1", State: "failed", Charge: "reschedule", Reason: "lost node 12D3KooWGoneAway1: no heartbeat for 1s"},
		{AllocationID: "j1-a2-c0", Node: "12D3KooWPeer", State: "active"},
	}})
	home := newDaemon(t, svc)
	code, out, errOut := runCLI(t, "job", "status", "j1", "-o", "json", "--home", home)
	var got struct {
		ID, State, Node string
		Attempts        []struct{ Charge, State string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got.ID != "j1" || got.State != "running" || got.Node != "12D3KooWPeer" || len(got.Attempts) != 2 ||
		got.Attempts[0].Charge != "reschedule" || got.Attempts[1].Charge != "" || !strings.Contains(out, `"charge": "reschedule"`) {
		t.Fatalf("status json: %s", out)
	}
	code, out, _ = runCLI(t, "job", "status", "j1", "--home", home)
	for _, want := range []string{"state:", "running", "attempts:  2\n",
		"1 failed on …oneAway1, charged to reschedule: lost node 12D3KooWGoneAway1: no heartbeat for 1s\n", "2 active on 12D3KooWPeer\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("status table lacks %q:\n%s", want, out)
		}
	}
	if code, _, errOut := runCLI(t, "job", "status", "nope", "--home", home); code != 1 || !strings.Contains(errOut, "nope") {
		t.Fatalf("unknown job: exit %d, %s", code, errOut)
	}
}

func TestJobLogsResultListCancel(t *testing.T) {
	svc := newFakeService()
	res := &types.Result{ExitCode: 0, Stdout: svc.blob("out\n"), Stderr: svc.blob("err\n"), Files: map[string]string{"/out/x": "bafyx"},
		Usage: &types.Usage{CPU: 12345 * time.Microsecond, Wall: 15 * time.Millisecond, MemoryPeak: 2 << 20, MemoryLimit: 64 << 20, OutputBytes: 1229}}
	svc.putJob(api.Job{ID: "done", Name: "d", State: types.JobCompleted, Result: res})
	svc.putJob(api.Job{ID: "busy", Name: "b", State: types.JobRunning})
	home := newDaemon(t, svc)
	cases := []cliCase{
		{[]string{"job", "logs", "done"}, 0, "out\n"},
		{[]string{"job", "logs", "done", "--stderr"}, 0, "err\n"},
		{[]string{"job", "logs", "busy"}, 1, "no result yet"},
		{[]string{"job", "result", "done"}, 0, "/out/x  bafyx"},
		{[]string{"job", "result", "done", "-o", "json"}, 0, `"exit_code": 0`},
		{[]string{"job", "status", "done"}, 0, "used:       cpu 12ms, wall 15ms, memory peak 2 MiB (limit 64 MiB), output 1.2 KiB\n"},
		{[]string{"job", "status", "done", "-o", "json"}, 0, `"cpu_ns": 12345000`},
		{[]string{"job", "list"}, 0, "busy"},
		{[]string{"job", "list", "-o", "json"}, 0, `"id": "done"`},
		{[]string{"job", "cancel", "busy"}, 0, "cancelled job busy"},
		{[]string{"job", "cancel", "done"}, 1, "already completed"},
	}
	runCases(t, home, cases)
}

// cliCase is a CLI command, its exit code, and what its stdout (or its
// stderr when the code is not 0) must contain.
type cliCase struct {
	args []string
	code int
	want string
}

// runCases runs each case against the daemon of home.
func runCases(t *testing.T, home string, cases []cliCase) {
	t.Helper()
	for _, c := range cases {
		code, out, errOut := runCLI(t, append(c.args, "--home", home)...)
		got := out
		if c.code != 0 {
			got = errOut
		}
		if code != c.code || !strings.Contains(got, c.want) {
			t.Errorf("dms %s: exit %d, stdout %q, stderr %q", strings.Join(c.args, " "), code, out, errOut)
		}
	}
}

func TestNodeAndPeers(t *testing.T) {
	home := newDaemon(t, newFakeService())
	code, out, _ := runCLI(t, "node", "info", "-o", "json", "--home", home)
	var info map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info["peer_id"] != "12D3KooWSelf" || info["did"] == nil || info["addrs"] == nil {
		t.Fatalf("node info json: exit %d, %s", code, out)
	}
	for _, args := range [][]string{{"node", "info"}, {"node", "benchmark"}, {"peers"}} {
		code, out, errOut := runCLI(t, append(args, "--home", home)...)
		if code != 0 || !strings.Contains(out, "12D3KooW") {
			t.Errorf("dms %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	idle := "idle only:   not bidding since 2026-12-01 12:04:02: host busy: other processes use 63% CPU > 25%; units stopped for the owner: 1"
	if _, out, _ := runCLI(t, "node", "info", "--home", home); !strings.Contains(out, idle) {
		t.Errorf("node info lacks %q:\n%s", idle, out)
	}
}

func TestStoreCommands(t *testing.T) {
	svc := newFakeService()
	home := newDaemon(t, svc)
	cid := svc.blob("keep me")
	cases := []cliCase{
		{[]string{"store", "info"}, 0, "40 MiB of a 4 GiB budget (1%)"},
		{[]string{"store", "info"}, 0, "blobs:                      7, 2 MiB"},
		{[]string{"store", "info"}, 0, "3 blobs, 3 MiB freed: 5 MiB -> 2 MiB"},
		{[]string{"store", "info"}, 0, "alloc 30, job 12, node 3"},
		{[]string{"store", "info", "-o", "json"}, 0, `"max_bytes": 4294967296`},
		{[]string{"store", "gc"}, 0, "4 records, 0 value-log files rewritten"},
		{[]string{"store", "gc", "-o", "json"}, 0, `"blobs_removed": 3`},
		{[]string{"store", "pin", cid}, 0, "pinned " + cid},
		{[]string{"store", "unpin", cid, "-o", "json"}, 0, `"pinned": false`},
		{[]string{"store", "unpin", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"}, 1, "is not pinned"},
		{[]string{"store", "pin", "not-a-cid"}, 1, `"not-a-cid" is not a CID`},
		{[]string{"store", "pin"}, 1, "takes one CID argument"},
	}
	runCases(t, home, cases)
	if !slices.Equal(svc.pins, []string{cid}) || !slices.Equal(svc.unpinned, []string{cid}) {
		t.Errorf("pins %v, unpinned %v", svc.pins, svc.unpinned)
	}
}

func TestMissingDaemon(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{{"job", "list"}, {"node", "info"}, {"node", "benchmark"}, {"peers"}, {"store", "info"}, {"store", "gc"}, {"job", "run", jobFile(t, helloSpec)}} {
		code, _, errOut := runCLI(t, append(args, "--home", home)...)
		want := "dms: no running daemon for home " + home + " (api.json not found): start one with `dms run --home " + home + "`\n"
		if code != 1 || errOut != want {
			t.Errorf("dms %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
}

func TestHomeFromEnvironment(t *testing.T) {
	home := newDaemon(t, newFakeService())
	t.Setenv("DMS_HOME", home)
	if code, out, errOut := runCLI(t, "peers"); code != 0 || !strings.Contains(out, "12D3KooWOther") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestPeersReputation(t *testing.T) {
	home := newDaemon(t, newFakeService())
	code, out, errOut := runCLI(t, "--home", home, "peers", "reputation")
	if code != 0 || !strings.Contains(out, "PENALTY  POOR  UNHEARD  AGREED  DISAGREED  TRUST ") ||
		!strings.Contains(out, "12D3KooWLiar    1.50     yes   yes      2       1          distrusted  lost ") ||
		!strings.Contains(out, "12D3KooWHonest  0.00     no    no       10      0          trusted     -  ") ||
		!strings.Contains(out, "lost=1 no_confirm=1") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runCLI(t, "--home", home, "peers", "reputation", "--output", "json")
	if code != 0 || !strings.Contains(out, `"last_event": "lost"`) || !strings.Contains(out, `"distrusted": true`) {
		t.Fatalf("exit %d, json %q", code, out)
	}
	runCases(t, home, []cliCase{
		{[]string{"peers", "reputation", "forgive", "12D3KooWLiar"}, 0, "forgave 12D3KooWLiar: its bids count again\n"},
		{[]string{"peers", "reputation"}, 0, "12D3KooWLiar    1.50     yes   yes      2       0          -     "},
		{[]string{"peers", "reputation", "forgive", "12D3KooWLiar"}, 1, "dms: api: not found: peer 12D3KooWLiar is not distrusted\n"},
		{[]string{"peers", "reputation", "forgive", "12D3KooWHonest", "-o", "json"}, 1, "not distrusted"},
		{[]string{"peers", "reputation", "forgive"}, 1, "takes one PEER argument"},
	})
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `dms: unknown command "frobnicate" for "dms"`},
		{[]string{"job", "frobnicate"}, `dms: unknown command "frobnicate" for "dms job"`},
		{[]string{"peers", "--bogus"}, "dms: unknown flag: --bogus"},
		{[]string{"job", "status"}, "takes one ID argument"},
		{[]string{"peers", "--output", "xml"}, `--output "xml": want table or json`},
		{[]string{"devstack", "--nodes", "0"}, "--nodes 0: want 1 to 200"},
		{[]string{"devstack", "--nodes", "201"}, "--nodes 201: want 1 to 200"},
		{[]string{"run", "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"run", "--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"devstack", "--log-format", "logfmt"}, `--log-format "logfmt": want text or json`},
		{[]string{"run", "--otlp-endpoint", "localhost:4318"}, `--otlp-endpoint: tracing: OTLP endpoint "localhost:4318": want an http:// or https:// URL`},
		{[]string{"devstack", "--otlp-endpoint", "ftp://x"}, `--otlp-endpoint: tracing: OTLP endpoint "ftp://x"`},
	}
	for _, c := range cases {
		code, out, errOut := runCLI(t, append(c.args, "--home", t.TempDir())...)
		if code != 1 || !strings.HasPrefix(errOut, "dms: ") || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "Usage:") || out != "" {
			t.Errorf("dms %s: exit %d, stdout %q, stderr %q", strings.Join(c.args, " "), code, out, errOut)
		}
	}
}

func TestUnknownFailpoint(t *testing.T) {
	t.Setenv("DMS_FAILPOINT", "invok")
	code, _, errOut := runCLI(t, "run", "--home", t.TempDir())
	if want := "dms: DMS_FAILPOINT=\"invok\": no such failpoint (known: invoke)\n"; code != 1 || !strings.HasSuffix(errOut, want) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestEarningsAndJobReceipts(t *testing.T) {
	home := newDaemon(t, newFakeService())
	runCases(t, home, []cliCase{
		{[]string{"earnings", "--period", "2026-12"}, 0, "12D3KooWReq  acme     2         0.001112"},
		{[]string{"earnings"}, 0, "total                 3         0.001113"},
		{[]string{"earnings", "--period", "2026-11"}, 0, "total               0         0\n"},
		{[]string{"earnings", "--period", "2026-12", "-o", "json"}, 0, `"total": "0.001113"`},
		{[]string{"earnings", "--period", "december"}, 1, `period "december" is not a month such as 2026-12`},
		{[]string{"job", "receipts", "job-1"}, 0, "alloc-1/1  12D3KooWProvider  1000      2s    1      0.000556"},
		{[]string{"job", "receipts", "job-1", "-o", "json"}, 0, `"digest": "c0ffee"`},
		{[]string{"job", "receipts", "nope"}, 1, `not found: job "nope"`},
	})
}

// dms job trace prints the span tree: children indented under their
// parent, the node of each, its start and duration; a node that did not
// answer is named.
func TestJobTrace(t *testing.T) {
	home := newDaemon(t, newFakeService())
	runCases(t, home, []cliCase{
		{[]string{"job", "trace", "job-1"}, 0, `job job-1, trace 4bf92f3577b34da6a3ce929d0e0e4736: 6 spans from 2 of 3 nodes
SPAN       NODE       START  DURATION  NOTE
job        …equester  0s     41ms      state=completed
  submit   …equester  0s     900µs     
  auction  …equester  1ms    5ms       reached=2
    bid    …rovider1  2ms    300µs     outcome=bid
  accept   …equester  6ms    2ms       epoch=2 peer=…rovider1
    lock   …rovider1  7ms    500µs     
missing: node 12D3KooWGoneAway did not answer: p2p: no route
`},
		{[]string{"job", "trace", "job-1", "-o", "json"}, 0, `"parent": "r3"`},
		{[]string{"job", "trace", "nope"}, 1, `not found: job "nope"`},
		{[]string{"job", "trace"}, 1, "takes one ID argument"},
	})
}

// dms gateway trace prints a call's spans as dms job trace does, without
// a job; an unknown trace is not found.
func TestGatewayTrace(t *testing.T) {
	home := newDaemon(t, newFakeService())
	runCases(t, home, []cliCase{
		{[]string{"gateway", "trace", "0af7651916cd43dd8448eb211c80319c"}, 0, `trace 0af7651916cd43dd8448eb211c80319c: 3 spans from 2 of 2 nodes
SPAN      NODE       START  DURATION  NOTE
call      …WGateway  0s     3ms       function=f status=200
  hop     …WGateway  200µs  2ms       status=ok
    call  …rovider1  500µs  1ms       exit_code=0
`},
		{[]string{"gateway", "trace", "4bf92f3577b34da6a3ce929d0e0e4736"}, 1, "not found: no spans of trace"},
	})
}

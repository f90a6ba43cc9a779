package dms

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// writeFlow writes a flow and the tiny modules it names (NAME.wasm sleeps
// for sleep[NAME] and prints "NAME\n") into a temporary directory.
func writeFlow(t *testing.T, doc string, sleep map[string]time.Duration) *jobs.Flow {
	t.Helper()
	dir := t.TempDir()
	for name, d := range sleep {
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), tinywasm.Module(d, name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "flow.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := jobs.ParseFlowFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func runFlow(t *testing.T, ctx context.Context, d *DMS, f *jobs.Flow) api.Flow {
	t.Helper()
	fl, err := d.RunFlow(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

func awaitFlow(t *testing.T, ctx context.Context, d *DMS, id string) api.Flow {
	t.Helper()
	fl, err := d.WaitFlow(ctx, id)
	if err != nil {
		t.Fatalf("flow %s: %v", id, err)
	}
	return fl
}

// runsOf counts the allocations of the flow's jobs across nodes, by job.
func runsOf(t *testing.T, nodes []*DMS, fl api.Flow) map[string]int {
	t.Helper()
	jobs := map[types.JobID]string{}
	for _, s := range fl.Steps {
		for _, in := range s.Instances {
			if in.JobID != "" {
				jobs[types.JobID(in.JobID)] = fmt.Sprintf("%s[%d]", s.Name, in.Index)
			}
		}
	}
	out := map[string]int{}
	for _, d := range nodes {
		for _, a := range allocations(t, d) {
			if name, ok := jobs[a.JobID]; ok {
				out[name]++
			}
		}
	}
	return out
}

// runsByName counts the allocations that started across nodes of every
// job req ever submitted, by job name (a flow's instance names its job:
// fan-0).
func runsByName(t *testing.T, req *DMS, nodes []*DMS) map[string]int {
	t.Helper()
	list, err := req.ListJobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	names := map[types.JobID]string{}
	for _, j := range list {
		names[types.JobID(j.ID)] = j.Name
	}
	out := map[string]int{}
	for _, d := range nodes {
		for _, a := range allocations(t, d) {
			if name, ok := names[a.JobID]; ok && !a.StartedAt.IsZero() { // a lock never invoked ran nothing
				out[name]++
			}
		}
	}
	return out
}

// TestFlowResumesAfterRequesterRestart: a requester closed while a fan-out
// runs takes its flow back when it starts again: the step that finished
// is not run again, the running instances are followed to their end, the
// rest start; every instance ran exactly once.
func TestFlowResumesAfterRequesterRestart(t *testing.T) {
	nodes := testNet(t, 3, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := writeFlow(t, `
name: resume
parallel: 2
steps:
  first: {module: first.wasm, resources: {cpu: 0.1, memory: 16MiB}}
  fan:
    for_each: [a, b, c, d]
    needs: [first]
    module: fan.wasm
    args: ["{{item}}"]
    resources: {cpu: 0.1, memory: 16MiB}
  last: {module: last.wasm, needs: [fan], resources: {cpu: 0.1, memory: 16MiB}}
`, map[string]time.Duration{"first": 0, "fan": 1500 * time.Millisecond, "last": 0})
	fl := runFlow(t, ctx, req, f)
	waitFor(t, 30*time.Second, "two fan instances running on providers", func() bool {
		got, err := req.GetFlow(ctx, fl.ID)
		if err != nil || len(got.Steps) != 3 {
			return false
		}
		running := 0
		for _, in := range got.Steps[1].Instances {
			if j, err := req.GetJob(ctx, in.JobID); err == nil && j.State == types.JobRunning {
				running++
			}
		}
		return running == 2
	})
	req.Close()

	back := reopen(t, req, WithBootstrap(nodes[1].host.Addrs()...))
	done := awaitFlow(t, ctx, back, fl.ID)
	if done.State != api.FlowCompleted {
		t.Fatalf("flow after the restart: %s (%s)", done.State, done.Reason)
	}
	runs := runsByName(t, back, nodes[1:])
	if len(runs) != 6 {
		t.Fatalf("runs %v, want 6 instances", runs)
	}
	for name, n := range runs {
		if n != 1 {
			t.Errorf("%s ran %d times, want once", name, n)
		}
	}
	out, err := back.GetBlob(ctx, done.Outputs[0].CID)
	if err != nil || string(out) != "last\n" || done.Outputs[0].Name != "last.stdout" {
		t.Fatalf("outputs %+v: %q %v", done.Outputs, out, err)
	}
}

// TestFlowFailureAndCancel: a step that exits non-zero fails the flow with
// the step, its exit code and its stderr's head, and what needs it never
// runs; a cancelled flow cancels its running jobs.
func TestFlowFailureAndCancel(t *testing.T) {
	nodes := testNet(t, 2, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := writeFlow(t, `
name: fails
steps:
  bad: {module: ../../examples/wordcount/wordcount.wasm, args: [split, "0"], input_dir: in, resources: {cpu: 0.1}}
  after: {module: ok.wasm, needs: [bad], resources: {cpu: 0.1, memory: 16MiB}}
`, map[string]time.Duration{"ok": 0})
	wd, _ := os.Getwd()
	f.Step("bad").Job.Module = filepath.Join(wd, "../examples/wordcount/wordcount.wasm")
	in := filepath.Join(t.TempDir(), "in")
	os.MkdirAll(in, 0o755)
	os.WriteFile(filepath.Join(in, "t.txt"), []byte("a b"), 0o644)
	f.Step("bad").Job.InputDir = in
	fl := runFlow(t, ctx, req, f)
	done := awaitFlow(t, ctx, req, fl.ID)
	if done.State != api.FlowFailed || !strings.Contains(done.Reason, "step bad") || !strings.Contains(done.Reason, "exited with code 2") {
		t.Fatalf("flow %s: %q", done.State, done.Reason)
	}
	if s := done.Steps[1]; s.Name != "after" || s.State != api.FlowSkipped || len(s.Instances) != 0 {
		t.Fatalf("the step after: %+v", s)
	}
	if err := req.CancelFlow(ctx, fl.ID); err == nil {
		t.Fatal("cancelled a flow that ended")
	}

	slow := writeFlow(t, `
name: slow
steps:
  long: {for_each: [1, 2], module: long.wasm, resources: {cpu: 0.1, memory: 16MiB}}
`, map[string]time.Duration{"long": 30 * time.Second})
	fl = runFlow(t, ctx, req, slow)
	// Their jobs running, not only the instances: an instance is running
	// from the moment its job's ID is recorded, before the job is
	// submitted, and a job cancelled before then never exists.
	waitFor(t, 30*time.Second, "the slow instances' jobs running", func() bool {
		got, err := req.GetFlow(ctx, fl.ID)
		if err != nil || len(got.Steps[0].Instances) != 2 {
			return false
		}
		for _, in := range got.Steps[0].Instances {
			if j, err := req.GetJob(ctx, in.JobID); err != nil || j.State != types.JobRunning {
				return false
			}
		}
		return true
	})
	if err := req.CancelFlow(ctx, fl.ID); err != nil {
		t.Fatal(err)
	}
	got, err := req.GetFlow(ctx, fl.ID)
	if err != nil || got.State != api.FlowCancelled {
		t.Fatalf("cancelled flow: %+v %v", got, err)
	}
	for _, in := range got.Steps[0].Instances {
		j, err := req.GetJob(ctx, in.JobID)
		if err != nil || j.State != types.JobCancelled {
			t.Fatalf("job %s of a cancelled flow: %s %v", in.JobID, j.State, err)
		}
	}
	if _, err := req.GetFlow(ctx, "f-nope"); err == nil {
		t.Fatal("found a flow that does not exist")
	}
}

// TestFlowCache: a flow run again is served from the cache, instance by
// instance, without a job; a step that says cache: false runs again.
func TestFlowCache(t *testing.T) {
	nodes := testNet(t, 2, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	doc := `
name: cached
steps:
  fan: {for_each: [a, b, c], module: fan.wasm, args: ["{{item}}"], resources: {cpu: 0.1, memory: 16MiB}}
  again: {module: again.wasm, needs: [fan], cache: false, resources: {cpu: 0.1, memory: 16MiB}}
`
	mods := map[string]time.Duration{"fan": 0, "again": 0}
	first := awaitFlow(t, ctx, req, runFlow(t, ctx, req, writeFlow(t, doc, mods)).ID)
	if first.State != api.FlowCompleted || first.Steps[0].Counts.Cached != 0 {
		t.Fatalf("first run: %s %q, fan %+v", first.State, first.Reason, first.Steps[0].Counts)
	}
	start := time.Now()
	second := awaitFlow(t, ctx, req, runFlow(t, ctx, req, writeFlow(t, doc, mods)).ID)
	t.Logf("second run in %s", time.Since(start))
	fan, again := second.Steps[0], second.Steps[1]
	if second.State != api.FlowCompleted || fan.Counts.Cached != 3 || again.Counts.Cached != 0 {
		t.Fatalf("second run: %s %q, fan %+v, again %+v", second.State, second.Reason, fan.Counts, again.Counts)
	}
	for i, in := range fan.Instances {
		if in.JobID != "" || !in.Cached || in.Result.Stdout != first.Steps[0].Instances[i].Result.Stdout {
			t.Fatalf("cached instance %+v", in)
		}
	}
	if runs := runsOf(t, nodes[1:], second); len(runs) != 1 || runs["again[0]"] != 1 {
		t.Fatalf("the second run ran %v, want only again", runs)
	}
}

// TestFlowCallStep: a call step calls a function deployed on the node's
// gateway, as the account it names, with another step's stdout as its
// body; the response body is its stdout. An unknown account fails the
// flow, saying so.
func TestFlowCallStep(t *testing.T) {
	nodes := testNet(t, 2, func(i int) bool { return i == 1 })
	gw := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, _, err := gw.Gateway().CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	svc, err := gw.Gateway().As(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.PutModule(ctx, bytes.NewReader(tinywasm.Echo()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Deploy(ctx, gateway.Deploy{Name: "echo", Module: c, Resources: types.Resources{CPU: 100, Memory: 16 << 20}}); err != nil {
		t.Fatal(err)
	}
	doc := `
name: calls
steps:
  gen: {module: gen.wasm, resources: {cpu: 0.1, memory: 16MiB}}
  shout: {call: echo, account: ACCOUNT, body_from: gen.stdout, retries: 1}
`
	f := writeFlow(t, strings.ReplaceAll(doc, "ACCOUNT", "acme"), map[string]time.Duration{"gen": 0})
	done := awaitFlow(t, ctx, gw, runFlow(t, ctx, gw, f).ID)
	if done.State != api.FlowCompleted {
		t.Fatalf("flow %s: %s", done.State, done.Reason)
	}
	out, err := gw.GetBlob(ctx, done.Outputs[0].CID)
	if err != nil || !strings.Contains(string(out), "gen") {
		t.Fatalf("the call's response %q, %v; want the echo of gen's stdout", out, err)
	}
	f = writeFlow(t, strings.ReplaceAll(doc, "ACCOUNT", "nobody"), map[string]time.Duration{"gen": 0})
	done = awaitFlow(t, ctx, gw, runFlow(t, ctx, gw, f).ID)
	if done.State != api.FlowFailed || !strings.Contains(done.Reason, "account nobody") {
		t.Fatalf("a call as an unknown account: %s %q", done.State, done.Reason)
	}
}

// TestWordcountFlow runs examples/wordcount on a network: split's parts
// fan out to count on the providers, which fetch them from the node that
// split the text, never through the requester; reduce sums the counts,
// and its stdout is the example's expected.txt. Run again, the flow is
// served from the cache.
func TestWordcountFlow(t *testing.T) {
	nodes := testNet(t, 4, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := jobs.ParseFlowFile("../examples/wordcount/flow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	done := awaitFlow(t, ctx, req, runFlow(t, ctx, req, f).ID)
	if done.State != api.FlowCompleted {
		t.Fatalf("wordcount: %s (%s)", done.State, done.Reason)
	}
	want, err := os.ReadFile("../examples/wordcount/expected.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := req.GetBlob(ctx, done.Outputs[0].CID)
	if err != nil || string(got) != string(want) {
		t.Fatalf("reduce's stdout (%v):\n%.300s\nwant:\n%.300s", err, got, want)
	}
	split := done.Steps[0].Instances[0].Result
	if len(split.Files) != 4 || done.Steps[1].Counts.Total != 4 {
		t.Fatalf("split wrote %d parts, count ran %d instances; want 4", len(split.Files), done.Steps[1].Counts.Total)
	}
	for name, c := range split.Files {
		if req.blobs.Has(c) {
			t.Errorf("the requester holds part %s: outputs went through it", name)
		}
	}
	again, err := jobs.ParseFlowFile("../examples/wordcount/flow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rerun := awaitFlow(t, ctx, req, runFlow(t, ctx, req, again).ID)
	t.Logf("rerun served in %s", time.Since(start))
	for _, s := range rerun.Steps {
		if s.Counts.Cached != s.Counts.Total {
			t.Fatalf("rerun: step %s %+v, want every instance cached", s.Name, s.Counts)
		}
	}
	if rerun.Outputs[0].CID != done.Outputs[0].CID {
		t.Fatal("the cached rerun answered another output")
	}
}

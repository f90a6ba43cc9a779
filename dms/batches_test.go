package dms

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator/quorum"
	"github.com/opendms/dms/types"
)

// liar runs programs as its executor does, then fabricates their output:
// a provider that reports "completed" with made-up bytes, and serves them.
type liar struct {
	jobs.Executor
	lies atomic.Int64
}

func (l *liar) Run(ctx context.Context, in jobs.Input) (*jobs.Output, error) {
	out, err := l.Executor.Run(ctx, in)
	if err == nil {
		out.Stdout = append(out.Stdout, "forged\n"...)
		l.lies.Add(1)
	}
	return out, err
}

// batchOf writes a batch of units printing their numbers, the Args
// module uploaded to d.
func batchOf(t *testing.T, d *DMS, doc string) *jobs.Batch {
	t.Helper()
	c, err := d.PutBlob(context.Background(), bytes.NewReader(tinywasm.Args()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := jobs.ParseBatch([]byte(fmt.Sprintf(doc, c)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func awaitBatch(t *testing.T, ctx context.Context, d *DMS, id string) api.Batch {
	t.Helper()
	events, err := d.WatchBatch(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var last api.Batch
	for b := range events {
		last = b
	}
	if last.State == api.BatchRunning {
		t.Fatalf("batch %s: the watch ended with it running: %+v", id, last.Counts)
	}
	return last
}

// TestBatchOutvotesALiar: 5 providers, one of which fabricates every
// result. With replication 3 and quorum 2 every unit's canonical result
// is the true one, the liar is distrusted after its first disagreement
// and its bids are dropped from then on: it stops being chosen.
func TestBatchOutvotesALiar(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes, lie := liarNet(t, ctx, 5)
	req, liarID := nodes[0], nodes[5].id.PeerID
	b := batchOf(t, req, `
name: numbers
template: {module: %s, args: ["n{{unit}}"], resources: {cpu: 0.1, memory: 16MiB}, bid_window: 300ms, enough_bids: 5}
units: {range: 1..20}
replication: 3
quorum: 2
parallel: 12
`)
	sub, err := req.SubmitBatch(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	done := awaitBatch(t, ctx, req, sub.ID)
	if done.State != api.BatchCompleted || done.Counts.Completed != 20 || done.Counts.Failed != 0 {
		t.Fatalf("batch %s %q: %+v", done.State, done.Reason, done.Counts)
	}
	units, err := req.BatchUnits(ctx, sub.ID, 0, 100)
	if err != nil || len(units) != 20 {
		t.Fatalf("%d units: %v", len(units), err)
	}
	for _, u := range units {
		if u.Result == nil {
			t.Fatalf("unit %+v", u)
		}
		out, err := req.GetBlob(ctx, u.Result.Stdout)
		if err != nil {
			t.Fatalf("unit %d: %v", u.Index, err)
		}
		if want := "n" + u.Value + "\n"; string(out) != want || u.Node == liarID {
			t.Fatalf("unit %d: canonical result %q from %s, want %q (liar %s)", u.Index, out, u.Node, want, liarID)
		}
	}
	ran := map[string]int{}
	for _, u := range units {
		for _, r := range u.Replicas {
			ran[r.Node]++
		}
	}
	t.Logf("replicas by node: %v; liar %s", ran, liarID)
	if lie.lies.Load() == 0 {
		t.Fatal("the liar never ran a replica: the test proves nothing")
	}
	rep, err := req.orch.Reputation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep {
		if p.Distrusted != (p.Peer == liarID) {
			t.Fatalf("reputation: %+v", p)
		}
		if p.Peer == liarID && p.Disagreed == 0 {
			t.Fatalf("the liar's record: %+v", p)
		}
	}
	// Distrusted, the liar lies no more: none of a second batch's
	// replicas runs on it.
	before := lie.lies.Load()
	sub2, err := req.SubmitBatch(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if done := awaitBatch(t, ctx, req, sub2.ID); done.Counts.Completed != 20 || done.Counts.Disagreed != 0 {
		t.Fatalf("second batch: %+v", done.Counts)
	}
	if n := lie.lies.Load() - before; n != 0 {
		t.Fatalf("the distrusted liar ran %d replicas of the second batch", n)
	}
	t.Logf("the liar ran %d replicas; %d disagreed: %+v", before, done.Counts.Disagreed, done.Counts)
}

// liarNet starts a requester (node 0) and n providers, the last of which
// lies, and undercuts the others' price to win work, as a cheat would.
func liarNet(t *testing.T, ctx context.Context, n int) ([]*DMS, *liar) {
	t.Helper()
	lie := &liar{}
	nodes := relNet(t, n+1, func(i int) bool { return i != 0 }, func(i int) []Option {
		opts := []Option{WithLease(10 * time.Second)}
		if i == n {
			opts = append(opts, WithExecutorWrap(func(e jobs.Executor) jobs.Executor {
				if e.Name() != "wasm" {
					return e
				}
				lie.Executor = e
				return lie
			}))
		}
		return opts
	})
	nodes[n].priceNode(t, ctx, "0")
	return nodes, lie
}

// priceNode sets a running node's price in its offer.
func (d *DMS) priceNode(t *testing.T, ctx context.Context, price string) {
	t.Helper()
	path := filepath.Join(d.home, configFile)
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), "price: 1\n") {
		t.Fatalf("%s has no price: 1 to change: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "price: 1\n", "price: "+price+"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReplicatedJobAndStep: a job, and a flow's step, that ask for
// replication run as one-unit batches: on distinct nodes, the liar
// outvoted, shown as a job with one attempt per replica.
func TestReplicatedJobAndStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes, lie := liarNet(t, ctx, 3)
	req, liarID := nodes[0], nodes[3].id.PeerID
	mod, err := req.PutBlob(ctx, bytes.NewReader(tinywasm.Args()))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := jobs.Parse([]byte(fmt.Sprintf("name: rep\nmodule: %s\nargs: [truth]\nreplication: 3\nquorum: 2\nresources: {cpu: 0.1, memory: 16MiB}\nenough_bids: 3\n", mod)))
	if err != nil {
		t.Fatal(err)
	}
	j, err := req.SubmitJob(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	events, err := req.WatchJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	for j = range events {
	}
	if j.State != types.JobCompleted || len(j.Attempts) < 3 || j.Node == liarID {
		t.Fatalf("replicated job: %+v", j)
	}
	nodesRan := map[string]bool{}
	for _, a := range j.Attempts {
		if nodesRan[a.Node] {
			t.Fatalf("two replicas on %s: %+v", a.Node, j.Attempts)
		}
		nodesRan[a.Node] = true
	}
	out, err := req.GetBlob(ctx, j.Result.Stdout)
	if err != nil || string(out) != "truth\n" {
		t.Fatalf("stdout %q, %v", out, err)
	}
	if got, err := req.GetJob(ctx, j.ID); err != nil || got.State != types.JobCompleted {
		t.Fatalf("GetJob: %+v %v", got, err)
	}
	if err := req.CancelJob(ctx, j.ID); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("cancelling a finished replicated job: %v", err)
	}
	if lie.lies.Load() == 0 {
		t.Log("the liar ran no replica of the job")
	}

	f, err := jobs.ParseFlow([]byte(fmt.Sprintf(`
name: repflow
steps:
  a: {module: %s, args: [step], replication: 2, quorum: 2, resources: {cpu: 0.1, memory: 16MiB}, cache: false}
`, mod)))
	if err != nil {
		t.Fatal(err)
	}
	fl := awaitFlow(t, ctx, req, runFlow(t, ctx, req, f).ID)
	in := fl.Steps[0].Instances[0]
	if fl.State != api.FlowCompleted || !strings.HasPrefix(in.JobID, "b-") {
		t.Fatalf("flow %s %q: %+v", fl.State, fl.Reason, in)
	}
	if out, err := req.GetBlob(ctx, in.Result.Stdout); err != nil || string(out) != "step\n" {
		t.Fatalf("step stdout %q, %v", out, err)
	}
}

// TestBatchResumesAfterRequesterRestart: a requester closed in the middle
// of a batch takes it back when it starts again: decided units stay
// decided, the replicas under way are followed to their end, the rest are
// issued; every unit ran exactly once.
func TestBatchResumesAfterRequesterRestart(t *testing.T) {
	nodes := testNet(t, 3, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub := submitBatch(t, ctx, req, tinywasm.Module(700*time.Millisecond, "slow\n"), `
name: resume
template: {module: %s, args: ["{{unit}}"], resources: {cpu: 0.1, memory: 16MiB}}
units: {range: 1..8}
parallel: 2
`)
	// Closed while two replicas run: they are followed to their end.
	waitFor(t, 60*time.Second, "two units completed and two running", func() bool {
		got, err := req.GetBatch(ctx, sub.ID)
		if err != nil || got.Counts.Completed < 2 || got.Counts.Running != 2 {
			return false
		}
		list, err := req.ListJobs(ctx)
		running := 0
		for _, j := range list {
			if strings.HasPrefix(j.ID, sub.ID) && !j.State.Terminal() {
				if j.State != types.JobRunning {
					return false
				}
				running++
			}
		}
		return err == nil && running == 2
	})
	req.Close()

	back := reopen(t, req, WithBootstrap(nodes[1].host.Addrs()...))
	done := awaitBatch(t, ctx, back, sub.ID)
	// A replica whose job the closing node cancelled before it was saved
	// is failed and issued again: more replicas than units, never more
	// runs.
	if done.State != api.BatchCompleted || done.Counts.Completed != 8 {
		t.Fatalf("after the restart: %s %q %+v", done.State, done.Reason, done.Counts)
	}
	runs := runsByName(t, back, nodes[1:])
	if len(runs) != 8 {
		t.Fatalf("runs %v, want 8 units", runs)
	}
	for name, n := range runs {
		if n != 1 {
			t.Errorf("%s ran %d times, want once", name, n)
		}
	}
}

// TestBatchBadUnits: a unit that always fails is quarantined after its
// max_replicas, saying why, and the batch goes on; a unit whose stdout
// passed the output limit fails: a cut result is not the program's.
func TestBatchBadUnits(t *testing.T) {
	nodes := testNet(t, 3, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args, err := req.PutBlob(ctx, bytes.NewReader(tinywasm.Args()))
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", tinywasm.ArgsLimit) // Args traps on it
	b, err := jobs.ParseBatch([]byte(fmt.Sprintf(`{"name": "bad", "template": {"module": %q, "resources": {"cpu": "0.1", "memory": "16MiB"}},
"units": {"params": [{"args": ["fine"]}, {"args": [%q]}, {"args": ["also-fine"]}]}, "max_replicas": 2}`, args, huge)))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := req.SubmitBatch(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	done := awaitBatch(t, ctx, req, sub.ID)
	if done.State != api.BatchCompleted || done.Counts.Completed != 2 || done.Counts.Failed != 1 || !strings.Contains(done.Reason, "1 of 3 units failed") {
		t.Fatalf("batch %s %q %+v", done.State, done.Reason, done.Counts)
	}
	units, err := req.BatchUnits(ctx, sub.ID, 1, 1)
	if err != nil || len(units) != 1 || units[0].State != api.BatchFailed || len(units[0].Replicas) != 2 ||
		!strings.Contains(units[0].Failure, "no quorum of 1 after 2 replicas: 2 failed") {
		t.Fatalf("the failing unit: %+v %v", units, err)
	}

	filler, err := req.PutBlob(ctx, bytes.NewReader(tinywasm.Filler(jobs.DefaultOutputLimit+4096)))
	if err != nil {
		t.Fatal(err)
	}
	big, err := jobs.ParseBatch([]byte(fmt.Sprintf("name: big\ntemplate: {module: %s, resources: {cpu: 0.1, memory: 16MiB}}\nunits: {range: 1..1}\nmax_replicas: 1\n", filler)))
	if err != nil {
		t.Fatal(err)
	}
	sub, err = req.SubmitBatch(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	awaitBatch(t, ctx, req, sub.ID)
	units, err = req.BatchUnits(ctx, sub.ID, 0, 1)
	if err != nil || units[0].State != api.BatchFailed || !strings.Contains(units[0].Failure, "stdout passed the output limit") {
		t.Fatalf("a unit over the output limit: %+v %v", units, err)
	}
}

// TestBatchSurvivesALostProvider: a provider closed while it runs
// replicas loses no unit: its jobs are placed elsewhere, and every unit
// is decided once.
func TestBatchSurvivesALostProvider(t *testing.T) {
	nodes := testNet(t, 4, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub := submitBatch(t, ctx, req, tinywasm.Module(time.Second, "unit\n"), `
name: lost
template: {module: %s, args: ["{{unit}}"], resources: {cpu: 0.1, memory: 16MiB}}
units: {range: 1..12}
replication: 2
parallel: 6
`)
	var lost *DMS
	waitFor(t, 60*time.Second, "a provider running replicas", func() bool {
		for _, n := range nodes[1:] {
			for _, a := range allocations(t, n) {
				if strings.HasPrefix(string(a.JobID), sub.ID) && a.State == types.AllocRunning {
					lost = n
					return true
				}
			}
		}
		return false
	})
	lost.Close()
	done := awaitBatch(t, ctx, req, sub.ID)
	if done.State != api.BatchCompleted || done.Counts.Completed != 12 || done.Counts.Failed != 0 {
		t.Fatalf("batch %s %q %+v", done.State, done.Reason, done.Counts)
	}
	units, err := req.BatchUnits(ctx, sub.ID, 0, 12)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		if u.State != api.BatchCompleted || u.Result == nil {
			t.Fatalf("unit %+v", u)
		}
	}
}

// TestManagedBatch: a batch handed to three managers goes on while its
// submitter is away and after one manager is lost; the submitter, back,
// collects every unit's result once, from the managers that remain, and
// the managers forget the batch.
func TestManagedBatch(t *testing.T) {
	nodes := testNet(t, 6, func(i int) bool { return i >= 4 })
	req, managers := nodes[0], nodes[1:4]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	module := tinywasm.Module(150*time.Millisecond, "done\n")
	mod, err := req.PutBlob(ctx, bytes.NewReader(module))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range managers { // they fetch the module from the submitter
		ids = append(ids, fmt.Sprintf("%q", m.host.ID()))
	}
	b, err := jobs.ParseBatch([]byte(fmt.Sprintf(`
name: managed
template: {module: %s, args: ["u{{unit}}"], resources: {cpu: 0.1, memory: 16MiB}}
units: {range: 1..40}
parallel: 2
managers: [%s]
`, mod, strings.Join(ids, ", "))))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := req.SubmitBatch(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "a few units collected", func() bool {
		got, err := req.GetBatch(ctx, sub.ID)
		return err == nil && got.Counts.Completed >= 4
	})
	req.Close() // the submitter goes away

	// The manager that leads is lost too.
	var lead *DMS
	defer func() {
		if t.Failed() {
			for i, m := range managers {
				if r := m.managedBatch(sub.ID); r != nil {
					t.Logf("manager %d: leader %q, is %v, counts %+v, finished %v", i, r.grp.Leader(), r.grp.IsLeader(), r.counts(), r.finished())
				} else {
					t.Logf("manager %d: none", i)
				}
			}
		}
	}()
	waitFor(t, 30*time.Second, "a leader", func() bool {
		for _, m := range managers {
			if r := m.managedBatch(sub.ID); r != nil && r.grp.IsLeader() {
				lead = m
				return true
			}
		}
		return false
	})
	waitFor(t, 60*time.Second, "more units decided while the submitter is away", func() bool {
		r := lead.managedBatch(sub.ID)
		return r != nil && r.counts().Completed >= 12
	})
	lead.Close()

	back := reopen(t, req, WithBootstrap(nodes[4].host.Addrs()...))
	done := awaitBatch(t, ctx, back, sub.ID)
	if done.State != api.BatchCompleted || done.Counts.Completed != 40 {
		t.Fatalf("after the submitter came back: %s %q %+v", done.State, done.Reason, done.Counts)
	}
	units, err := back.BatchUnits(ctx, sub.ID, 0, 40)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		if u.State != api.BatchCompleted || u.Result == nil {
			t.Fatalf("unit %+v", u)
		}
		if u.Result.Stdout != types.CIDOf([]byte("done\n")).String() {
			t.Fatalf("unit %d: stdout %s", u.Index, u.Result.Stdout)
		}
	}
	for _, m := range managers {
		if m == lead {
			continue
		}
		waitFor(t, 10*time.Second, "the managers to forget the batch", func() bool { return m.managedBatch(sub.ID) == nil })
	}
}

// TestManagedBatchManagerRestarts: a batch's only manager stops while
// replicas it issued run, and starts again: it re-attaches to them from
// its group's log and the batch completes long before their deadline
// would have re-issued them.
func TestManagedBatchManagerRestarts(t *testing.T) {
	nodes := testNet(t, 4, func(i int) bool { return i >= 2 })
	req, mgr := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	module := tinywasm.Module(1500*time.Millisecond, "done\n")
	mod, err := req.PutBlob(ctx, bytes.NewReader(module))
	if err != nil {
		t.Fatal(err)
	}
	b, err := jobs.ParseBatch([]byte(fmt.Sprintf(`
name: restarted
template: {module: %s, args: ["u{{unit}}"], resources: {cpu: 0.1, memory: 16MiB}}
units: {range: 1..6}
parallel: 2
deadline: 10m
managers: [%q]
`, mod, mgr.host.ID())))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := req.SubmitBatch(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "a unit decided and replicas under way", func() bool {
		r := mgr.managedBatch(sub.ID)
		if r == nil {
			return false
		}
		c := r.counts()
		return c.Completed >= 1 && c.Running >= 1
	})
	mgr.Close()
	back := reopen(t, mgr, WithBootstrap(nodes[2].host.Addrs()...))
	if back.managedBatch(sub.ID) == nil {
		t.Fatal("the restarted manager does not run the batch")
	}
	wait, stop := context.WithTimeout(ctx, 60*time.Second)
	defer stop()
	done := awaitBatch(t, wait, req, sub.ID)
	if done.State != api.BatchCompleted || done.Counts.Completed != 6 || done.Counts.Late != 0 {
		t.Fatalf("%s %q %+v: want 6 units completed, none late", done.State, done.Reason, done.Counts)
	}
}

func (d *DMS) managedBatch(id string) *batchRun {
	d.batches.mu.Lock()
	defer d.batches.mu.Unlock()
	return d.batches.managed[id]
}

// TestBatchProtocolRefusals: what a hostile peer sends on the batch
// protocol is refused, saying why, and changes nothing: garbage, a frame
// over the limit, a handoff that does not name the node, a collection
// or a release of a batch that is not the asker's, a batch whose blobs
// the asker does not send.
func TestBatchProtocolRefusals(t *testing.T) {
	nodes := testNet(t, 3, func(i int) bool { return i == 2 })
	mgr, stranger := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw := func(body []byte) string {
		conn, err := stranger.host.Dial(ctx, mgr.host.ID(), nil, BatchProtocol)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if err := writeFrame(conn, body); err != nil {
			return err.Error()
		}
		packed, err := readFrame(conn, maxBatchResponse)
		if err != nil {
			return "no answer: " + err.Error()
		}
		data, err := zdec.DecodeAll(packed, nil)
		if err != nil {
			t.Fatalf("an answer that is not zstd: %v", err)
		}
		var resp batchResponse
		if err := json.Unmarshal(data, &resp); err != nil {
			t.Fatalf("an answer that is not JSON: %v", err)
		}
		return resp.Err
	}
	spec := fmt.Sprintf(`{"name":"x","template":{"module":%q},"units":{"range":"1..2"}}`, types.CIDOf([]byte("m")).String())
	for _, c := range []struct {
		body []byte
		want string
	}{
		{[]byte("garbage"), "invalid character"},
		{[]byte(`{"op":"steal"}`), `unknown request "steal"`},
		{[]byte(fmt.Sprintf(`{"op":"handoff","id":"b-1","spec":%s,"managers":[%q]}`, spec, stranger.host.ID())), "not among the batch's managers"},
		{[]byte(fmt.Sprintf(`{"op":"handoff","id":"b-1","spec":{"name":"x"},"managers":[%q]}`, mgr.host.ID())), "template"},
		// A batch whose module the submitter cannot send.
		{[]byte(fmt.Sprintf(`{"op":"handoff","id":"b-1","spec":%s,"managers":[%q]}`, spec, mgr.host.ID())), "the batch's blobs: blob " + types.CIDOf([]byte("m")).String()},
		{[]byte(`{"op":"collect","id":"b-nothing"}`), "no batch b-nothing managed here"},
		{[]byte(`{"op":"release","id":"b-nothing"}`), "no batch b-nothing managed here"},
	} {
		if got := raw(c.body); !strings.Contains(got, c.want) {
			t.Errorf("%.60s: %q, want %q", c.body, got, c.want)
		}
	}
	// A frame over the limit is not read: the stream ends.
	conn, err := stranger.host.Dial(ctx, mgr.host.ID(), nil, BatchProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], maxBatchRequest+1)
	_, _ = conn.Write(n[:])
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if packed, err := readFrame(conn, maxBatchResponse); err == nil {
		data, _ := zdec.DecodeAll(packed, nil)
		if !strings.Contains(string(data), "limit") {
			t.Fatalf("an oversized frame: %s", data)
		}
	}
	conn.Close()
	if mgr.managedBatch("b-1") != nil {
		t.Fatal("a refused handoff left a batch")
	}
}

// submitBatch stores module on d and submits the batch doc, whose %s is
// the module's CID.
func submitBatch(t *testing.T, ctx context.Context, d *DMS, module []byte, doc string) api.Batch {
	t.Helper()
	mod, err := d.PutBlob(ctx, bytes.NewReader(module))
	if err != nil {
		t.Fatal(err)
	}
	b, err := jobs.ParseBatch([]byte(fmt.Sprintf(doc, mod)))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := d.SubmitBatch(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestBatchDeadline: a replica past its deadline is replaced by another,
// on another node; its late result still counts (here it decides the
// unit), and the replacement's is judged against it.
func TestBatchDeadline(t *testing.T) {
	nodes := testNet(t, 3, func(i int) bool { return i != 0 })
	req := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub := submitBatch(t, ctx, req, tinywasm.Module(2500*time.Millisecond, "late\n"), `
name: deadline
template: {module: %s, resources: {cpu: 0.1, memory: 16MiB}}
units: {range: 1..1}
deadline: 1s
`)
	done := awaitBatch(t, ctx, req, sub.ID)
	units, err := req.BatchUnits(ctx, sub.ID, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	u := units[0]
	if done.Counts.Completed != 1 || done.Counts.Late < 1 || len(u.Replicas) < 2 || !u.Replicas[0].Late {
		t.Fatalf("batch %+v, unit %+v", done.Counts, u)
	}
	if u.Replicas[0].Node == u.Replicas[1].Node {
		t.Fatalf("the replacement ran beside the late replica: %+v", u.Replicas)
	}
	// Every replica that ran, ran to its end and was judged; under a slow
	// machine the replacement may be late too, and a third then finds
	// both nodes taken (avoided) and fails.
	for _, r := range u.Replicas {
		if r.Node != "" && r.State != quorum.Returned || r.Node == "" && !strings.Contains(r.Reason, "avoided") {
			t.Fatalf("replicas %+v", u.Replicas)
		}
	}
}

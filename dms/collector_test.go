package dms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// laterClock is the real clock moved forward by what a test adds, so that
// blobs grow old at once while timers and leases run as usual.
type laterClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *laterClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *laterClock) add(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// putBlob stores size bytes that no other blob has, and returns their CID.
func putBlob(t *testing.T, d *DMS, name string, size int) string {
	t.Helper()
	data := bytes.Repeat([]byte{0}, size)
	copy(data, name)
	c, err := d.PutBlob(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// has reports whether d holds blob c, without using it (HasBlob would
// make it the most recently used).
func has(d *DMS, c string) bool {
	return slices.ContainsFunc(d.blobs.Uses(), func(u store.BlobUse) bool { return u.CID == c })
}

func collectNow(t *testing.T, d *DMS) api.Collection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	col, err := d.CollectGarbage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if col.Error != "" {
		t.Fatalf("collection error: %s", col.Error)
	}
	return col
}

// TestCollectorKeepsWhatIsReferenced fills a node's blobs over their
// budget and collects: the least recently used blobs go, except those an
// unfinished job, a live allocation or a pin names, the capability record,
// and a blob used within the minimum age. Unpinned, a blob goes too.
func TestCollectorKeepsWhatIsReferenced(t *testing.T) {
	const kib = 1 << 10
	clk := &laterClock{}
	home, _ := newHome(t)
	d := startNode(t, home, WithClock(clk.now), WithStore(StoreConfig{MaxBytes: 1 << 20, MinBlobAge: time.Minute}))
	ctx := context.Background()

	finished := putBlob(t, d, "finished job's module", 300*kib)
	old1 := putBlob(t, d, "old 1", 300*kib)
	live := putBlob(t, d, "running job's module", 300*kib)
	stdin := putBlob(t, d, "running allocation's stdin", 300*kib)
	pinned := putBlob(t, d, "pinned", 300*kib)
	old2 := putBlob(t, d, "old 2", 300*kib)
	running := jobRecord(types.JobRunning, clk.now())
	running.ID, running.Spec.ID, running.Spec.Task.Module, running.Spec.Task.Stdin, running.Spec.Task.Inputs = "live", "live", live, "", ""
	done := jobRecord(types.JobCompleted, clk.now())
	done.ID, done.Spec.ID, done.Spec.Task.Module = "done", "done", finished
	alloc := strings.NewReplacer("bafkstdin", stdin, "bafkmodule", old1).Replace(string(allocRecordJSON("running", clk.now(), true)))
	if err := d.db.PutAll(map[string]any{"job/live": running, "job/done": done, "alloc/a2": json.RawMessage(alloc)}); err != nil {
		t.Fatal(err)
	}
	if err := d.Pin(ctx, pinned); err != nil {
		t.Fatal(err)
	}
	// A pass while every blob is recent removes none, and leaves the
	// collector waiting for its timer (a minute), not for the next Put:
	// an automatic pass after the clock moves would take the forced one's
	// blobs.
	if col := collectNow(t, d); col.BlobsRemoved != 0 || col.Referenced+col.Recent < 6 {
		t.Errorf("collection while every blob is recent %+v: want none removed", col)
	}
	clk.add(2 * time.Minute)
	recent := putBlob(t, d, "recent", 300*kib)

	col := collectNow(t, d)
	for name, c := range map[string]string{"live": live, "stdin": stdin, "pinned": pinned, "recent": recent, "record": d.recordCID.Load().(string)} {
		if !has(d, c) {
			t.Errorf("the %s blob was collected", name)
		}
	}
	for name, c := range map[string]string{"finished": finished, "old2": old2} {
		if has(d, c) {
			t.Errorf("the %s blob is still there", name)
		}
	}
	if !has(d, old1) { // the allocation's module: referenced
		t.Error("the running allocation's module was collected")
	}
	if col.BlobsRemoved != 2 || col.FreedBytes != 600*kib || col.Recent != 1 || col.Referenced != 5 || col.BlobBytesAfter <= 1<<20 {
		t.Errorf("collection %+v: want 2 blobs, 600 KiB freed, 5 referenced, 1 recent, still over budget", col)
	}

	if err := d.Unpin(ctx, pinned); err != nil {
		t.Fatal(err)
	}
	if err := d.Unpin(ctx, pinned); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unpinning twice: %v, want ErrNotFound", err)
	}
	if err := d.Pin(ctx, "not-a-cid"); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("pinning a bad CID: %v, want ErrBadRequest", err)
	}
	clk.add(30 * time.Second) // the pin is 2.5 minutes old, the recent blob 30 s
	col = collectNow(t, d)
	if has(d, pinned) || !has(d, recent) || col.BlobsRemoved != 1 {
		t.Errorf("after unpinning: pinned held %v, recent held %v, collection %+v; want the unpinned blob gone only", has(d, pinned), has(d, recent), col)
	}

	info, err := d.StoreInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.BlobBytes != col.BlobBytesAfter || info.Blobs != 5 || info.MaxBytes != 1<<20 || info.MinBlobAgeMillis != 60_000 ||
		info.RetentionMillis != DefaultRetention.Milliseconds() || len(info.Pins) != 0 || info.Records["job"] != 2 ||
		info.HomeBytes < info.BlobBytes || info.LastCollection == nil || info.LastCollection.BlobsRemoved != 1 {
		t.Errorf("store info: %+v (last collection %+v); want it to match the collection %+v", info, info.LastCollection, col)
	}
}

// TestCollectorRunsOnItsOwn: blobs over budget are collected without being
// asked, once they are older than the minimum age.
func TestCollectorRunsOnItsOwn(t *testing.T) {
	home, _ := newHome(t)
	d := startNode(t, home, WithStore(StoreConfig{MaxBytes: 1 << 20, MinBlobAge: 300 * time.Millisecond}))
	for i := range 5 {
		putBlob(t, d, fmt.Sprint("blob ", i), 300<<10)
	}
	waitFor(t, 10*time.Second, "the blobs to be collected under budget", func() bool {
		info, err := d.StoreInfo(context.Background())
		return err == nil && info.BlobBytes <= 1<<20 && info.LastCollection != nil
	})
	info, _ := d.StoreInfo(context.Background())
	if info.LastCollection.BlobsRemoved < 2 {
		t.Fatalf("last collection %+v: want at least 2 blobs removed", info.LastCollection)
	}
	// The budget is the home's: the blobs get what the records leave.
	if lc := info.LastCollection; lc.BlobBudget >= 1<<20 || info.HomeBytes > 1<<20 {
		t.Fatalf("blob budget %s, home %s: want both under the store's budget of 1 MiB", types.Bytes(lc.BlobBudget), types.Bytes(info.HomeBytes))
	}
}

// TestCompactionKeepsEpochs runs jobs on a node that computes its own,
// restarts it with a retention shorter than their age, and compacts: the
// records lose their task and keep their epoch, and the node, restarted
// again, locks its next job under a higher epoch than any before.
func TestCompactionKeepsEpochs(t *testing.T) {
	home, _ := newHome(t)
	d := startNode(t, home, WithLease(10*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(d *DMS) {
		t.Helper()
		spec := tinySpec(t, 0, "hi\n")
		spec.Args, spec.Env = []string{"an", "argument"}, map[string]string{"K": "V"}
		h, err := d.Submit(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if job := waitEnd(t, h); job.State != types.JobCompleted {
			t.Fatalf("job %s: %s", job.State, job.Reason)
		}
	}
	run(d)
	run(d)
	before := rawRecords(t, d, allocPrefix)
	if len(before) != 2 || before[0]["task"] == nil {
		t.Fatalf("alloc records before compaction: %v", before)
	}
	d.Close()

	d = reopen(t, d, WithStore(StoreConfig{Retention: time.Nanosecond}))
	if col := collectNow(t, d); col.RecordsCompacted != 4 {
		t.Fatalf("compacted %d records, want 2 jobs and 2 allocations", col.RecordsCompacted)
	}
	after := rawRecords(t, d, allocPrefix)
	epochs := map[string]bool{}
	for i, rec := range after {
		if rec["task"] != nil || string(rec["epoch"]) != string(before[i]["epoch"]) || string(rec["result"]) != string(before[i]["result"]) {
			t.Fatalf("compacted alloc record %s\nfrom %s", marshal(t, rec), marshal(t, before[i]))
		}
		epochs[string(rec["epoch"])] = true
	}
	for _, rec := range rawRecords(t, d, jobPrefix) {
		var job orchestrator.Record
		if err := json.Unmarshal(marshal(t, rec), &job); err != nil || job.Spec.Task.Args != nil || job.Spec.Task.Env != nil || job.Spec.Task.Module == "" || job.Result == nil {
			t.Fatalf("compacted job record %s (%v)", marshal(t, rec), err)
		}
	}
	d.Close()

	d = reopen(t, d)
	run(d)
	var highest, newest uint64
	for _, rec := range rawRecords(t, d, allocPrefix) {
		var e uint64
		json.Unmarshal(rec["epoch"], &e)
		if epochs[string(rec["epoch"])] {
			highest = max(highest, e)
		} else {
			newest = e
		}
	}
	if newest <= highest {
		t.Fatalf("the job after compaction and restart locked under epoch %d; the epochs before reach %d", newest, highest)
	}
}

// rawRecords returns the records under prefix, field by field, in key order.
func rawRecords(t *testing.T, d *DMS, prefix string) []object {
	t.Helper()
	var out []object
	err := d.db.Scan(prefix, func(_ string, v []byte) error {
		var rec object
		out = append(out, rec)
		return json.Unmarshal(v, &out[len(out)-1])
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCollectedResult: a requester asking for a result its provider has
// collected is told so at once, with a not-found error that says why.
func TestCollectedResult(t *testing.T) {
	// The provider's blobs are old enough to go after 50 ms. (A clock moved
	// forward would do, but the provider would then find the requester's
	// signed requests expired.)
	nodes := relNet(t, 2, func(i int) bool { return i == 1 }, func(i int) []Option {
		opts := []Option{WithLease(10 * time.Second)}
		if i == 1 {
			opts = append(opts, WithStore(StoreConfig{MaxBytes: 1 << 20, MinBlobAge: 50 * time.Millisecond}))
		}
		return opts
	})
	req, prov := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := req.Submit(ctx, tinySpec(t, 0, "collected\n"))
	if err != nil {
		t.Fatal(err)
	}
	job := waitEnd(t, h)
	if job.State != types.JobCompleted {
		t.Fatalf("job %s: %s", job.State, job.Reason)
	}
	for i := range 4 { // newer blobs than the result, over the budget
		putBlob(t, prov, fmt.Sprint("filler ", i), 400<<10)
	}
	waitFor(t, 10*time.Second, "the provider to collect the result", func() bool {
		collectNow(t, prov)
		return !has(prov, job.Result.Stdout)
	})
	began := time.Now()
	_, err = h.Stdout(ctx)
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "no longer holds it") {
		t.Fatalf("fetching a collected result: %v", err)
	}
	t.Logf("after %s: %v", time.Since(began).Round(time.Millisecond), err)
	if took := time.Since(began); took > 15*time.Second {
		t.Fatalf("the error took %s", took)
	}
}

// TestRefIndex: a scan decodes only the records written since the last
// one, and reports the blobs the records name now.
func TestRefIndex(t *testing.T) {
	db, err := store.Open(storeOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	decoded := 0
	x := &refIndex{prefix: jobPrefix, read: func(v []byte) ([]string, error) {
		decoded++
		return jobRefs(v)
	}}
	job := func(state types.JobState, module string) orchestrator.Record {
		rec := jobRecord(state, day0)
		rec.Spec.Task.Module, rec.Spec.Task.Stdin, rec.Spec.Task.Inputs, rec.Spec.Task.Files = module, "", "", nil
		return rec
	}
	scan := func() []string {
		t.Helper()
		var got []string
		if err := x.scan(db, func(cs ...string) { got = append(got, cs...) }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		return got
	}
	put := func(key string, v any) {
		t.Helper()
		if err := db.Put(key, v); err != nil {
			t.Fatal(err)
		}
	}
	put("job/1", job(types.JobRunning, "m1"))
	put("job/2", job(types.JobCompleted, "m2"))
	put("job/3", job(types.JobPending, "m3"))
	if got := scan(); !slices.Equal(got, []string{"m1", "m3"}) || decoded != 3 {
		t.Fatalf("first scan: %v, %d decoded", got, decoded)
	}
	if got := scan(); !slices.Equal(got, []string{"m1", "m3"}) || decoded != 3 {
		t.Fatalf("nothing changed: %v, %d decoded", got, decoded)
	}
	put("job/1", job(types.JobCompleted, "m1"))
	put("job/4", job(types.JobBidding, "m4"))
	if got := scan(); !slices.Equal(got, []string{"m3", "m4"}) || decoded != 5 {
		t.Fatalf("after job 1 ended and job 4 came: %v, %d decoded", got, decoded)
	}
	put("job/5", "not a record")
	if err := x.scan(db, func(...string) {}); err == nil || !strings.Contains(err.Error(), "job/5") {
		t.Fatalf("an unreadable record: %v", err)
	}
	put("job/5", job(types.JobRunning, "m5"))
	if got := scan(); !slices.Equal(got, []string{"m3", "m4", "m5"}) {
		t.Fatalf("after the record was repaired: %v", got)
	}
}

// TestCollectorKeepsBatchAndFlowBlobs: the program and unit files of a
// batch that runs, or that this node manages, and the programs and files
// of a flow that runs, stay while the store is over budget, however long
// their units or steps wait; those of a batch or a flow that ended go.
func TestCollectorKeepsBatchAndFlowBlobs(t *testing.T) {
	const kib = 1 << 10
	clk := &laterClock{}
	home, _ := newHome(t)
	d := startNode(t, home, WithClock(clk.now), WithStore(StoreConfig{MaxBytes: 1 << 20, MinBlobAge: time.Minute}))
	mod := putBlob(t, d, "module", 300*kib)
	file := putBlob(t, d, "running batch's unit", 300*kib)
	managed := putBlob(t, d, "managed batch's unit", 300*kib)
	ended := putBlob(t, d, "ended batch's unit", 300*kib)
	stepMod := putBlob(t, d, "flow step's module", 300*kib)
	item := putBlob(t, d, "flow step's item", 300*kib)
	endedFlow := putBlob(t, d, "ended flow's item", 300*kib)
	spec := func(unit string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"name":"b","template":{"module":%q},"units":{"files":{"a":%q}}}`, mod, unit))
	}
	flow := func(item string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"name":"f","steps":{"a":{"module":%q,"for_each":{"files":{"x":%q}}}}}`, stepMod, item))
	}
	err := d.db.PutAll(map[string]any{
		batchPrefix + "b-1":   batchRecord{ID: "b-1", Spec: spec(file), State: api.BatchRunning},
		batchPrefix + "b-2":   batchRecord{ID: "b-2", Spec: spec(ended), State: api.BatchCompleted},
		managedPrefix + "b-3": managedRecord{ID: "b-3", Spec: spec(managed)},
		flowPrefix + "f-1":    flowRecord{ID: "f-1", Spec: flow(item), State: api.FlowRunning},
		flowPrefix + "f-2":    flowRecord{ID: "f-2", Spec: flow(endedFlow), State: api.FlowFailed},
	})
	if err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Minute)
	collectNow(t, d)
	for name, c := range map[string]string{"module": mod, "running batch's unit": file, "managed batch's unit": managed,
		"flow step's module": stepMod, "flow step's item": item} {
		if !has(d, c) {
			t.Errorf("the %s blob was collected", name)
		}
	}
	if has(d, ended) || has(d, endedFlow) {
		t.Error("the ended batch's or flow's file is still there")
	}
}

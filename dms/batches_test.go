package dms

import (
	"bytes"
	"context"
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
	lie := &liar{}
	nodes := relNet(t, 6, func(i int) bool { return i != 0 }, func(i int) []Option {
		opts := []Option{WithLease(10 * time.Second)}
		if i == 5 {
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
	req, liarID := nodes[0], nodes[5].id.PeerID
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes[5].priceNode(t, ctx, "0") // a cheat undercuts, to win work
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

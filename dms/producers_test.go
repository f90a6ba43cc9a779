package dms

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// TestProducersIndex: a job's saved result indexes the node that produced
// its blobs, which GetBlob reads instead of every job record; the records
// of an earlier version, without the index, are indexed once.
func TestProducersIndex(t *testing.T) {
	nodes := testNet(t, 2, func(i int) bool { return i == 1 })
	req, prov := nodes[0], nodes[1].host.ID()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := req.Submit(ctx, tinySpec(t, 0, "indexed\n"))
	if err != nil {
		t.Fatal(err)
	}
	job := waitEnd(t, h)
	if job.State != types.JobCompleted {
		t.Fatalf("job %s: %s", job.State, job.Reason)
	}
	producers := func() []string {
		t.Helper()
		peers, err := req.producers(job.Result.Stdout)
		if err != nil {
			t.Fatal(err)
		}
		return peers
	}
	waitFor(t, 10*time.Second, "the job's record and its producers saved", func() bool {
		return slices.Equal(producers(), []string{prov})
	})
	out, err := req.GetBlob(ctx, job.Result.Stdout)
	if err != nil || string(out) != "indexed\n" {
		t.Fatalf("its stdout: %q, %v", out, err)
	}

	unindex := func() { // as an earlier version left the records
		t.Helper()
		var keys []string
		if err := req.db.Scan(producerPrefix, func(key string, _ []byte) error { keys = append(keys, key); return nil }); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if err := req.db.Delete(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	unindex()
	if err := req.db.Delete(producersIndexedKey); err != nil {
		t.Fatal(err)
	}
	if err := req.indexOldProducers(); err != nil {
		t.Fatal(err)
	}
	if got := producers(); !slices.Equal(got, []string{prov}) {
		t.Fatalf("indexed from the old records: %v, want %s", got, prov)
	}
	unindex()
	if err := req.indexOldProducers(); err != nil {
		t.Fatal(err)
	}
	if got := producers(); len(got) != 0 {
		t.Fatalf("the old records indexed twice: %v", got)
	}
}

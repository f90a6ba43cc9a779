package dms

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/hostile"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// moduleSpec is a job spec named name running module, written to a file.
func moduleSpec(t *testing.T, name string, module []byte) *jobs.Spec {
	t.Helper()
	spec, err := jobs.Parse([]byte("name: " + name + "\nmodule: m.wasm\ntimeout: 30s\n"))
	if err != nil {
		t.Fatal(err)
	}
	spec.Module = filepath.Join(t.TempDir(), name+".wasm")
	if err := os.WriteFile(spec.Module, module, 0o644); err != nil {
		t.Fatal(err)
	}
	return spec
}

// labelNode gives a running node the label name: <name> in its offer, so
// that a job can be sent to it.
func (d *DMS) labelNode(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	path := filepath.Join(d.home, configFile)
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), "labels: {}") {
		t.Fatalf("%s has no empty labels to fill in: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "labels: {}", "labels: {name: "+name+"}", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
}

// runSpec submits spec and waits for it to complete. Its stdout is not
// fetched: the requester would hold it then.
func runSpec(t *testing.T, ctx context.Context, req *DMS, spec *jobs.Spec) api.Job {
	t.Helper()
	h, err := req.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	job, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != types.JobCompleted || job.Result == nil || job.Result.ExitCode != 0 {
		t.Fatalf("%s ended %s (%s), result %+v", spec.Name, job.State, job.Reason, job.Result)
	}
	return job
}

// TestJobReadsAnotherJobsOutputFromItsProducer: job A writes a file on
// the producer; job B names it by CID with From = [a peer that lies about
// it, the producer] and reads it at /inputs on another node, which fetched
// it from the producer after the liar's bytes failed their CID; job C,
// free to run anywhere, is placed on the producer, which holds its input.
// Job D names another of the producer's files without From: the consumer
// finds it in the DHT. The requester never holds the files. (B, C and D
// print them: their stdout is the file, the same blob, so it is never
// fetched, only compared by CID.)
func TestJobReadsAnotherJobsOutputFromItsProducer(t *testing.T) {
	nodes := testNet(t, 3, func(i int) bool { return i != 0 })
	req, producer, consumer := nodes[0], nodes[1], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	producer.labelNode(t, ctx, "producer")
	consumer.labelNode(t, ctx, "consumer")

	const text = "made by job A\n"
	a := moduleSpec(t, "a", tinywasm.WriteOutput("part.txt", text))
	a.Constraints.Labels = map[string]string{"name": "producer"}
	jobA := runSpec(t, ctx, req, a)
	c, ok := jobA.Result.Files["part.txt"]
	if !ok || jobA.Node != producer.host.ID() || jobA.Result.Sizes[c] != int64(len(text)) {
		t.Fatalf("job A on %s, files %v, sizes %v", jobA.Node, jobA.Result.Files, jobA.Result.Sizes)
	}

	liar, err := hostile.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = liar.Close() })
	liar.ServeWrongBlobs([]byte("not what job A wrote\n"))
	if err := liar.Connect(ctx, consumer.host.Addrs()[0]); err != nil {
		t.Fatal(err)
	}

	b := moduleSpec(t, "b", tinywasm.Cat("a/part.txt"))
	b.Constraints.Labels = map[string]string{"name": "consumer"}
	b.InputFiles = []types.InputFile{{Path: "a/part.txt", CID: c, Size: int64(len(text)), From: []string{liar.ID(), producer.host.ID()}}}
	jobB := runSpec(t, ctx, req, b)
	if jobB.Node != consumer.host.ID() || jobB.Result.Stdout != c {
		t.Fatalf("job B ran on %s (the consumer is %s) and printed %s, not the file %s", jobB.Node, consumer.host.ID(), jobB.Result.Stdout, c)
	}
	if n := liar.Stats().BlobsServed; n != 1 {
		t.Fatalf("the liar was asked %d times, want once", n)
	}
	if !consumer.blobs.Has(c) {
		t.Fatal("the consumer did not keep the file")
	}

	// Job D names a file without From: the consumer finds its producer in
	// the DHT, once the producer's announcement is there.
	const other = "made by job A2\n"
	a2 := moduleSpec(t, "a2", tinywasm.WriteOutput("part.txt", other))
	a2.Constraints.Labels = map[string]string{"name": "producer"}
	c2 := runSpec(t, ctx, req, a2).Result.Files["part.txt"]
	waitFor(t, 30*time.Second, "the producer's announcement of A2's output", func() bool {
		return len((&network{d: consumer}).FindProviders(ctx, c2)) > 0
	})
	d := moduleSpec(t, "d", tinywasm.Cat("x"))
	d.Constraints.Labels = map[string]string{"name": "consumer"}
	d.InputFiles = []types.InputFile{{Path: "x", CID: c2}}
	if jobD := runSpec(t, ctx, req, d); jobD.Node != consumer.host.ID() || jobD.Result.Stdout != c2 {
		t.Fatalf("job D ran on %s (the consumer is %s) and printed %s, not the file %s", jobD.Node, consumer.host.ID(), jobD.Result.Stdout, c2)
	}

	cSpec := moduleSpec(t, "c", tinywasm.Cat("part.txt"))
	cSpec.InputFiles = []types.InputFile{{Path: "part.txt", CID: c, From: []string{producer.host.ID()}}}
	if jobC := runSpec(t, ctx, req, cSpec); jobC.Node != producer.host.ID() || jobC.Result.Stdout != c {
		t.Fatalf("job C ran on %s (the producer is %s) and printed %s, not the file %s", jobC.Node, producer.host.ID(), jobC.Result.Stdout, c)
	}
	if req.blobs.Has(c) || req.blobs.Has(c2) {
		t.Fatal("the requester holds a file: it went through the requester")
	}
	got, err := req.GetBlob(ctx, c) // now it fetches it, from a holder
	if err != nil || string(got) != text {
		t.Fatalf("the file: %q, %v", got, err)
	}
}

// TestJobWithBadInputFilesIsRefused: a spec built by a program (not
// parsed), whose input files are bad, is refused when submitted.
func TestJobWithBadInputFilesIsRefused(t *testing.T) {
	nodes := testNet(t, 1, func(int) bool { return false })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := moduleSpec(t, "bad", tinywasm.Cat("x"))
	spec.InputFiles = []types.InputFile{{Path: "../x", CID: types.CIDOf([]byte("x")).String()}}
	_, err := nodes[0].Submit(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), `input_files[0].path: "../x" has a ".." element`) {
		t.Fatalf("submitting bad input files: %v", err)
	}
}

func TestWithLocalityWeight(t *testing.T) {
	for _, w := range []float64{-1, MaxLocalityWeight + 1} {
		if _, err := newConfig([]Option{WithHome("h"), WithLocalityWeight(w)}); err == nil {
			t.Errorf("weight %v accepted", w)
		}
	}
	for w, want := range map[float64]float64{0: orchestrator.NoLocality, 2: 2, 0.5: 0.5} {
		c, err := newConfig([]Option{WithHome("h"), WithLocalityWeight(w)})
		if err != nil || c.locality != want {
			t.Errorf("weight %v: %v, %v", w, c.locality, err)
		}
	}
	if c, _ := newConfig([]Option{WithHome("h")}); c.locality != 0 {
		t.Errorf("the default is %v, want 0 (the orchestrator's default)", c.locality)
	}
}

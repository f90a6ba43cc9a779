package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func testBatch(t *testing.T, doc string) *jobs.Batch {
	t.Helper()
	b, err := jobs.ParseBatch([]byte(strings.ReplaceAll(doc, "MOD", moduleCID(t))))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBatchEndpoints: a batch goes through submit, get, list, events,
// units and cancel over HTTP, and the Client reads each answer back.
func TestBatchEndpoints(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	b := testBatch(t, "name: nums\ntemplate: {module: MOD, args: [\"{{unit}}\"]}\nunits: {range: 10..14}\nreplication: 3\n")
	got, err := h.client.SubmitBatch(ctx, b)
	if err != nil || got.ID == "" || got.State != BatchRunning || got.Counts.Units != 5 {
		t.Fatalf("submit: %+v %v", got, err)
	}
	if sent := h.svc.batches[got.ID].Spec; sent.Replication != 3 || sent.Quorum != 2 || sent.Units.Range.From != 10 {
		t.Fatalf("the daemon got %+v", sent)
	}
	if again, err := h.client.GetBatch(ctx, got.ID); err != nil || again.ID != got.ID || again.Spec == nil || again.Spec.Len() != 5 {
		t.Fatalf("get: %+v %v", again, err)
	}
	if list, err := h.client.ListBatches(ctx); err != nil || len(list) != 1 || list[0].Spec != nil {
		t.Fatalf("list: %+v %v", list, err)
	}
	snaps, err := h.client.WatchBatch(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for s := range snaps {
		if s.ID != got.ID || s.Counts.Queued != 5 {
			t.Fatalf("snapshot %+v", s)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d snapshots, want the fake's one", n)
	}
	units, err := h.client.BatchUnits(ctx, got.ID, 3, 10)
	if err != nil || len(units) != 2 || units[0].Index != 3 || units[0].Value != "13" || units[1].Value != "14" {
		t.Fatalf("units: %+v %v", units, err)
	}
	if units, err := h.client.BatchUnits(ctx, got.ID, 5, 10); err != nil || units == nil || len(units) != 0 {
		t.Fatalf("units past the end: %#v %v, want []", units, err)
	}
	if err := h.client.CancelBatch(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.client.CancelBatch(ctx, got.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("cancel of an ended batch: %v, want ErrConflict", err)
	}
}

// TestBatchUnknown: every route of a batch answers 404 for an unknown ID.
func TestBatchUnknown(t *testing.T) {
	h := newHarness(t)
	for _, rt := range [][2]string{{"GET", "/v1/batches/nope"}, {"GET", "/v1/batches/nope/events"},
		{"GET", "/v1/batches/nope/units"}, {"DELETE", "/v1/batches/nope"}} {
		if status, body := h.do(t, rt[0], rt[1], ""); status != http.StatusNotFound || !strings.Contains(string(body), "batch nope") {
			t.Errorf("%s %s: %d %s", rt[0], rt[1], status, body)
		}
	}
	if _, err := h.client.GetBatch(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("client: %v, want ErrNotFound", err)
	}
}

// TestSubmitBatchBadInput: what a hostile or careless client sends gets a
// 400 naming the problem (a 413 when oversized), and nothing is
// submitted.
func TestSubmitBatchBadInput(t *testing.T) {
	h := newHarness(t)
	m := moduleCID(t)
	h.refuses(t, "/v1/batches", []badBody{
		{"not json", `{"name":`, "batch spec"},
		{"empty", ``, "empty document"},
		{"no units", `{"name":"b","template":{"module":"` + m + `"}}`, "give exactly one of range, params, dir or files"},
		{"local module", `{"name":"b","template":{"module":"./x.wasm"},"units":{"range":"1..3"}}`, "template.module"},
		{"local input_dir", `{"name":"b","template":{"module":"` + m + `","input_dir":"./in"},"units":{"range":"1..3"}}`, "template.input_dir"},
		{"local dir", `{"name":"b","template":{"module":"` + m + `"},"units":{"dir":"./parts"}}`, "is local"},
		{"unknown field", `{"name":"b","template":{"module":"` + m + `"},"units":{"range":"1..3"},"replicaton":3}`, `unknown field "replicaton"`},
		{"bad range", `{"name":"b","template":{"module":"` + m + `"},"units":{"range":"1..200000"}}`, "more than 100000 units"},
		{"bad quorum", `{"name":"b","template":{"module":"` + m + `"},"units":{"range":"1..3"},"replication":2,"quorum":5}`, "quorum: 5 is outside"},
		{"file not a CID", `{"name":"b","template":{"module":"` + m + `"},"units":{"files":{"a.txt":"nope"}}}`, "is not a CID"},
		{"huge", `{"name":"b","template":{"module":"` + m + `","stdin":"` + strings.Repeat("x", jobs.MaxSpecSize) + `"},"units":{"range":"1..3"}}`, "too large"},
	})
	if len(h.svc.batches) != 0 {
		t.Fatalf("%d batches submitted from bad input", len(h.svc.batches))
	}
	// The client turns the problems back into a batch SpecError.
	b := testBatch(t, "name: b\ntemplate: {module: ./local.wasm}\nunits: {range: 1..2}\n")
	_, err := h.client.SubmitBatch(context.Background(), b)
	var se *jobs.SpecError
	if !errors.As(err, &se) || se.Doc != "batch spec" || !strings.HasPrefix(err.Error(), "batch spec: template.module") {
		t.Fatalf("client error %v", err)
	}
}

// TestBatchUnitsBadQuery: a page asked with what is not a whole number in
// range is a 400 that says what is allowed, and the service is not asked.
func TestBatchUnitsBadQuery(t *testing.T) {
	h := newHarness(t)
	sub, err := h.client.SubmitBatch(context.Background(), testBatch(t, "name: b\ntemplate: {module: MOD}\nunits: {range: 1..3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/batches/" + sub.ID + "/units"
	for q, want := range map[string]string{
		"?from=-1":                           "from=\"-1\": want a whole number from 0 to 100000",
		"?from=x":                            "from=\"x\"",
		"?from=":                             "from=\"\"",
		"?from=99999999999999999999999":      "from=",
		"?limit=0":                           "limit=\"0\": want a whole number from 1 to 1000",
		"?limit=1001":                        "limit=\"1001\"",
		"?limit=1e3":                         "limit=\"1e3\"",
		"?limit=" + strings.Repeat("9", 500): "want a whole number",
	} {
		status, body := h.do(t, http.MethodGet, path+q, "")
		var eb errorBody
		_ = json.Unmarshal(body, &eb)
		if status != http.StatusBadRequest || !strings.Contains(eb.Error, want) || len(body) > 300 {
			t.Errorf("%s: %d %s\nwant 400 saying %q", q, status, body, want)
		}
	}
	if len(h.svc.unitWindows) != 0 {
		t.Fatalf("the service was asked for %v", h.svc.unitWindows)
	}
	if status, body := h.do(t, http.MethodGet, path, ""); status != http.StatusOK || len(h.svc.unitWindows) != 1 || h.svc.unitWindows[0] != [2]int{0, DefaultUnitsPage} {
		t.Fatalf("no query: %d %s, windows %v", status, body, h.svc.unitWindows)
	}
	if status, _ := h.do(t, http.MethodGet, path+"?from=2&limit=1000", ""); status != http.StatusOK || h.svc.unitWindows[1] != [2]int{2, MaxUnitsPage} {
		t.Fatalf("from=2&limit=1000: %d, windows %v", status, h.svc.unitWindows)
	}
}

// TestUploadBatch: a batch over a directory becomes a batch over its
// files (those of the directory itself), each uploaded, with the
// template's module.
func TestUploadBatch(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"batch.yaml":      "name: b\ntemplate: {module: prog.wasm, args: [\"/inputs/{{unit}}\"]}\nunits: {dir: parts}\n",
		"prog.wasm":       "\x00asm\x01\x00\x00\x00",
		"parts/a.txt":     "alpha",
		"parts/b.txt":     "beta",
		"parts/sub/c.txt": "not a unit",
	})
	b, err := jobs.ParseBatchFile(filepath.Join(dir, "batch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	svc := newFakeService()
	if err := UploadBatch(context.Background(), svc, b); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.txt": types.CIDOf([]byte("alpha")).String(), "b.txt": types.CIDOf([]byte("beta")).String()}
	if b.Units.Dir != "" || len(b.Units.Files) != 2 || b.Units.Files["a.txt"] != want["a.txt"] || b.Units.Files["b.txt"] != want["b.txt"] {
		t.Fatalf("units %+v, want files %v", b.Units, want)
	}
	if _, ok := svc.blobs[want["b.txt"]]; !ok {
		t.Fatal("b.txt was not uploaded")
	}
	if err := requireBatchCIDs(b); err != nil {
		t.Fatalf("after UploadBatch the batch is not self-contained: %v", err)
	}
	spec, value, err := b.Unit(1)
	if err != nil || value != "b.txt" || spec.Args[0] != "/inputs/b.txt" || spec.InputFiles[0].CID != want["b.txt"] {
		t.Fatalf("unit 1: %q %+v %v", value, spec, err)
	}

	if err := os.RemoveAll(filepath.Join(dir, "parts")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"parts/only/x": "in a subdirectory"})
	b, _ = jobs.ParseBatchFile(filepath.Join(dir, "batch.yaml"))
	if err := UploadBatch(context.Background(), svc, b); err == nil || !strings.Contains(err.Error(), "holds no files") {
		t.Fatalf("a directory of no files: %v", err)
	}
	b, _ = jobs.ParseBatchFile(filepath.Join(dir, "batch.yaml"))
	b.SetDir(t.TempDir())
	if err := UploadBatch(context.Background(), svc, b); err == nil || !strings.Contains(err.Error(), "template: api: uploading module") {
		t.Fatalf("a missing module: %v", err)
	}
}

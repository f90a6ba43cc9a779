package api

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// writeFiles creates files (path -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// untar reads an archive into name -> content ("/" suffix: a directory).
func untar(t *testing.T, data []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out[hdr.Name] = string(body)
	}
}

func TestUploadModuleAndInputDir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"job.yaml":            "name: up\nmodule: prog.wasm\ninput_dir: in\n",
		"prog.wasm":           "\x00asm\x01\x00\x00\x00",
		"in/a.txt":            "alpha",
		"in/sub/b.txt":        "beta",
		"in/sub/deeper/c.txt": "gamma",
	})
	if err := os.Symlink("a.txt", filepath.Join(dir, "in", "link.txt")); err != nil {
		t.Fatal(err)
	}
	spec, err := jobs.ParseFile(filepath.Join(dir, "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	svc := newFakeService()
	if err := Upload(context.Background(), svc, spec); err != nil {
		t.Fatal(err)
	}
	if want := types.CIDOf([]byte("\x00asm\x01\x00\x00\x00")).String(); spec.Module != want {
		t.Fatalf("module = %q, want %q", spec.Module, want)
	}
	archive, ok := svc.blobs[spec.InputDir]
	if !ok {
		t.Fatalf("input_dir = %q is not an uploaded blob", spec.InputDir)
	}
	got := untar(t, archive)
	want := map[string]string{"a.txt": "alpha", "link.txt": "alpha", "sub/": "", "sub/b.txt": "beta", "sub/deeper/": "", "sub/deeper/c.txt": "gamma"}
	if len(got) != len(want) {
		t.Fatalf("archive holds %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("archive[%q] = %q, want %q", k, got[k], v)
		}
	}
	if err := requireCIDs(spec); err != nil {
		t.Fatalf("after Upload the spec is not self-contained: %v", err)
	}
	again, _ := jobs.ParseFile(filepath.Join(dir, "job.yaml"))
	if Upload(context.Background(), svc, again); again.InputDir != spec.InputDir {
		t.Fatal("the same directory packs to a different archive")
	}
}

func TestUploadRejectsEscapingSymlink(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"job.yaml": "name: up\nmodule: prog.wasm\ninput_dir: in\n", "prog.wasm": "x", "secret": "s", "in/a": "a"})
	if err := os.Symlink(filepath.Join(dir, "secret"), filepath.Join(dir, "in", "leak")); err != nil {
		t.Fatal(err)
	}
	spec, err := jobs.ParseFile(filepath.Join(dir, "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, svc := range map[string]Service{"in process": newFakeService(), "over HTTP": newHarnessLimit(t, MaxBlobSize).client} {
		err = Upload(context.Background(), svc, spec)
		if err == nil || !strings.Contains(err.Error(), "leak") || !strings.Contains(err.Error(), "out of the input directory") ||
			strings.Contains(err.Error(), "daemon") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestUploadLeavesCIDs(t *testing.T) {
	c := types.CIDOf([]byte("m")).String()
	spec, err := jobs.Parse([]byte("name: x\nmodule: " + c + "\ninput_dir: " + c + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	svc := newFakeService()
	if err := Upload(context.Background(), svc, spec); err != nil || spec.Module != c || spec.InputDir != c || len(svc.blobs) != 0 {
		t.Fatalf("Upload changed a self-contained spec: %+v, %v", spec, err)
	}
}

func TestUploadMissingModule(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"job.yaml": "name: x\nmodule: gone.wasm\n"})
	spec, err := jobs.ParseFile(filepath.Join(dir, "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Upload(context.Background(), newFakeService(), spec); err == nil || !strings.Contains(err.Error(), "gone.wasm") {
		t.Fatalf("err = %v", err)
	}
}

// A module the node holds already is not sent again: Upload hashes the
// file and asks first, through the API's HEAD /v1/blobs/{cid}.
func TestUploadSkipsWhatTheNodeHolds(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"job.yaml": "name: up\nmodule: prog.wasm\n", "prog.wasm": "\x00asm\x01\x00\x00\x00"})
	for range 2 {
		spec, err := jobs.ParseFile(filepath.Join(dir, "job.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := Upload(context.Background(), h.client, spec); err != nil {
			t.Fatal(err)
		}
		if want := types.CIDOf([]byte("\x00asm\x01\x00\x00\x00")).String(); spec.Module != want {
			t.Fatalf("module = %q, want %q", spec.Module, want)
		}
	}
	if h.svc.puts != 1 {
		t.Fatalf("%d uploads of one module, want 1", h.svc.puts)
	}
	if code, _ := h.do(t, http.MethodHead, "/v1/blobs/"+types.CIDOf([]byte("absent")).String(), ""); code != http.StatusNotFound {
		t.Fatalf("HEAD of an absent blob: %d", code)
	}
	if code, _ := h.do(t, http.MethodHead, "/v1/blobs/not-a-cid", ""); code != http.StatusBadRequest {
		t.Fatalf("HEAD of a bad CID: %d", code)
	}
}

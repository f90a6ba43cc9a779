package dms

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
)

// tinySpec is a job spec like examples/sleep/job.yaml, running a tinywasm.Module
// that sleeps for sleep and prints out.
func tinySpec(t *testing.T, sleep time.Duration, out string) *jobs.Spec {
	t.Helper()
	spec, err := jobs.ParseFile("../examples/sleep/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tiny.wasm")
	if err := os.WriteFile(path, tinywasm.Module(sleep, out), 0o644); err != nil {
		t.Fatal(err)
	}
	spec.Module, spec.Args = path, nil
	return spec
}

package tinywasm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// runIn runs module with dir mounted at mount, and returns its stdout and
// exit code.
func runIn(t *testing.T, module []byte, dir, mount string) (string, uint32) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	var out bytes.Buffer
	cfg := wazero.NewModuleConfig().WithStdout(&out).WithFSConfig(wazero.NewFSConfig().WithDirMount(dir, mount))
	_, err := r.InstantiateWithConfig(ctx, module, cfg)
	if exit, ok := err.(*sys.ExitError); ok {
		return out.String(), exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// TestCat: the module prints a file under /inputs, small or larger than
// its buffer, and exits 1 for a file that is not there.
func TestCat(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("0123456789", 20_000)
	for name, text := range map[string]string{"a.txt": "hello\n", "d/long": long} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o400); err != nil {
			t.Fatal(err)
		}
		if out, code := runIn(t, Cat(name), dir, "/inputs"); out != text || code != 0 {
			t.Errorf("cat %s: exit %d, %d bytes %.20q", name, code, len(out), out)
		}
	}
	if out, code := runIn(t, Cat("missing"), dir, "/inputs"); out != "" || code != 1 {
		t.Errorf("cat of a missing file: exit %d, %q", code, out)
	}
}

// TestWriteOutput: the module creates the file under /outputs, and exits
// 1 where it cannot.
func TestWriteOutput(t *testing.T) {
	dir := t.TempDir()
	if _, code := runIn(t, WriteOutput("out.txt", "made by a job\n"), dir, "/outputs"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(got) != "made by a job\n" {
		t.Fatalf("wrote %q, %v", got, err)
	}
	if _, code := runIn(t, WriteOutput("no/such/dir", "x"), dir, "/outputs"); code != 1 {
		t.Fatalf("writing into a missing directory: exit %d", code)
	}
}

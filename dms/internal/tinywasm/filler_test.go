package tinywasm

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// run runs a WASI command with args and returns its stdout.
func run(t *testing.T, module []byte, args ...string) []byte {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	var out bytes.Buffer
	_, err := r.InstantiateWithConfig(ctx, module, wazero.NewModuleConfig().WithStdout(&out).WithArgs(append([]string{"job"}, args...)...))
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestFiller: the module writes what FillerOutput says, different bytes
// for different arguments.
func TestFiller(t *testing.T) {
	module := Filler(1 << 20)
	seen := map[string]bool{}
	for _, args := range [][]string{nil, {"1"}, {"2"}, {"a", "b"}, {"ab"}} {
		got := run(t, module, args...)
		want := FillerOutput(1<<20, args...)
		if !bytes.Equal(got, want) {
			t.Fatalf("args %q: wrote %d bytes, not FillerOutput's %d (first differ at %d)", args, len(got), len(want), firstDiff(got, want))
		}
		if seen[string(got[:64])] {
			t.Fatalf("args %q: the same output as another run", args)
		}
		seen[string(got[:64])] = true
	}
	if got := run(t, Filler(8), "x"); !bytes.Equal(got, FillerOutput(8, "x")) {
		t.Fatalf("8 bytes: %x, want %x", got, FillerOutput(8, "x"))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

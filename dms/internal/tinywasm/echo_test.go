package tinywasm

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// TestEcho: the module writes the header and then its stdin, empty,
// small, and cut at EchoLimit.
func TestEcho(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	compiled, err := r.CompileModule(ctx, Echo())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"", "hello", strings.Repeat("x", EchoLimit+10)} {
		var out bytes.Buffer
		cfg := wazero.NewModuleConfig().WithName("").WithStdin(strings.NewReader(in)).WithStdout(&out)
		if _, err := r.InstantiateModule(ctx, compiled, cfg); err != nil {
			t.Fatal(err)
		}
		want := EchoHeader + in[:min(len(in), EchoLimit)]
		if out.String() != want {
			t.Errorf("input of %d bytes: got %d bytes %.40q, want %d bytes", len(in), out.Len(), out.String(), len(want))
		}
	}
}

package wasm

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opendms/dms/jobs"
)

// The test guest (testdata/guest) is a Go wasip1 program, built once per
// test binary; its first argument picks what it does. One Executor, shared
// by the tests that do not count compilations, compiles it once.
var shared struct {
	once sync.Once
	bin  []byte
	exec *Executor
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.exec != nil {
		shared.exec.Close(context.Background())
	}
	os.Exit(code)
}

func setup(t testing.TB) ([]byte, *Executor) {
	t.Helper()
	shared.once.Do(func() {
		if shared.bin, shared.err = buildGuest(); shared.err == nil {
			shared.exec, shared.err = New(Config{})
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.bin, shared.exec
}

func buildGuest() ([]byte, error) {
	dir, err := os.MkdirTemp("", "wasm-guest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "guest.wasm")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/guest")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the test guest: %w\n%s", err, b)
	}
	return os.ReadFile(out)
}

// guestInput runs the test guest in mode with args.
func guestInput(bin []byte, mode string, args ...string) jobs.Input {
	return jobs.Input{ModuleID: "guest", Module: bin, Args: append([]string{mode}, args...)}
}

// Hand-assembled modules, for what a Go guest cannot do or compiles too
// slowly for: each has one function type () -> (), a _start of that type,
// and usually a memory.

func module(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}

func section(id byte, payload ...byte) []byte {
	return append(append([]byte{id}, uleb(len(payload))...), payload...)
}

func uleb(n int) []byte { return binary.AppendUvarint(nil, uint64(n)) }

var (
	typeSection = section(1, 1, 0x60, 0, 0)
	funcSection = section(3, 1, 0)
	startExport = section(7, 1, 6, '_', 's', 't', 'a', 'r', 't', 0, 0)
	bothExports = section(7, 2, 6, '_', 's', 't', 'a', 'r', 't', 0, 0, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0)
)

func memorySection(pages int) []byte { return section(5, append([]byte{1, 0}, uleb(pages)...)...) }

// code is a code section holding one function with body (without its end).
func code(body ...byte) []byte {
	fn := append(append([]byte{0}, body...), 0x0b)
	return section(10, append(append([]byte{1}, uleb(len(fn))...), fn...)...)
}

// command is a module with a memory of pages exported as "memory", whose _start runs body.
func command(pages int, body ...byte) []byte {
	return module(typeSection, funcSection, memorySection(pages), bothExports, code(body...))
}

// Function bodies.
var (
	unreachable = []byte{0x00}
	loopForever = []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}
	// growUntilRefused grows memory 16 pages at a time until memory.grow
	// returns -1, then traps.
	growUntilRefused = []byte{0x03, 0x40, 0x41, 0x10, 0x40, 0x00, 0x41, 0x7f, 0x47, 0x0d, 0x00, 0x0b, 0x00}
)

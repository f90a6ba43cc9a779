package wasm

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
)

// Benchmarks of the executor beside BenchmarkRunCached and BenchmarkCompile
// (examples_test.go, which run examples/hello): the floor of a run, a tiny
// module instantiated from the in-memory cache, and what the compilation
// cache on disk saves a restarted node.

// tinyInput is the smallest command: one page of memory, an empty _start.
func tinyInput() jobs.Input { return jobs.Input{ModuleID: "tiny", Module: command(1)} }

// BenchmarkRunTinyCached instantiates an already compiled tiny module and
// calls its _start: the executor's own cost per run, with no guest runtime.
func BenchmarkRunTinyCached(b *testing.B) {
	e := newExecutor(b, Config{})
	in := tinyInput()
	ctx := context.Background()
	if _, err := e.Run(ctx, in); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	if s := e.Stats(); s.Compiles != 1 {
		b.Fatalf("compiled %d times", s.Compiles)
	}
}

// BenchmarkRunTinyFirst runs the tiny module on a fresh Executor each time:
// a new runtime, WASI, the compilation and the run, for comparison with
// BenchmarkRunTinyCached.
func BenchmarkRunTinyFirst(b *testing.B) {
	in := tinyInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		e, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
		if err := e.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompileHelloDisk runs examples/hello (a 2.5 MB Go wasip1 module)
// on a fresh Executor with a compilation cache on disk: in a fresh
// directory each time (the first run ever: compile and write the cache),
// and in a directory that already holds it (a restarted node: read the
// compiled code back instead of compiling).
func BenchmarkCompileHelloDisk(b *testing.B) {
	in := exampleInput(b, "hello")
	ctx := context.Background()
	runOnce := func(b *testing.B, dir string) {
		e, err := New(Config{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
		if err := e.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("fresh", func(b *testing.B) {
		parent := b.TempDir()
		b.ReportAllocs()
		for b.Loop() {
			dir, err := os.MkdirTemp(parent, "cache-")
			if err != nil {
				b.Fatal(err)
			}
			runOnce(b, dir)
			if err := os.RemoveAll(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		dir := b.TempDir()
		runOnce(b, dir)
		b.ReportAllocs()
		for b.Loop() {
			runOnce(b, dir)
		}
	})
}

// BenchmarkMetering weighs what metering a run's CPU time costs: each run
// bare (no thread locked, no clock read) then metered (onThread), one
// after the other in one process. tiny is the executor's floor; hello a
// Go program that prints a line (examples/hello); sleep a Go program that
// sleeps 1ms, so its locked thread blocks and wakes.
func BenchmarkMetering(b *testing.B) {
	bin, _ := setup(b)
	e := newExecutor(b, Config{})
	ctx := context.Background()
	bare := func(run func()) time.Duration { run(); return 0 }
	for _, c := range []struct {
		name string
		in   jobs.Input
	}{
		{"tiny", tinyInput()},
		{"hello", exampleInput(b, "hello")},
		{"sleep", guestInput(bin, "sleep", "1ms")},
	} {
		if _, err := e.Run(ctx, c.in); err != nil { // compiled before the clock starts
			b.Fatal(err)
		}
		for _, m := range []struct {
			name  string
			meter func(func()) time.Duration
		}{{"bare", bare}, {"metered", onThread}} {
			b.Run(c.name+"/"+m.name, func(b *testing.B) {
				e.meter = m.meter
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.Run(ctx, c.in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOnThread is metering's fixed cost alone: lock the thread, read
// its CPU clock twice (two system calls), unlock.
func BenchmarkOnThread(b *testing.B) {
	for b.Loop() {
		onThread(func() {})
	}
}

package wasm

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// exampleInput reads an example's job.yaml and module into an Input, as a
// node would run it.
func exampleInput(t testing.TB, name string) jobs.Input {
	t.Helper()
	spec, err := jobs.ParseFile(filepath.Join("..", "..", "examples", name, "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(spec.ModulePath())
	if err != nil {
		t.Fatal(err)
	}
	return jobs.Input{
		ModuleID: types.CIDOf(bin).String(), Module: bin, Args: spec.Args, Env: spec.Env,
		Memory: spec.Resources.Memory, Timeout: time.Duration(spec.Timeout),
	}
}

// TestExamples runs the committed examples as their job.yaml says, in
// parallel subtests so that their compilations overlap.
func TestExamples(t *testing.T) {
	_, e := setup(t)
	sleep := exampleInput(t, "sleep")
	sleep.Args = []string{"0"} // the job sleeps 5 seconds; the test need not
	for _, c := range []struct {
		name string
		in   jobs.Input
		want string
	}{
		{"hello", exampleInput(t, "hello"), "hello from dms: args=[a b]\n"},
		{"sleep", sleep, "slept 0 seconds\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, err := e.Run(context.Background(), c.in)
			if err != nil || out.ExitCode != 0 || string(out.Stdout) != c.want {
				t.Errorf("out %+v, err %v; want stdout %q", out, err, c.want)
			}
		})
	}
}

// BenchmarkRunCached runs examples/hello with its module already compiled:
// the per-job cost of the executor.
func BenchmarkRunCached(b *testing.B) {
	e := newExecutor(b, Config{})
	in := exampleInput(b, "hello")
	if _, err := e.Run(context.Background(), in); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := e.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	if s := e.Stats(); s.Compiles != 1 {
		b.Fatalf("compiled %d times", s.Compiles)
	}
}

// BenchmarkCompile runs examples/hello on a fresh Executor each time: the
// cost of the first job of a module.
func BenchmarkCompile(b *testing.B) {
	in := exampleInput(b, "hello")
	for b.Loop() {
		e, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
		e.Close(context.Background())
	}
}

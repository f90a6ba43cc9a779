package wasm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
)

func run(t *testing.T, e *Executor, in jobs.Input) (*jobs.Output, error) {
	t.Helper()
	return e.Run(context.Background(), in)
}

func TestEcho(t *testing.T) {
	bin, e := setup(t)
	in := guestInput(bin, "echo", "a b", "c")
	in.Env = map[string]string{"B": "2", "A": "1"}
	in.Stdin = []byte("from stdin")
	out, err := run(t, e, in)
	if err != nil {
		t.Fatal(err)
	}
	want := "args=[\"job\" \"echo\" \"a b\" \"c\"]\nenv=[\"A=1\" \"B=2\"]\nstdin=\"from stdin\"\n"
	if string(out.Stdout) != want || string(out.Stderr) != "to stderr\n" || out.ExitCode != 0 {
		t.Fatalf("stdout %q\nstderr %q\nexit %d", out.Stdout, out.Stderr, out.ExitCode)
	}
	if out.Duration <= 0 {
		t.Fatalf("duration %s", out.Duration)
	}
}

func TestExitCodeIsNotAnError(t *testing.T) {
	bin, e := setup(t)
	out, err := run(t, e, guestInput(bin, "exit", "3"))
	if err != nil || out.ExitCode != 3 || string(out.Stdout) != "exiting with 3\n" {
		t.Fatalf("out %+v, err %v", out, err)
	}
}

func TestTimeoutStopsBusyLoop(t *testing.T) {
	bin, e := setup(t)
	run(t, e, guestInput(bin, "exit", "0")) // compiled, so the clock measures the run only
	in := guestInput(bin, "loop")
	in.Timeout = time.Second // long enough for the guest to print first on a loaded machine (300 ms was not, in CI: its runtime's start took 390 ms of CPU beside other tests under -race)
	began := time.Now()
	out, err := run(t, e, in)
	took := time.Since(began)
	if !errors.Is(err, jobs.ErrTimeout) || !strings.Contains(err.Error(), "stopped after 1s") {
		t.Fatalf("err = %v", err)
	}
	if out == nil || string(out.Stdout) != "looping\n" {
		t.Fatalf("partial output %+v", out)
	}
	if took < in.Timeout || took > in.Timeout+2*time.Second {
		t.Fatalf("stopped after %s, timeout %s", took, in.Timeout)
	}
}

func TestTimeoutStopsSleep(t *testing.T) {
	bin, e := setup(t)
	run(t, e, guestInput(bin, "exit", "0")) // compiled, so the clock measures the run only
	in := guestInput(bin, "sleep", "1h")
	in.Timeout = time.Second // long enough for the guest to print first on a loaded machine (200 ms was not, in CI)
	began := time.Now()
	out, err := run(t, e, in)
	if !errors.Is(err, jobs.ErrTimeout) || time.Since(began) > 10*time.Second {
		t.Fatalf("err = %v after %s", err, time.Since(began))
	}
	if string(out.Stdout) != "sleeping 1h0m0s\n" {
		t.Fatalf("stdout %q", out.Stdout)
	}
}

func TestSleepIsReal(t *testing.T) {
	bin, e := setup(t)
	run(t, e, guestInput(bin, "exit", "0")) // compiled, so the clock measures the run only
	began := time.Now()
	out, err := run(t, e, guestInput(bin, "sleep", "100ms"))
	if err != nil || !strings.HasSuffix(string(out.Stdout), "woke\n") {
		t.Fatalf("out %+v, err %v", out, err)
	}
	if took := time.Since(began); took < 100*time.Millisecond {
		t.Fatalf("a 100ms sleep took %s", took)
	}
}

func TestParentCancelIsNotATimeout(t *testing.T) {
	bin, e := setup(t)
	run(t, e, guestInput(bin, "exit", "0")) // compiled, so the cancel finds the run started
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err := e.Run(ctx, guestInput(bin, "loop"))
	if !errors.Is(err, context.Canceled) || errors.Is(err, jobs.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
}

func TestMemoryBomb(t *testing.T) {
	bin, e := setup(t)
	in := guestInput(bin, "membomb")
	in.Memory = 16 << 20
	out, err := run(t, e, in)
	if !errors.Is(err, jobs.ErrMemoryLimit) || !strings.Contains(err.Error(), "over its limit of 16 MiB, and then exited with code 2") {
		t.Fatalf("err = %v", err)
	}
	if !strings.HasPrefix(string(out.Stdout), "growing") || !strings.Contains(string(out.Stderr), "out of memory") {
		t.Fatalf("stdout %q\nstderr %.200q", out.Stdout, out.Stderr)
	}
	// The host is fine and runs the next job.
	if out, err := run(t, e, guestInput(bin, "exit", "0")); err != nil || out.ExitCode != 0 {
		t.Fatalf("after the bomb: %+v, %v", out, err)
	}
}

func TestMemoryBelowWhatTheModuleStartsWith(t *testing.T) {
	bin, e := setup(t)
	in := guestInput(bin, "echo")
	in.Memory = 1 << 20
	out, err := run(t, e, in)
	if !errors.Is(err, jobs.ErrMemoryLimit) || !strings.Contains(err.Error(), "the limit is 1 MiB") || out != nil {
		t.Fatalf("out %v, err %v", out, err)
	}
}

func TestOutputLimit(t *testing.T) {
	bin, e := setup(t)
	in := guestInput(bin, "flood", "10000")
	in.OutputLimit = 1000
	out, err := run(t, e, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Stdout) != 1000 || len(out.Stderr) != 1000 || !out.StdoutTruncated || !out.StderrTruncated {
		t.Fatalf("kept %d/%d bytes, truncated %v/%v", len(out.Stdout), len(out.Stderr), out.StdoutTruncated, out.StderrTruncated)
	}
	in.Args[1] = "1000"
	if out, err = run(t, e, in); err != nil || len(out.Stdout) != 1000 || out.StdoutTruncated || out.StderrTruncated {
		t.Fatalf("exactly the limit: %d bytes, truncated %v, err %v", len(out.Stdout), out.StdoutTruncated, err)
	}
}

func TestDefaultOutputLimit(t *testing.T) {
	bin, e := setup(t)
	out, err := run(t, e, guestInput(bin, "flood", "1100000"))
	if err != nil || len(out.Stdout) != jobs.DefaultOutputLimit || !out.StdoutTruncated {
		t.Fatalf("kept %d bytes, truncated %v, err %v", len(out.Stdout), out.StdoutTruncated, err)
	}
}

func TestFileSystem(t *testing.T) {
	bin, e := setup(t)
	in := guestInput(bin, "files")
	in.InputDir, in.OutputDir = t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(in.InputDir, "in.txt"), []byte("input"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, e, in)
	if err != nil {
		t.Fatal(err)
	}
	want := `content "input"
read /inputs/in.txt: allowed
write /inputs/new.txt: denied
write /outputs/out.txt: allowed
read /etc/passwd: denied
symlink escape: denied
raw open /inputs/in.txt: allowed
dotdot escape: denied
inputs dotdot escape: denied
`
	if string(out.Stdout) != want {
		t.Fatalf("guest reported\n%s\nwant\n%s", out.Stdout, want)
	}
	if b, err := os.ReadFile(filepath.Join(in.OutputDir, "out.txt")); err != nil || string(b) != "result" {
		t.Fatalf("output file %q, %v", b, err)
	}
}

func TestInputSymlinkCannotEscape(t *testing.T) {
	bin, e := setup(t)
	in := guestInput(bin, "files")
	in.InputDir = t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(in.InputDir, "in.txt")); err != nil {
		t.Skip("no symlinks here:", err)
	}
	out, err := run(t, e, in)
	if err != nil || !strings.Contains(string(out.Stdout), "read /inputs/in.txt: denied") {
		t.Fatalf("stdout %s, err %v", out.Stdout, err)
	}
}

func TestNoFileSystemByDefault(t *testing.T) {
	bin, e := setup(t)
	out, err := run(t, e, guestInput(bin, "files"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out.Stdout), "allowed") {
		t.Fatalf("without mounts the guest could:\n%s", out.Stdout)
	}
}

func TestBadInput(t *testing.T) {
	bin, e := setup(t)
	cases := map[string]jobs.Input{
		"NUL in arg":       guestInput(bin, "echo", "a\x00b"),
		"= in env name":    {Module: bin, Env: map[string]string{"A=B": "c"}},
		"no input dir":     {Module: bin, InputDir: filepath.Join(t.TempDir(), "missing")},
		"output is a file": {Module: bin, OutputDir: filepath.Join("testdata", "guest", "main.go")},
	}
	for name, in := range cases {
		if _, err := run(t, e, in); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestBadModules(t *testing.T) {
	e := newExecutor(t, Config{})
	importsEnv := module(typeSection, section(2, 1, 3, 'e', 'n', 'v', 1, 'f', 0, 0), funcSection, memorySection(1),
		section(7, 1, 6, '_', 's', 't', 'a', 'r', 't', 0, 1), code())
	cases := map[string]struct {
		bin  []byte
		want string
	}{
		"not wasm":     {[]byte("#!/bin/sh\necho hi\n"), "jobs: bad module: "},
		"no _start":    {module(typeSection, funcSection, memorySection(1), section(7, 0), code()), "exports no _start function"},
		"imports env":  {importsEnv, "imports env.f; only wasi_snapshot_preview1 is available"},
		"bad function": {module(typeSection, funcSection, memorySection(1), startExport, code(0x6a)), "jobs: bad module: "},
	}
	for name, c := range cases {
		_, err := run(t, e, jobs.Input{Module: c.bin})
		if !errors.Is(err, jobs.ErrBadModule) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if s := e.Stats(); s.Cached != 0 {
		t.Errorf("failed compilations are cached: %+v", s)
	}
}

func TestTrap(t *testing.T) {
	e := newExecutor(t, Config{})
	out, err := run(t, e, jobs.Input{Module: command(1, unreachable...)})
	if !errors.Is(err, jobs.ErrTrap) || !strings.Contains(err.Error(), "unreachable") || out == nil {
		t.Fatalf("out %v, err %v", out, err)
	}
}

func TestMemoryGrowthRefusedThenTrap(t *testing.T) {
	e := newExecutor(t, Config{})
	_, err := run(t, e, jobs.Input{Module: command(1, growUntilRefused...), Memory: 1 << 20})
	if !errors.Is(err, jobs.ErrMemoryLimit) || !strings.Contains(err.Error(), "over its limit of 1 MiB, and then trapped") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnexportedMemoryOverLimit(t *testing.T) {
	e := newExecutor(t, Config{})
	bin := module(typeSection, funcSection, memorySection(100), startExport, code())
	if _, err := run(t, e, jobs.Input{Module: bin, Memory: 1 << 20}); !errors.Is(err, jobs.ErrMemoryLimit) {
		t.Fatalf("err = %v", err)
	}
	if out, err := run(t, e, jobs.Input{Module: bin, Memory: 100 * pageSize}); err != nil || out.ExitCode != 0 {
		t.Fatalf("at the limit: %v, %v", out, err)
	}
}

func TestClose(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	in := jobs.Input{Module: command(1, loopForever...)}
	closed := make(chan error, 1)
	time.AfterFunc(100*time.Millisecond, func() { closed <- e.Close(context.Background()) })
	if _, err := run(t, e, in); !errors.Is(err, ErrClosed) {
		t.Fatalf("run cut short by Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, e, in); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func newExecutor(t testing.TB, cfg Config) *Executor {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

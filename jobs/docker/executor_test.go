package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/opendms/dms/jobs"
)

func TestHello(t *testing.T) {
	e := newExecutor(t, Config{})
	for _, pass := range []string{"cold", "warm"} {
		began := time.Now()
		out := mustRun(t, e, jobs.Input{Image: shared.images.guest})
		t.Logf("%s hello: %s in all, %s running", pass, time.Since(began).Round(time.Millisecond), out.Duration.Round(time.Millisecond))
		if string(out.Stdout) != "hello from the guest\n" || len(out.Stderr) != 0 || out.Duration <= 0 {
			t.Fatalf("stdout %q, stderr %q, duration %s", out.Stdout, out.Stderr, out.Duration)
		}
	}
}

func TestArgsEnvStdin(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("echo", "a b", "c")
	in.Env = map[string]string{"B": "2", "A": "1"}
	in.Stdin = []byte("from stdin")
	out := mustRun(t, e, in)
	stdout := string(out.Stdout)
	for _, want := range []string{`args=["a b" "c"]`, `"A=1" "B=2"`, `stdin="from stdin"`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout %q lacks %s", stdout, want)
		}
	}
	if string(out.Stderr) != "to stderr\n" {
		t.Errorf("stderr %q", out.Stderr)
	}
}

func TestExitCodeIsNotAnError(t *testing.T) {
	e := newExecutor(t, Config{})
	out, err := runIn(t, e, guest("exit", "3"))
	if err != nil || out.ExitCode != 3 || string(out.Stdout) != "exiting with 3\n" {
		t.Fatalf("out %+v, err %v", out, err)
	}
}

func TestMemoryLimitKills(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("hog", "200")
	in.Memory = 32 << 20
	began := time.Now()
	out, err := runIn(t, e, in)
	t.Logf("a 200 MiB hog killed at 32 MiB in %s", time.Since(began).Round(time.Millisecond))
	if !errors.Is(err, jobs.ErrMemoryLimit) || !strings.Contains(err.Error(), "memory limit of 32 MiB") {
		t.Fatalf("err = %v", err)
	}
	if out == nil || strings.Contains(string(out.Stdout), "allocated") {
		t.Fatalf("output %+v", out)
	}
	// The same program within its limit.
	in.Args, in.Memory = []string{"hog", "8"}, 64<<20
	if out := mustRun(t, e, in); string(out.Stdout) != "allocated 8 MiB\n" {
		t.Fatalf("stdout %q", out.Stdout)
	}
}

// Exit code 137 under a memory limit is the OOM killer's SIGKILL, even
// when the engine reports OOMKilled=false, as it sometimes does.
func TestExit137IsTheMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		state *container.State
		want  bool
	}{
		{&container.State{OOMKilled: true, ExitCode: 137}, true},
		{&container.State{OOMKilled: false, ExitCode: 137}, true},
		{&container.State{OOMKilled: true, ExitCode: 0}, true},
		{&container.State{ExitCode: 1}, false},
		{&container.State{ExitCode: 143}, false},
		{nil, false},
	} {
		if got := memoryKilled(c.state); got != c.want {
			t.Errorf("%+v: memory killed %v, want %v", c.state, got, c.want)
		}
	}
	e := newExecutor(t, Config{})
	if _, err := runIn(t, e, guest("exit", "137")); !errors.Is(err, jobs.ErrMemoryLimit) {
		t.Fatalf("a container that exited 137: %v, want the memory limit", err)
	}
}

func TestTimeoutStopsLoop(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("loop")
	in.Timeout = 500 * time.Millisecond
	began := time.Now()
	out, err := runIn(t, e, in)
	took := time.Since(began)
	if !errors.Is(err, jobs.ErrTimeout) || !strings.Contains(err.Error(), "stopped after 500ms") {
		t.Fatalf("err = %v", err)
	}
	if out == nil || string(out.Stdout) != "looping\n" || out.Duration < in.Timeout {
		t.Fatalf("partial output %+v", out)
	}
	if took > in.Timeout+10*time.Second {
		t.Fatalf("stopped after %s", took)
	}
}

func TestCancelStops(t *testing.T) {
	e := newExecutor(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	began := time.Now()
	_, err := e.Run(ctx, guest("sleep"))
	if !errors.Is(err, context.Canceled) || errors.Is(err, jobs.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("stopped after %s", took)
	}
}

func TestCloseEndsRuns(t *testing.T) {
	e := newExecutor(t, Config{})
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(context.Background(), guest("sleep"))
		done <- err
	}()
	time.Sleep(time.Second)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("run ended with %v", err)
	}
	if _, err := runIn(t, e, guest("exit", "0")); !errors.Is(err, ErrClosed) {
		t.Fatalf("run after Close: %v", err)
	}
}

func TestOutputFloodTruncated(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("flood", "8388608")
	in.OutputLimit = 64 << 10
	out := mustRun(t, e, in)
	if len(out.Stdout) != 64<<10 || !out.StdoutTruncated || out.StderrTruncated {
		t.Fatalf("kept %d bytes, truncated %v", len(out.Stdout), out.StdoutTruncated)
	}
}

func TestNetwork(t *testing.T) {
	e := newExecutor(t, Config{})
	if out := mustRun(t, e, guest("ifaces")); string(out.Stdout) != "lo\n" {
		t.Fatalf("interfaces without a network: %q", out.Stdout)
	}
	in := guest("ifaces")
	in.Network = true
	if out := mustRun(t, e, in); !strings.Contains(string(out.Stdout), "eth0") {
		t.Fatalf("interfaces with a network: %q", out.Stdout)
	}
}

func TestReadOnlyRoot(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("write", "/x", "/tmp/x", "/outputs/o.txt")
	in.OutputDir = t.TempDir()
	want := "error: open /x: read-only file system\nwrote /tmp/x\nwrote /outputs/o.txt\n"
	if out := mustRun(t, e, in); string(out.Stdout) != want {
		t.Fatalf("stdout %q, want %q", out.Stdout, want)
	}
	if b, err := os.ReadFile(filepath.Join(in.OutputDir, "o.txt")); string(b) != "written to /outputs/o.txt" {
		t.Fatalf("output file %q, %v", b, err)
	}
	in.WritableRoot, in.OutputDir = true, ""
	in.Args = []string{"write", "/x", "/outputs/o.txt"}
	if out := mustRun(t, e, in); !strings.HasPrefix(string(out.Stdout), "wrote /x\n") {
		t.Fatalf("writable root: %q", out.Stdout)
	}
}

func TestOutputsCopiedSafely(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("outputs")
	in.OutputDir = t.TempDir()
	mustRun(t, e, in)
	var got []string
	filepath.WalkDir(in.OutputDir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(in.OutputDir, p)
		got = append(got, rel+":"+d.Type().String())
		return nil
	})
	want := ".:d---------;a.txt:----------;sub:d---------;sub/deeper:d---------;sub/deeper/b.txt:----------"
	if strings.Join(got, ";") != want {
		t.Fatalf("outputs %s\nwant    %s", strings.Join(got, ";"), want)
	}
}

func TestOutputsBounded(t *testing.T) {
	e := newExecutor(t, Config{MaxOutputFiles: 1})
	in := guest("outputs")
	in.OutputDir = t.TempDir()
	if _, err := runIn(t, e, in); !errors.Is(err, ErrOutputsTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

func TestNonRootUser(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("write", "/outputs/o.txt")
	in.Image, in.OutputDir = shared.images.user, t.TempDir()
	if out := mustRun(t, e, in); string(out.Stdout) != "wrote /outputs/o.txt\n" {
		t.Fatalf("stdout %q", out.Stdout)
	}
	in.Args, in.OutputDir = []string{"whoami"}, ""
	if out := mustRun(t, e, in); string(out.Stdout) != "uid 1000\n" {
		t.Fatalf("stdout %q", out.Stdout)
	}
}

func TestInputs(t *testing.T) {
	e := newExecutor(t, Config{})
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o700)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("A"), 0o600)
	os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("B"), 0o600)
	os.Symlink("/etc/hostname", filepath.Join(dir, "link"))
	in := guest("cat", "/inputs/a.txt", "/inputs/sub/b.txt", "/inputs/link")
	in.InputDir = dir
	in.Image = shared.images.user // files readable by any user
	want := "/inputs/a.txt: \"A\" <nil>\n/inputs/sub/b.txt: \"B\" <nil>\n/inputs/link: \"\" open /inputs/link: no such file or directory\n"
	if out := mustRun(t, e, in); string(out.Stdout) != want {
		t.Fatalf("stdout %q\nwant   %q", out.Stdout, want)
	}
}

func TestLimitsApplied(t *testing.T) {
	e := newExecutor(t, Config{})
	seen := inspected(e)
	in := guest("exit", "0")
	in.Memory, in.CPU, in.Pids = 48<<20, 500, 64
	mustRun(t, e, in)
	in.CPU = 1_000_000 // more cores than any engine: the engine's all
	mustRun(t, e, in)
	c := seen()
	if len(c) != 2 {
		t.Fatalf("%d containers seen", len(c))
	}
	h := c[0].HostConfig
	switch {
	case h.Memory != 48<<20 || h.MemorySwap != 48<<20 || h.NanoCPUs != 5e8 || h.PidsLimit == nil || *h.PidsLimit != 64:
		t.Errorf("limits: memory %d swap %d cpus %d pids %v", h.Memory, h.MemorySwap, h.NanoCPUs, h.PidsLimit)
	case string(h.NetworkMode) != "none" || !h.ReadonlyRootfs || h.LogConfig.Type != "none":
		t.Errorf("network %s, read-only %v, log %s", h.NetworkMode, h.ReadonlyRootfs, h.LogConfig.Type)
	case len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL" || len(h.SecurityOpt) != 1 || h.SecurityOpt[0] != "no-new-privileges":
		t.Errorf("capabilities dropped %v, security %v", h.CapDrop, h.SecurityOpt)
	case c[0].Config.Labels[labelManaged] != "true" || c[0].Config.Labels[labelJob] != "test":
		t.Errorf("labels %v", c[0].Config.Labels)
	}
	if n := c[1].HostConfig.NanoCPUs; n != e.ncpu.Load()*1e9 || n == 0 {
		t.Errorf("CPU limit %d, engine's CPUs %d", n, e.ncpu.Load())
	}
}

func TestPidsLimitEnforced(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("threads", "64")
	if out := mustRun(t, e, in); string(out.Stdout) != "holding 64 threads\n" {
		t.Fatalf("under the default limit: %q", out.Stdout)
	}
	in.Pids = 16
	out, err := runIn(t, e, in)
	if err != nil || out.ExitCode == 0 || !strings.Contains(string(out.Stderr), "failed to create new OS thread") {
		t.Fatalf("over a limit of 16: err %v, exit %d, stderr %.200q", err, out.ExitCode, out.Stderr)
	}
}

func TestNoImage(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("exit", "0")
	in.Image = "dms-docker-test:missing-" + shared.run
	if _, err := runIn(t, e, in); !errors.Is(err, ErrNoImage) || !strings.Contains(err.Error(), "never pulled") {
		t.Fatalf("err = %v", err)
	}
}

func TestBadInput(t *testing.T) {
	e := newExecutor(t, Config{})
	cases := map[string]jobs.Input{
		"no image":   {},
		"tiny":       {Image: shared.images.guest, Memory: 1 << 20},
		"nul arg":    {Image: shared.images.guest, Args: []string{"a\x00"}},
		"env name":   {Image: shared.images.guest, Env: map[string]string{"A=B": "c"}},
		"no out dir": {Image: shared.images.guest, OutputDir: filepath.Join(t.TempDir(), "missing")},
	}
	for name, in := range cases {
		if _, err := runIn(t, e, in); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestPing(t *testing.T) {
	e := newExecutor(t, Config{})
	if err := e.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	down, err := New(Config{Host: "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	if err := down.Ping(context.Background()); !errors.Is(err, ErrEngine) {
		t.Fatalf("Ping of no engine: %v", err)
	}
	if _, err := down.Run(context.Background(), guest("exit", "0")); !errors.Is(err, ErrEngine) {
		t.Fatalf("Run on no engine: %v", err)
	}
}

func TestRemoveLeftovers(t *testing.T) {
	e := newExecutor(t, Config{})
	// What a crashed executor for the same node left: a created container.
	crashed := &Executor{cli: e.cli, cfg: e.cfg, instance: "crashed"}
	r := &run{e: crashed, in: guest("exit", "0").WithDefaults(), image: shared.images.guest}
	if err := r.create(context.Background()); err != nil {
		t.Fatal(err)
	}
	n, err := e.RemoveLeftovers(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("removed %d, %v", n, err)
	}
}

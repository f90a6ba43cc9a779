package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// warmIn warms in on e, failing the test when it cannot, and closes the
// instance when the test ends.
func warmIn(t testing.TB, e *Executor, in jobs.Input) jobs.Instance {
	t.Helper()
	began := time.Now()
	i, err := e.Warm(context.Background(), in)
	if err != nil {
		t.Fatalf("Warm: %v", err)
	}
	t.Logf("warmed in %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() { i.Close() })
	return i
}

// call calls i in mode (of the test guest's warm loop) with arg.
func call(i jobs.Instance, mode, arg string, timeout time.Duration) (*jobs.Output, error) {
	return i.Call(context.Background(), jobs.CallInput{Env: map[string]string{"MODE": mode, "ARG": arg}, Timeout: timeout})
}

// The example answers each of 50 calls at once with its own request.
func TestWarmEchoConcurrent(t *testing.T) {
	e := newExecutor(t, Config{})
	in := jobs.Input{Image: exampleImage(t, "docker-echo-warm"), Job: "test", Env: map[string]string{"QUERY_STRING": "instance's", "REQUEST_METHOD": "GET"}}
	i := warmIn(t, e, in)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for k := range n {
		wg.Go(func() {
			env := map[string]string{"PATH_INFO": fmt.Sprintf("/call/%d", k)}
			if k%2 == 0 {
				env["QUERY_STRING"] = fmt.Sprintf("k=%d", k)
			}
			out, err := i.Call(context.Background(), jobs.CallInput{Env: env, Stdin: fmt.Appendf(nil, "body of %d", k)})
			query := cmpOr(env["QUERY_STRING"], "instance's")
			want := fmt.Sprintf("Status: 200\nContent-Type: text/plain\n\nmethod=GET\npath=/call/%d\nquery=%s\nbody=body of %d\n", k, query, k)
			if err != nil || string(out.Stdout) != want || out.ExitCode != 0 || out.Duration <= 0 {
				errs <- fmt.Errorf("call %d: %v, %+v", k, err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// A call's environment wins over the instance's; its exit code, stdout and
// stderr are the program's answer.
func TestWarmCallAnswer(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("warm")
	in.Env = map[string]string{"A": "instance", "B": "instance"}
	i := warmIn(t, e, in)
	out, err := i.Call(context.Background(), jobs.CallInput{Env: map[string]string{"B": "call", "ARG": "5"}, Stdin: []byte("in\x00put")})
	if err != nil || out.ExitCode != 5 || string(out.Stdout) != "in\x00put" || string(out.Stderr) != `{"A":"instance","ARG":"5","B":"call"}` {
		t.Fatalf("%v, %+v", err, out)
	}
	if _, err := i.Call(context.Background(), jobs.CallInput{Env: map[string]string{"A=": "x"}}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("a bad variable name: %v", err)
	}
}

// A call over its timeout returns ErrTimeout and breaks the instance: the
// program may be stuck.
func TestWarmCallTimeout(t *testing.T) {
	e := newExecutor(t, Config{})
	i := warmIn(t, e, guest("warm"))
	began := time.Now()
	_, err := call(i, "sleep", "", 300*time.Millisecond)
	if took := time.Since(began); !errors.Is(err, jobs.ErrTimeout) || !errors.Is(err, jobs.ErrInstanceBroken) || took > 5*time.Second {
		t.Fatalf("after %s: %v", took, err)
	}
	_, err = call(i, "echo", "", 0)
	t.Log(err)
	if !errors.Is(err, jobs.ErrInstanceBroken) || !errors.Is(err, jobs.ErrTrap) || errors.Is(err, jobs.ErrTimeout) || !strings.Contains(err.Error(), "over its timeout of 300ms") {
		t.Fatalf("a call after the timeout: %v", err)
	}
}

// A call whose context ends returns; the instance serves on.
func TestWarmCallCancelled(t *testing.T) {
	e := newExecutor(t, Config{})
	i := warmIn(t, e, guest("warm"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := i.Call(ctx, jobs.CallInput{Env: map[string]string{"MODE": "sleep"}}); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jobs.ErrInstanceBroken) {
		t.Fatalf("err = %v", err)
	}
	if out, err := call(i, "echo", "", 0); err != nil || out.ExitCode != 0 {
		t.Fatalf("the next call: %v", err)
	}
}

// A program that exits fails the calls in flight, and every later one,
// with its exit code and stderr.
func TestWarmProgramExits(t *testing.T) {
	e := newExecutor(t, Config{})
	i := warmIn(t, e, guest("warm"))
	inFlight := make(chan error, 1)
	go func() {
		_, err := call(i, "sleep", "", time.Minute)
		inFlight <- err
	}()
	_, err := call(i, "exit", "", time.Minute)
	check := func(what string, err error) {
		t.Helper()
		msg := fmt.Sprint(err)
		if !errors.Is(err, jobs.ErrInstanceBroken) || !errors.Is(err, jobs.ErrTrap) || !strings.Contains(msg, "exited with code 3") || !strings.Contains(msg, `exiting mid-call\n`) {
			t.Errorf("%s: %v", what, err)
		}
	}
	t.Log(err)
	check("the call", err)
	check("the call in flight", <-inFlight)
	_, err = call(i, "echo", "", 0)
	check("a later call", err)
}

// A line on stdout that is not an answer breaks the instance.
func TestWarmGarbage(t *testing.T) {
	e := newExecutor(t, Config{})
	i := warmIn(t, e, guest("warm"))
	for _, what := range []string{"the call", "a later call"} {
		_, err := call(i, "garbage", "", 10*time.Second)
		t.Log(err)
		if !errors.Is(err, jobs.ErrInstanceBroken) || !errors.Is(err, jobs.ErrTrap) || !strings.Contains(err.Error(), `not an answer: "this is not JSON"`) {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// Stdout and stderr are capped at the output limit; an answer line too
// long for both breaks the instance.
func TestWarmOutputLimit(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("warm")
	in.OutputLimit = 1 << 10
	i := warmIn(t, e, in)
	out, err := call(i, "flood", "3000", 0)
	if err != nil || len(out.Stdout) != 1<<10 || len(out.Stderr) != 1<<10 || !out.StdoutTruncated || !out.StderrTruncated {
		t.Fatalf("%v; kept %d and %d bytes", err, len(out.Stdout), len(out.Stderr))
	}
	_, err = call(i, "flood", "40000", 0)
	if !errors.Is(err, jobs.ErrInstanceBroken) || !strings.Contains(err.Error(), fmt.Sprintf("an answer line over %d bytes", maxAnswerLine(in.OutputLimit))) {
		t.Fatalf("a line too long: %v", err)
	}
}

// A container killed at its memory limit fails its calls with
// ErrMemoryLimit.
func TestWarmMemoryLimit(t *testing.T) {
	e := newExecutor(t, Config{})
	in := guest("warm")
	in.Memory = 32 << 20
	i := warmIn(t, e, in)
	if out, err := call(i, "hog", "8", 0); err != nil || string(out.Stdout) != "allocated 8 MiB" {
		t.Fatalf("within the limit: %v %+v", err, out)
	}
	_, err := call(i, "hog", "200", 0)
	t.Log(err)
	if !errors.Is(err, jobs.ErrMemoryLimit) || !errors.Is(err, jobs.ErrInstanceBroken) || !strings.Contains(err.Error(), "memory limit of 32 MiB") {
		t.Fatalf("over it: %v", err)
	}
}

// The container has Run's limits and sandbox, stdin open, and DMS_WARM; no
// volumes for an output directory or stdin, which it ignores.
func TestWarmLimitsApplied(t *testing.T) {
	e := newExecutor(t, Config{})
	seen := inspected(e)
	in := guest("warm")
	in.Memory, in.CPU, in.Pids = 48<<20, 500, 64
	in.OutputDir, in.Stdin = t.TempDir(), []byte("ignored") // as the node prepares a task
	i := warmIn(t, e, in)
	if out, err := i.Call(context.Background(), jobs.CallInput{Stdin: []byte("x")}); err != nil || string(out.Stdout) != "x" {
		t.Fatalf("%v, %+v", err, out)
	}
	i.Close()
	c := seen()
	if len(c) != 1 {
		t.Fatalf("%d containers seen", len(c))
	}
	h, cfg := c[0].HostConfig, c[0].Config
	switch {
	case h.Memory != 48<<20 || h.MemorySwap != 48<<20 || h.NanoCPUs != 5e8 || h.PidsLimit == nil || *h.PidsLimit != 64:
		t.Errorf("limits: memory %d swap %d cpus %d pids %v", h.Memory, h.MemorySwap, h.NanoCPUs, h.PidsLimit)
	case string(h.NetworkMode) != "none" || !h.ReadonlyRootfs || h.LogConfig.Type != "none" || len(h.CapDrop) != 1 || h.CapDrop[0] != "ALL":
		t.Errorf("network %s, read-only %v, log %s, dropped %v", h.NetworkMode, h.ReadonlyRootfs, h.LogConfig.Type, h.CapDrop)
	case !cfg.OpenStdin || cfg.StdinOnce || cfg.Tty || cfg.Labels[labelJob] != "test" || cfg.Labels["dms.role"] != "warm":
		t.Errorf("stdin open %v, once %v, tty %v, labels %v", cfg.OpenStdin, cfg.StdinOnce, cfg.Tty, cfg.Labels)
	case !strings.Contains(strings.Join(cfg.Env, " "), EnvWarm+"=1"):
		t.Errorf("environment %q", cfg.Env)
	case len(c[0].Mounts) != 0 || len(h.VolumesFrom) != 0 || h.Tmpfs["/tmp"] == "":
		t.Errorf("mounts %+v, volumes from %v, tmpfs %v", c[0].Mounts, h.VolumesFrom, h.Tmpfs)
	}
}

// Close removes the container and fails the calls in flight; it is
// idempotent.
func TestWarmCloseRemoves(t *testing.T) {
	e := newExecutor(t, Config{})
	i := warmIn(t, e, guest("warm"))
	inFlight := make(chan error, 1)
	go func() {
		_, err := call(i, "sleep", "", time.Minute)
		inFlight <- err
	}()
	waitFor(t, func() bool { return i.(*instance).inFlight() == 1 })
	if err := i.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-inFlight; !errors.Is(err, ErrInstanceClosed) {
		t.Fatalf("the call in flight: %v", err)
	}
	if err := i.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := call(i, "echo", "", 0); !errors.Is(err, ErrInstanceClosed) {
		t.Fatalf("a call after Close: %v", err)
	}
	left, err := e.cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelJob+"=test"), filters.Arg("label", labelNode+"="+e.cfg.Node))})
	if err != nil || len(left) != 0 {
		t.Fatalf("%d containers left (%v)", len(left), err)
	}
}

// Executor.Close closes every instance.
func TestWarmExecutorClose(t *testing.T) {
	e := newExecutor(t, Config{})
	i := warmIn(t, e, guest("warm"))
	inFlight := make(chan error, 1)
	go func() {
		_, err := call(i, "sleep", "", time.Minute)
		inFlight <- err
	}()
	waitFor(t, func() bool { return i.(*instance).inFlight() == 1 })
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-inFlight; !errors.Is(err, ErrClosed) {
		t.Fatalf("the call in flight: %v", err)
	}
	if _, err := e.Warm(context.Background(), guest("warm")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Warm after Close: %v", err)
	}
}

// Warm loads an image shipped as an archive, once, as Run does.
func TestWarmFromArchive(t *testing.T) {
	e := newExecutor(t, Config{})
	ctx := context.Background()
	tag := "dms-docker-test:" + shared.run + "-warm-archive"
	if err := buildImage(ctx, e.cli, tag, "FROM "+shared.images.guest+"\nLABEL dms.test=warm-"+shared.run+"\n", nil); err != nil {
		t.Fatal(err)
	}
	rc, err := e.cli.ImageSave(ctx, []string{tag})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	img, ierr := e.cli.ImageInspect(ctx, tag)
	if err != nil || ierr != nil {
		t.Fatal(err, ierr)
	}
	removeImage(e.cli, tag)
	t.Cleanup(func() { removeImage(e.cli, img.ID) })
	in := guest("warm")
	in.Image, in.ModuleID = "", types.CIDOf(data).String()
	in.Load = func() ([]byte, error) { return data, nil }
	for range 2 {
		i := warmIn(t, e, in)
		if out, err := i.Call(ctx, jobs.CallInput{Stdin: []byte("x")}); err != nil || string(out.Stdout) != "x" {
			t.Fatalf("%v, %+v", err, out)
		}
		i.Close()
	}
	if n := e.Stats().ArchiveLoads; n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
}

// Warm refuses what it cannot serve, and an image it does not have.
func TestWarmBadInput(t *testing.T) {
	e := newExecutor(t, Config{})
	for name, in := range map[string]jobs.Input{
		"tiny":     {Image: shared.images.guest, Memory: 1 << 20},
		"nul arg":  {Image: shared.images.guest, Args: []string{"a\x00"}},
		"no image": {},
	} {
		if _, err := e.Warm(context.Background(), in); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v", name, err)
		}
	}
	in := guest("warm")
	in.Image = "dms-docker-test:missing-" + shared.run
	if _, err := e.Warm(context.Background(), in); !errors.Is(err, ErrNoImage) {
		t.Errorf("no image: %v", err)
	}
}

// waitFor waits for cond, polling, for at most 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
	}
}

// BenchmarkWarmCall measures a call of a warm example container, one at a
// time and in parallel, against a cold Run of the same program; and how
// long Warm takes to start the container (warm-ms).
func BenchmarkWarmCall(b *testing.B) {
	e := newExecutor(b, Config{})
	in := jobs.Input{Image: exampleImage(b, "docker-echo-warm"), Job: "bench"}
	c := jobs.CallInput{Env: map[string]string{"REQUEST_METHOD": "GET", "PATH_INFO": "/bench"}, Stdin: []byte("hello")}
	// warm starts an instance; report, called when the timing is done,
	// reports how long that took (ResetTimer drops metrics reported before).
	warm := func(b *testing.B) (i jobs.Instance, report func()) {
		began := time.Now()
		i, err := e.Warm(context.Background(), in)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(began)
		b.Cleanup(func() { i.Close() })
		return i, func() { b.ReportMetric(float64(took.Microseconds())/1000, "warm-ms") }
	}
	b.Run("serial", func(b *testing.B) {
		i, report := warm(b)
		for b.Loop() {
			if _, err := i.Call(context.Background(), c); err != nil {
				b.Fatal(err)
			}
		}
		report()
	})
	b.Run("parallel-16", func(b *testing.B) { // 16 calls at once per CPU, on one instance
		i, report := warm(b)
		b.SetParallelism(16)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := i.Call(context.Background(), c); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report()
	})
	b.Run("cold-run", func(b *testing.B) {
		cold := in
		cold.Env, cold.Stdin = c.Env, c.Stdin
		for b.Loop() {
			if _, err := e.Run(context.Background(), cold); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// inFlight counts the calls waiting for an answer.
func (i *instance) inFlight() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.calls)
}

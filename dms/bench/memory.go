package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
)

func init() {
	register(Scenario{
		Name: "memory",
		What: "a daemon process running its own jobs: RSS idle, and after 10,000 tiny Wasm jobs through its API",
		Run:  memory,
	})
}

const (
	daemonStart = 30 * time.Second // until the daemon writes api.json
	daemonStop  = 15 * time.Second // until it exits after SIGTERM
	settleFull  = 2 * time.Second  // for the heap to settle before RSS is read idle
	// settleAfter is how long the daemon is left idle after the jobs
	// before its RSS is read: it returns free memory to the OS at its first
	// quiet second and again 15 s later, once the finished jobs, kept 10 s,
	// have left its memory (cmd/dms/trim.go).
	settleAfter = 20 * time.Second
	memoryConc  = 16 // jobs in flight
	rateBackoff = 100 * time.Millisecond
)

// memory starts one daemon (`dms init`, `dms run`) that computes its own
// jobs, reads its resident memory idle, runs many tiny jobs through its
// API, and reads it again: what a long-running node keeps.
func memory(ctx context.Context, o Options) (_ map[string]any, err error) {
	n, settle, quiet := 10000, settleFull, settleAfter
	if o.Quick {
		n, settle, quiet = 200, 500*time.Millisecond, 500*time.Millisecond
	}
	bin, err := daemonBinary(o.Bin)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.Dir, "dms-bench-memory-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if o.Dir == "" {
		defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	}
	home := filepath.Join(dir, "daemon")
	dm, err := startDaemon(ctx, bin, home)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, dm.stop()) }()
	return measureMemory(ctx, o, dm, n, settle, quiet)
}

// measureMemory reads the daemon's RSS after settle, runs n jobs through
// it, and reads its RSS again once it was idle for quiet.
func measureMemory(ctx context.Context, o Options, dm *daemon, n int, settle, quiet time.Duration) (map[string]any, error) {
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, err
	}
	idle, err := readMem(dm.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	o.Log.Info("daemon idle", "rss_mb", idle.rss)
	module, err := dm.client.PutBlob(ctx, bytes.NewReader(tinywasm.Module(0, tinyOutput)))
	if err != nil {
		return nil, fmt.Errorf("bench: uploading the module: %w", err)
	}
	spec, err := tinySpec(module)
	if err != nil {
		return nil, err
	}
	var peak atomic.Int64 // kB
	stopSampling := sampleRSS(dm.cmd.Process.Pid, &peak)
	began := time.Now()
	runs, limited := runPool(ctx, dm.client, spec, []byte(tinyOutput), n, memoryConc)
	took := time.Since(began)
	stopSampling()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, quiet); err != nil {
		return nil, err
	}
	after, err := readMem(dm.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	res := map[string]any{
		"idle_rss_mb": idle.rss, "after_rss_mb": after.rss, "rss_ratio": round3(after.rss / idle.rss),
		"idle_anon_mb": idle.anon, "idle_file_mb": idle.file, "after_anon_mb": after.anon, "after_file_mb": after.file,
		"peak_rss_mb": round3(float64(peak.Load()) / 1024), "jobs_per_s": round3(float64(n) / took.Seconds()),
		"rate_limited": limited,
	}
	return withCounts(res, "", runs), nil
}

// runPool runs n jobs, conc at a time, paced by requesterGap. A job
// refused all the same for its requester's bid-request rate is submitted
// again after rateBackoff, and counted in limited.
func runPool(ctx context.Context, svc service, spec *jobs.Spec, want []byte, n, conc int) (runs []run, limited int64) {
	runs = make([]run, n)
	p := &pacer{gap: requesterGap}
	var next, refused atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && p.wait(ctx) == nil; i = int(next.Add(1)) - 1 {
				runs[i] = runJob(ctx, svc, spec, want)
				for rateLimited(runs[i]) && sleepCtx(ctx, rateBackoff) == nil {
					refused.Add(1)
					runs[i] = runJob(ctx, svc, spec, want)
				}
			}
		})
	}
	wg.Wait()
	return runs, refused.Load()
}

// daemonBinary is bin, else the running executable, which must be dms.
func daemonBinary(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("bench: finding the dms binary: %w", err)
	}
	if strings.HasSuffix(exe, ".test") {
		return "", fmt.Errorf("%w: %s is a test binary, not dms: set Options.Bin", ErrBadConfig, exe)
	}
	return exe, nil
}

// daemon is a `dms run` process and a client of its API.
type daemon struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait returned
	err    error         // cmd.Wait's, once exited is closed
	stderr *bytes.Buffer // its logs (warnings and errors), once exited is closed
	client *api.Client
	api    api.Endpoint // where its API listens, and its token
}

// startDaemon inits home with bin and runs the daemon in it, with args
// added to `dms run`, until its API answers.
func startDaemon(ctx context.Context, bin, home string, args ...string) (*daemon, error) {
	if err := initHome(ctx, bin, home); err != nil {
		return nil, err
	}
	return runDaemon(ctx, bin, home, args...)
}

// initHome runs `dms init` for home.
func initHome(ctx context.Context, bin, home string) error {
	if out, err := exec.CommandContext(ctx, bin, "init", "--home", home).CombinedOutput(); err != nil {
		return fmt.Errorf("bench: %s init: %w\n%s", bin, err, out)
	}
	return nil
}

// runDaemon runs the daemon of an initialised home, with args added to
// `dms run`, until its API answers.
func runDaemon(ctx context.Context, bin, home string, args ...string) (*daemon, error) {
	dm := &daemon{exited: make(chan struct{}), stderr: new(bytes.Buffer)}
	dm.cmd = exec.Command(bin, append([]string{"run", "--home", home, "--log-level", "warn"}, args...)...)
	dm.cmd.Stderr = dm.stderr // read only once the daemon exited
	if err := dm.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: %s run: %w", bin, err)
	}
	go func() {
		dm.err = dm.cmd.Wait()
		close(dm.exited)
	}()
	e, err := dm.waitEndpoint(ctx, home)
	if err != nil {
		return nil, errors.Join(err, dm.stop())
	}
	dm.client, dm.api = api.NewClient(e), e
	if _, err := dm.client.Node(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("bench: the daemon's API: %w", err), dm.stop())
	}
	return dm, nil
}

// waitEndpoint waits for the daemon to write api.json.
func (dm *daemon) waitEndpoint(ctx context.Context, home string) (api.Endpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, daemonStart)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		e, err := api.ReadEndpoint(home)
		if err == nil {
			return e, nil
		}
		select {
		case <-dm.exited:
			return api.Endpoint{}, fmt.Errorf("bench: the daemon exited (%w) before its API was up:\n%s", dm.err, dm.stderr)
		case <-ctx.Done():
			return api.Endpoint{}, fmt.Errorf("bench: no API from the daemon within %s (%w)", daemonStart, ctx.Err())
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and waits for the daemon to exit cleanly; one that
// does not within daemonStop is killed, and that is an error.
func (dm *daemon) stop() error {
	if err := dm.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("bench: stopping the daemon: %w", err)
	}
	select {
	case <-dm.exited:
		if dm.err != nil {
			return fmt.Errorf("bench: the daemon exited with %w after SIGTERM:\n%s", dm.err, dm.stderr)
		}
		return nil
	case <-time.After(daemonStop):
		_ = dm.cmd.Process.Kill()
		<-dm.exited
		return fmt.Errorf("bench: the daemon did not exit within %s of SIGTERM: killed", daemonStop)
	}
}

// memStatus is a process's resident memory, in MiB: VmRSS, and its
// anonymous (heap, stacks) and file-backed (mapped files: badger's value
// log and tables) parts.
type memStatus struct{ rss, anon, file float64 }

// readMem reads pid's memStatus from /proc (Linux only).
func readMem(pid int) (memStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, fmt.Errorf("bench: reading RSS (Linux only): %w", err)
	}
	var m memStatus
	fields := map[string]*float64{"VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if p, ok := fields[f[0]]; ok {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return memStatus{}, fmt.Errorf("bench: /proc/%d/status: %s: %w", pid, f[0], err)
			}
			*p = round3(float64(kb) / 1024)
		}
	}
	if m.rss == 0 {
		return memStatus{}, fmt.Errorf("bench: no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// sampleRSS records the largest RSS of pid in peak every 100 ms, until the
// returned function is called.
func sampleRSS(pid int, peak *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if m, err := readMem(pid); err == nil && int64(m.rss*1024) > peak.Load() {
				peak.Store(int64(m.rss * 1024))
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// sleepCtx waits for d or the end of ctx.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
)

// The end-to-end test drives the real binary: three daemons as separate
// processes, joined through a bootstrap address copied from 'node info',
// and jobs submitted through the CLI, as a person would in three terminals.

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dms")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building dms: %v\n%s", err, out)
	}
	return bin
}

// runBin runs one command of the binary to its end.
func runBin(t *testing.T, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("dms %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

func cliOK(t *testing.T, bin string, args ...string) string {
	t.Helper()
	code, out, errOut := runBin(t, bin, args...)
	if code != 0 {
		t.Fatalf("dms %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// daemon is one 'dms run' process.
type daemon struct {
	home string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func startDaemon(t *testing.T, bin, home string, args ...string) *daemon {
	t.Helper()
	return startDaemonEnv(t, nil, bin, home, args...)
}

// startDaemonEnv is startDaemon with env added to the daemon's environment.
func startDaemonEnv(t *testing.T, env []string, bin, home string, args ...string) *daemon {
	t.Helper()
	d := spawnDaemon(t, t, env, bin, home, args...)
	d.waitAPI(t)
	return d
}

// spawnDaemon starts the daemon without waiting for it. owner kills it at
// its end if it still runs, and logs its output if it failed: a subtest
// may start a daemon that outlives it, owned by its parent.
func spawnDaemon(t, owner *testing.T, env []string, bin, home string, args ...string) *daemon {
	t.Helper()
	d := &daemon{home: home, log: &bytes.Buffer{}}
	d.cmd = exec.Command(bin, append([]string{"run", "--home", home}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if env != nil {
		d.cmd.Env = append(os.Environ(), env...)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
		if owner.Failed() {
			owner.Logf("daemon %s log:\n%s", filepath.Base(home), d.log)
		}
	})
	return d
}

// waitAPI waits until the daemon has written its api.json.
func (d *daemon) waitAPI(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "the daemon "+filepath.Base(d.home)+" to write api.json", func() bool {
		_, err := os.Stat(filepath.Join(d.home, api.EndpointFile))
		return err == nil
	})
}

// stop sends SIGTERM and checks the daemon exits cleanly and removes api.json.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon %s exited with %v", d.home, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon %s did not stop within 30s of SIGTERM", d.home)
	}
	if _, err := os.Stat(filepath.Join(d.home, api.EndpointFile)); !os.IsNotExist(err) {
		t.Fatalf("api.json left behind after a clean stop: %v", err)
	}
}

// rssMiB reads a process's resident memory from /proc.
func rssMiB(pid int) (float64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err == nil
		}
	}
	return 0, false
}

func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestThreeDaemonsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three daemons; skipped with -short")
	}
	bin := buildBinary(t)
	root := t.TempDir()
	homes := []string{filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "c")}
	for _, h := range homes {
		cliOK(t, bin, "init", "--home", h)
	}
	if code, _, errOut := runBin(t, bin, "init", "--home", homes[0]); code == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("init over an existing home: exit %d, %q", code, errOut)
	}

	a := startDaemon(t, bin, homes[0])
	info := nodeInfo(t, bin, homes[0])
	if info.PeerID == "" || !strings.HasPrefix(info.DID, "did:key:") || len(info.Addrs) == 0 {
		t.Fatalf("node info: %+v", info)
	}
	// Node c submits but offers nothing, so the job must cross the network.
	b := startDaemon(t, bin, homes[1], "--bootstrap", info.Addrs[0])
	c := startDaemon(t, bin, homes[2], "--bootstrap", info.Addrs[0], "--compute=false")
	waitForPeers(t, bin, homes[2], 2)
	if rss, ok := rssMiB(a.cmd.Process.Pid); ok {
		t.Logf("idle daemon RSS: %.1f MiB", rss)
	}

	hello := filepath.Join("..", "..", "examples", "hello", "job.yaml")
	start := time.Now()
	out := cliOK(t, bin, "job", "run", hello, "--home", homes[2])
	t.Logf("dms job run (hello, 3 daemons): %s wall, CLI process included", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, "hello from dms") {
		t.Fatalf("job run printed %q", out)
	}

	var detached struct{ ID string }
	if err := json.Unmarshal([]byte(cliOK(t, bin, "job", "run", hello, "--detach", "--home", homes[2], "--output", "json")), &detached); err != nil || detached.ID == "" {
		t.Fatalf("--detach -o json: %+v, %v", detached, err)
	}
	var status api.Job
	eventually(t, 30*time.Second, "the detached job to complete", func() bool {
		out := cliOK(t, bin, "job", "status", detached.ID, "--home", homes[2], "--output", "json")
		return json.Unmarshal([]byte(out), &status) == nil && status.State == "completed"
	})
	if status.ID != detached.ID || status.Node == "" || status.Node == mustPeerID(t, bin, homes[2]) {
		t.Fatalf("status: %+v", status)
	}
	if logs := cliOK(t, bin, "job", "logs", detached.ID, "--home", homes[2]); !strings.Contains(logs, "hello from dms") {
		t.Fatalf("job logs: %q", logs)
	}
	if res := cliOK(t, bin, "job", "result", detached.ID, "--home", homes[2], "--output", "json"); !strings.Contains(res, `"exit_code": 0`) {
		t.Fatalf("job result: %s", res)
	}
	if list := cliOK(t, bin, "job", "list", "--home", homes[2]); !strings.Contains(list, detached.ID) {
		t.Fatalf("job list lacks %s:\n%s", detached.ID, list)
	}

	huge := writeHugeJob(t)
	start = time.Now()
	code, _, errOut := runBin(t, bin, "job", "run", huge, "--home", homes[2])
	if code == 0 || !strings.Contains(errOut, "memory: need 900 TiB") {
		t.Fatalf("900 TiB job: exit %d, stderr %q", code, errOut)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the unplaceable job took %s to fail; its bid window is 2s", took)
	}

	for _, d := range []*daemon{c, b, a} {
		d.stop(t)
	}
}

func mustPeerID(t *testing.T, bin, home string) string {
	t.Helper()
	return nodeInfo(t, bin, home).PeerID
}

// writeHugeJob writes a job asking for 900 TiB of memory, with the hello
// module by absolute path.
func writeHugeJob(t *testing.T) string {
	t.Helper()
	module, err := filepath.Abs(filepath.Join("..", "..", "examples", "hello", "hello.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "huge.yaml")
	spec := fmt.Sprintf("name: huge\nmodule: %s\nresources:\n  memory: 900TiB\nbid_window: 2s\n", module)
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

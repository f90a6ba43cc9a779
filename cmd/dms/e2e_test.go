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
	"github.com/opendms/dms/types"
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
	c := startDaemon(t, bin, homes[2], "--bootstrap", info.Addrs[0], "--compute=false", "--log-format", "json")
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
	// Its provider's receipt, countersigned by c, and the provider's earnings from c.
	var receipts []api.Receipt
	eventually(t, 30*time.Second, "the job's receipt countersigned", func() bool {
		out := cliOK(t, bin, "job", "receipts", detached.ID, "--home", homes[2], "--output", "json")
		return json.Unmarshal([]byte(out), &receipts) == nil && len(receipts) == 1
	})
	if r := receipts[0]; r.Provider != status.Node || r.Price != types.Credit || !r.Final {
		t.Fatalf("receipt: %+v", r)
	}
	provider := homes[0]
	if mustPeerID(t, bin, homes[1]) == status.Node {
		provider = homes[1]
	}
	var earned api.Earnings
	eventually(t, 30*time.Second, "the provider's earnings from c", func() bool {
		out := cliOK(t, bin, "earnings", "--home", provider, "--output", "json")
		return json.Unmarshal([]byte(out), &earned) == nil && len(earned.Lines) == 1 && earned.Receipts >= 1
	})
	if l := earned.Lines[0]; l.Requester != mustPeerID(t, bin, homes[2]) || l.Account != "" {
		t.Fatalf("earnings: %+v", earned)
	}

	checkTrace(t, bin, homes, detached.ID)

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
	checkJSONLog(t, c.log.String())
}

// checkTrace checks that dms job trace shows job's spans on the three
// nodes: the requester's, and both providers' bid decisions.
func checkTrace(t *testing.T, bin string, homes []string, job string) {
	t.Helper()
	var tr api.Trace
	eventually(t, 10*time.Second, "the job's whole trace", func() bool {
		out := cliOK(t, bin, "job", "trace", job, "--home", homes[2], "--output", "json")
		return json.Unmarshal([]byte(out), &tr) == nil && len(tr.Spans) > 0 && tr.Spans[0].Name == "job" && tr.Spans[0].End.After(tr.Spans[0].Start)
	})
	nodes := map[string]int{}
	for _, s := range tr.Spans {
		nodes[s.Node]++
	}
	for _, h := range homes {
		if nodes[mustPeerID(t, bin, h)] == 0 {
			t.Errorf("no span of %s in the trace: %+v", h, tr)
		}
	}
	out := cliOK(t, bin, "job", "trace", job, "--home", homes[2])
	t.Logf("dms job trace:\n%s", out)
	if !strings.Contains(out, "from 3 of 3 nodes") || !strings.Contains(out, "\n    bid ") || !strings.Contains(out, "\n      fetch ") {
		t.Errorf("dms job trace printed:\n%s", out)
	}
}

// checkJSONLog checks that a daemon run with --log-format json logged one
// JSON object a line (its output, the lines that say it runs, is text).
func checkJSONLog(t *testing.T, log string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "time=") {
			t.Fatalf("a text record in a --log-format json log: %q", l)
		}
		var rec map[string]any
		if strings.HasPrefix(l, "{") && (json.Unmarshal([]byte(l), &rec) != nil || rec["msg"] == nil || rec["level"] == nil) {
			t.Fatalf("a log line of --log-format json is %q", l)
		}
	}
	if !strings.Contains(log, `"msg":"node started"`) {
		t.Fatalf("no start record in %d lines:\n%s", len(lines), log)
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

package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/orchestrator"
)

// Fault tests run daemons as separate processes, each in a network
// namespace of its own, joined by a bridge in another namespace that the
// test creates and removes. A node is cut off by taking its bridge port
// down. They need root and iproute2, and skip with a message otherwise.

// netlab is a set of network namespaces on one bridge: host i has address
// 10.99.<lab>.<i+1>, reachable only from the lab's other hosts.
type netlab struct {
	t      *testing.T
	prefix string
	subnet int
	hosts  int
}

func newNetlab(t *testing.T, hosts int) *netlab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("fault tests need root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("fault tests need iproute2's ip command")
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	l := &netlab{t: t, prefix: "dms" + hex.EncodeToString(b[:]), subnet: 100 + int(b[0])%100, hosts: hosts}
	t.Cleanup(l.remove)
	l.ip("netns", "add", l.bridgeNS())
	l.ip("-n", l.bridgeNS(), "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.bridgeNS(), "link", "set", "br0", "up")
	for i := range hosts {
		ns, inner, outer := l.ns(i), fmt.Sprintf("%sv%d", l.prefix, i), fmt.Sprintf("%sb%d", l.prefix, i)
		l.ip("netns", "add", ns)
		l.ip("link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer, "netns", l.bridgeNS())
		l.ip("-n", l.bridgeNS(), "link", "set", outer, "master", "br0", "up")
		l.ip("-n", ns, "addr", "add", l.addr(i)+"/24", "dev", inner)
		l.ip("-n", ns, "link", "set", inner, "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	return l
}

func (l *netlab) bridgeNS() string { return l.prefix + "br" }
func (l *netlab) ns(i int) string  { return fmt.Sprintf("%sn%d", l.prefix, i) }
func (l *netlab) addr(i int) string {
	return fmt.Sprintf("10.99.%d.%d", l.subnet, i+1)
}

func (l *netlab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cut takes host i off the network; heal puts it back.
func (l *netlab) cut(i int) {
	l.ip("-n", l.bridgeNS(), "link", "set", fmt.Sprintf("%sb%d", l.prefix, i), "down")
}
func (l *netlab) heal(i int) {
	l.ip("-n", l.bridgeNS(), "link", "set", fmt.Sprintf("%sb%d", l.prefix, i), "up")
}

func (l *netlab) remove() {
	for i := range l.hosts {
		_ = exec.Command("ip", "netns", "del", l.ns(i)).Run()
	}
	_ = exec.Command("ip", "netns", "del", l.bridgeNS()).Run()
}

// binIn writes a wrapper that runs bin inside host i's namespace; the
// daemon replaces the wrapper (exec), so its PID is the wrapper's.
func (l *netlab) binIn(i int, bin string) string {
	l.t.Helper()
	path := filepath.Join(l.t.TempDir(), fmt.Sprintf("dms-%d", i))
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", l.ns(i), bin)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		l.t.Fatal(err)
	}
	return path
}

// labNode is one daemon of a fault test.
type labNode struct {
	*daemon
	bin    string
	args   []string
	env    []string // added to the daemon's environment, when it (re)starts
	peerID string
	addr   string     // its full multiaddr, /ip4/.../tcp/4001/p2p/ID
	owner  *testing.T // the test that owns its process, also after a restart in a subtest
}

// kill9 kills the daemon with SIGKILL and reaps it.
func (n *labNode) kill9(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = n.cmd.Wait()
}

// restart starts the daemon again from its home, as its operator would
// after a crash.
func (n *labNode) restart(t *testing.T) {
	t.Helper()
	// A killed daemon leaves its api.json behind; wait for the new one.
	if err := os.Remove(filepath.Join(n.home, api.EndpointFile)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n.daemon = spawnDaemon(t, n.owner, n.env, n.bin, n.home, n.args...)
	n.waitAPI(t)
}

// startLab starts one daemon per host: host 0 is the bootstrap node, hosts
// in submitters offer no compute, and env[i] is added to host i's
// environment.
func startLab(t *testing.T, lab *netlab, bin string, submitters map[int]bool, env map[int][]string) []*labNode {
	t.Helper()
	return startLabWith(t, lab, bin, []int{0}, func(i int, _ []string) labHost {
		h := labHost{env: env[i]}
		if submitters[i] {
			h.args = []string{"--compute=false"}
		}
		return h
	})
}

// labHost is how one host's daemon runs: arguments added to `dms run`
// (after --listen and --bootstrap) and to its environment.
type labHost struct {
	args []string
	env  []string
}

// startLabWith makes a home per host, then starts every host's daemon as
// host(i, addrs) says, addrs being every host's full multiaddr, and waits
// until each sees all the others. Every host bootstraps through the hosts
// in boot but itself; a node that finds itself alone dials them again, so
// the daemons start all at once, and one restarted finds the network.
func startLabWith(t *testing.T, lab *netlab, bin string, boot []int, host func(i int, addrs []string) labHost) []*labNode {
	t.Helper()
	nodes := make([]*labNode, lab.hosts)
	addrs := make([]string, lab.hosts)
	for i := range lab.hosts {
		wrapped := lab.binIn(i, bin)
		home := filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i))
		var id api.NodeInfo
		if out := cliOK(t, wrapped, "init", "--home", home, "--output", "json"); json.Unmarshal([]byte(out), &id) != nil || id.PeerID == "" {
			t.Fatalf("init --output json printed no peer ID:\n%s", out)
		}
		addrs[i] = "/ip4/" + lab.addr(i) + "/tcp/4001/p2p/" + id.PeerID
		nodes[i] = &labNode{bin: wrapped, peerID: id.PeerID, addr: addrs[i], owner: t, daemon: &daemon{home: home}}
	}
	for i, n := range nodes {
		h := host(i, addrs)
		n.args, n.env = []string{"--listen", "/ip4/" + lab.addr(i) + "/tcp/4001"}, h.env
		for _, b := range boot {
			if b != i {
				n.args = append(n.args, "--bootstrap", addrs[b])
			}
		}
		n.args = append(n.args, h.args...)
		n.daemon = spawnDaemon(t, t, n.env, n.bin, n.home, n.args...)
	}
	for _, n := range nodes {
		n.waitAPI(t)
	}
	for _, n := range nodes {
		eventually(t, 30*time.Second, "every daemon to see the others", func() bool {
			var peers []api.Peer
			out := cliOK(t, n.bin, "peers", "--home", n.home, "--output", "json")
			return json.Unmarshal([]byte(out), &peers) == nil && len(peers) >= lab.hosts-1
		})
	}
	return nodes
}

func (n *labNode) status(t *testing.T, id string) api.Job {
	t.Helper()
	var j api.Job
	out := cliOK(t, n.bin, "job", "status", id, "--home", n.home, "--output", "json")
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("job status: %v\n%s", err, out)
	}
	return j
}

// submitSleep submits a job sleeping secs seconds, with retries, detached.
func (n *labNode) submitSleep(t *testing.T, secs, retries int) string {
	t.Helper()
	module, err := filepath.Abs(filepath.Join("..", "..", "examples", "sleep", "sleep.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("name: sleep\nmodule: %s\nargs: [\"%d\"]\nresources: {cpu: 0.1, memory: 64MiB}\ntimeout: 60s\nretries: %d\n", module, secs, retries)
	path := filepath.Join(t.TempDir(), "sleep.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	var out struct{ ID string }
	if err := json.Unmarshal([]byte(cliOK(t, n.bin, "job", "run", path, "--detach", "--home", n.home, "--output", "json")), &out); err != nil {
		t.Fatal(err)
	}
	return out.ID
}

func nodeByPeer(t *testing.T, nodes []*labNode, peer string) int {
	t.Helper()
	for i, n := range nodes {
		if n.peerID == peer {
			return i
		}
	}
	t.Fatalf("no node is %s", peer)
	return -1
}

// runningSleepJob starts a lab of four hosts whose node 0 only submits,
// submits a 4s sleep job with retries from it, and waits until the job
// runs: it returns the lab, the nodes, the job, its first running state and
// the index of its node. It skips with -short.
func runningSleepJob(t *testing.T) (lab *netlab, nodes []*labNode, id string, first api.Job, victim int) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs four daemons in network namespaces; skipped with -short")
	}
	lab = newNetlab(t, 4)
	nodes = startLab(t, lab, buildBinary(t), map[int]bool{0: true}, nil)
	id = nodes[0].submitSleep(t, 4, 2)
	eventually(t, 30*time.Second, "the job to run", func() bool {
		first = nodes[0].status(t, id)
		return first.State == "running"
	})
	return lab, nodes, id, first, nodeByPeer(t, nodes, first.Node)
}

// waitEnd waits until job id is terminal on node n and returns it.
func (n *labNode) waitEnd(t *testing.T, id string) api.Job {
	t.Helper()
	var done api.Job
	eventually(t, 30*time.Second, "the job to end", func() bool {
		done = n.status(t, id)
		return done.State.Terminal()
	})
	return done
}

// expectSlept checks the logs of the sleep job id, through node n.
func (n *labNode) expectSlept(t *testing.T, id string, secs int) {
	t.Helper()
	if logs := cliOK(t, n.bin, "job", "logs", id, "--home", n.home); !strings.Contains(logs, fmt.Sprintf("slept %d seconds", secs)) {
		t.Fatalf("logs: %q", logs)
	}
}

// info returns the node's `dms node info`.
func (n *labNode) info(t *testing.T) api.NodeInfo {
	t.Helper()
	var info api.NodeInfo
	out := cliOK(t, n.bin, "node", "info", "--home", n.home, "--output", "json")
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("node info: %v\n%s", err, out)
	}
	return info
}

// waitKilled waits until the daemon dies of SIGKILL on its own, as a
// failpoint kills it.
func (n *labNode) waitKilled(t *testing.T, limit time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("daemon %s still running %s later", filepath.Base(n.home), limit)
	}
	if ws, ok := n.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("daemon %s ended with %s, not SIGKILL:\n%s", filepath.Base(n.home), n.cmd.ProcessState, n.log)
	}
}

// exampleSleep is the path of examples/sleep/job.yaml, the job users run
// as it is: it sleeps 5 seconds, with the spec's defaults for everything
// else (no retries).
func exampleSleep(t *testing.T) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", "examples", "sleep", "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// progress is one line `dms job run` printed on stderr, and when it came.
type progress struct {
	line string
	at   time.Time
}

// jobRun is `dms job run FILE` on a lab node, followed line by line.
type jobRun struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	lines  chan progress // closed when its stderr ends
}

// runJob starts `dms job run file` on node n, as a user would to follow a
// job; it is killed at the end of the test if still running.
func (n *labNode) runJob(t *testing.T, file string) *jobRun {
	t.Helper()
	r := &jobRun{lines: make(chan progress, 1024)} // far more than a job prints: the reader never blocks
	r.cmd = exec.Command(n.bin, "job", "run", file, "--home", n.home)
	r.cmd.Stdout = &r.stdout
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.lines <- progress{line: sc.Text(), at: time.Now()}
		}
	}()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
		}
	})
	return r
}

// next waits for the next line that starts with prefix, and returns it
// without the prefix, with when it came.
func (r *jobRun) next(t *testing.T, limit time.Duration, prefix string) (string, time.Time) {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case p, ok := <-r.lines:
			if !ok {
				t.Fatalf("dms job run ended before a line %q", prefix)
			}
			t.Logf("dms job run: %s", p.line)
			if rest, found := strings.CutPrefix(p.line, prefix); found {
				return rest, p.at
			}
		case <-deadline:
			t.Fatalf("no line %q from dms job run within %s", prefix, limit)
		}
	}
}

// wait reads the rest of the progress until `dms job run` ends, and returns
// its exit status.
func (r *jobRun) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	deadline := time.After(limit)
	for open := true; open; {
		select {
		case p, ok := <-r.lines:
			if open = ok; ok {
				t.Logf("dms job run: %s", p.line)
			}
		case <-deadline:
			t.Fatalf("dms job run still running after %s", limit)
		}
	}
	err := r.cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return r.cmd.ProcessState.ExitCode()
}

// The acceptance test of rescheduling: the example sleep job as it is
// (no retries, the default reschedule), run and followed with `dms job
// run` on a requester with two providers. Its provider is killed with
// kill -9 while it runs: the job runs on the other one and completes, and
// the lost node is charged to reschedule.
func TestFaultKillProviderMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons in network namespaces; skipped with -short")
	}
	lab := newNetlab(t, 3)
	nodes := startLab(t, lab, buildBinary(t), map[int]bool{0: true}, nil)
	req := nodes[0]
	run := req.runJob(t, exampleSleep(t))
	id, _ := run.next(t, 30*time.Second, "submitted job ")
	first, _ := run.next(t, 30*time.Second, "running on ")
	killed := time.Now()
	nodes[nodeByPeer(t, nodes, first)].kill9(t)
	again, at := run.next(t, 30*time.Second, "running on ")
	t.Logf("kill -9 of the provider -> running on another node: %s", at.Sub(killed).Round(time.Millisecond))
	if code := run.wait(t, 30*time.Second); code != 0 || again == first || !strings.Contains(run.stdout.String(), "slept 5 seconds") {
		t.Fatalf("dms job run exited %d, running again on %s (first on %s), stdout %q", code, again, first, run.stdout.String())
	}
	done := req.status(t, id)
	if done.State != "completed" || done.Node != again || len(done.Attempts) != 2 ||
		done.Attempts[0].State != "failed" || done.Attempts[0].Charge != "reschedule" || done.Attempts[0].Node != first ||
		done.Attempts[1].State != "completed" || done.Attempts[1].Charge != "" {
		t.Fatalf("after the kill: %+v", done)
	}
}

// A requester killed after it saved the placement of its job and before it
// sent the invocation (DMS_FAILPOINT=invoke), then restarted, invokes the
// placement it saved: the job runs once, on the node that locked it, in one
// attempt; it is not auctioned again.
func TestFaultKillRequesterBetweenPlacementAndInvocation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons in network namespaces; skipped with -short")
	}
	lab := newNetlab(t, 3)
	nodes := startLab(t, lab, buildBinary(t), map[int]bool{0: true}, map[int][]string{0: {"DMS_FAILPOINT=" + orchestrator.FailpointInvoke}})
	req, providers := nodes[0], nodes[1:]
	// The requester may be killed before it answers: the job is read back
	// from it after its restart.
	runBin(t, req.bin, "job", "run", exampleSleep(t), "--detach", "--home", req.home)
	req.waitKilled(t, 30*time.Second)
	if !strings.Contains(req.log.String(), "failpoint reached") {
		t.Fatalf("the requester died, not at its failpoint:\n%s", req.log)
	}
	locked := 0
	for _, p := range providers {
		info := p.info(t)
		if info.Running != 0 {
			t.Fatalf("provider %s runs %d allocations: the invocation was sent", p.peerID, info.Running)
		}
		if info.Available != info.Registered {
			locked++
		}
	}
	if locked == 0 { // the loser may still hold capability behind its bid: its release died with the requester
		t.Fatal("no provider holds the lock of the placement")
	}

	req.env = nil
	req.restart(t)
	var list []api.Job
	if err := json.Unmarshal([]byte(cliOK(t, req.bin, "job", "list", "--home", req.home, "--output", "json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("jobs after the restart: %+v, %v", list, err)
	}
	id := list[0].ID
	// Count the runs each provider starts: a node runs the 5 s job for 5 s,
	// far longer than a round of polls.
	runs, running := map[string]int{}, map[string]bool{}
	var done api.Job
	eventually(t, 60*time.Second, "the job to end", func() bool {
		for _, p := range providers {
			n := p.info(t).Running
			if n > 1 {
				t.Fatalf("provider %s runs %d allocations at once", p.peerID, n)
			}
			if n == 1 && !running[p.peerID] {
				runs[p.peerID]++
			}
			running[p.peerID] = n == 1
		}
		done = req.status(t, id)
		return done.State.Terminal()
	})
	// One attempt: the allocation placed before the kill is the one that ran.
	if done.State != "completed" || len(done.Attempts) != 1 || done.Attempts[0].AllocationID == "" ||
		done.Attempts[0].State != "completed" || len(runs) != 1 || runs[done.Node] != 1 {
		t.Fatalf("after the restart: %+v; runs seen %v", done, runs)
	}
	req.expectSlept(t, id, 5)
}

func TestFaultPartitionedProviderIsReplaced(t *testing.T) {
	lab, nodes, id, first, victim := runningSleepJob(t)
	req := nodes[0]
	if victim == 0 {
		t.Fatal("the bootstrap node offers no compute; it cannot run the job")
	}
	cut := time.Now()
	lab.cut(victim)
	eventually(t, 30*time.Second, "the job to run on another node", func() bool {
		j := req.status(t, id)
		return j.State == "running" && j.Node != first.Node
	})
	t.Logf("provider cut off -> job running on another node: %s", time.Since(cut).Round(time.Millisecond))

	done := req.waitEnd(t, id)
	// Heal: the cut-off node finished its copy meanwhile; it must not become
	// a second result.
	lab.heal(victim)
	time.Sleep(3 * time.Second) // let the healed node reconnect and say what it has to say
	after := req.status(t, id)
	if done.State != "completed" || after.State != "completed" || after.Node == first.Node ||
		after.Result == nil || done.Result == nil || after.Result.Stdout != done.Result.Stdout {
		t.Fatalf("before heal %+v\nafter heal %+v", done, after)
	}
	completed := 0
	for _, a := range after.Attempts {
		if a.State == "completed" {
			completed++
		}
	}
	if completed != 1 {
		t.Fatalf("%d attempts completed, want exactly 1: %+v", completed, after.Attempts)
	}
}

// A requester killed while its job runs, and restarted, takes the job back:
// it invokes the allocation again, which the provider ran on meanwhile, and
// the job completes there, once.
func TestFaultKillRequesterMidJob(t *testing.T) {
	_, nodes, id, first, _ := runningSleepJob(t)
	req := nodes[0]
	req.kill9(t)
	killed := time.Now()
	req.restart(t)
	t.Logf("requester kill -9 -> restarted and serving its API: %s", time.Since(killed).Round(time.Millisecond))
	done := req.waitEnd(t, id)
	if done.State != "completed" || done.Node != first.Node || len(done.Attempts) != 1 {
		t.Fatalf("after the requester's restart: %+v", done)
	}
	req.expectSlept(t, id, 4)
}

// A provider killed while running a job, and restarted, knows the
// allocation died with it (recorded failed, no capability held); its
// requester, which saw the stream break, places the job again and it
// completes exactly once.
func TestFaultRestartProviderMidJob(t *testing.T) {
	_, nodes, id, first, victim := runningSleepJob(t)
	prov := nodes[victim]
	prov.kill9(t)
	prov.restart(t)
	done := nodes[0].waitEnd(t, id)
	if done.State != "completed" || len(done.Attempts) != 2 || done.Attempts[0].State != "failed" ||
		done.Attempts[0].AllocationID != first.Attempts[0].AllocationID {
		t.Fatalf("after the provider's restart: %+v", done)
	}
	eventually(t, 10*time.Second, "the restarted provider to hold nothing", func() bool {
		var info api.NodeInfo
		out := cliOK(t, prov.bin, "node", "info", "--home", prov.home, "--output", "json")
		return json.Unmarshal([]byte(out), &info) == nil && info.Running == 0 && info.Available == info.Registered
	})
}

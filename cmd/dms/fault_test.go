package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
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
	peerID string
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
	n.daemon = startDaemon(t, n.bin, n.home, n.args...)
}

// startLab starts one daemon per host: host 0 is the bootstrap node, and
// hosts in submitters offer no compute.
func startLab(t *testing.T, lab *netlab, bin string, submitters map[int]bool) []*labNode {
	t.Helper()
	nodes := make([]*labNode, lab.hosts)
	var boot string
	for i := range lab.hosts {
		wrapped := lab.binIn(i, bin)
		home := filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i))
		cliOK(t, wrapped, "init", "--home", home)
		args := []string{"--listen", "/ip4/" + lab.addr(i) + "/tcp/4001"}
		if i > 0 {
			args = append(args, "--bootstrap", boot)
		}
		if submitters[i] {
			args = append(args, "--compute=false")
		}
		n := &labNode{daemon: startDaemon(t, wrapped, home, args...), bin: wrapped, args: args}
		n.peerID = mustPeerID(t, wrapped, home)
		if i == 0 {
			boot = "/ip4/" + lab.addr(0) + "/tcp/4001/p2p/" + n.peerID
		}
		nodes[i] = n
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
	nodes = startLab(t, lab, buildBinary(t), map[int]bool{0: true})
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
func (n *labNode) expectSlept(t *testing.T, id string) {
	t.Helper()
	if logs := cliOK(t, n.bin, "job", "logs", id, "--home", n.home); !strings.Contains(logs, "slept 4 seconds") {
		t.Fatalf("logs: %q", logs)
	}
}

func TestFaultKillProviderMidJob(t *testing.T) {
	_, nodes, id, first, victim := runningSleepJob(t)
	req := nodes[0]
	killed := time.Now()
	nodes[victim].kill9(t)

	eventually(t, 30*time.Second, "the job to run on another node", func() bool {
		j := req.status(t, id)
		return j.State == "running" && j.Node != first.Node
	})
	t.Logf("kill -9 of the provider -> job running on another node: %s", time.Since(killed).Round(time.Millisecond))
	done := req.waitEnd(t, id)
	if done.State != "completed" || done.Node == first.Node || len(done.Attempts) < 2 {
		t.Fatalf("after the kill: %+v", done)
	}
	req.expectSlept(t, id)
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
	req.expectSlept(t, id)
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

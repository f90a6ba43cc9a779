package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// The compose cluster test runs the committed deploy/docker-compose.yml
// through deploy/up.sh: five dms containers on a private Docker network,
// node0 a requester whose API is published on the host's loopback. From the
// host it submits jobs through that API, stops one provider's container and
// disconnects another's from the network while both run jobs, and checks
// that every job completes exactly once, also after the disconnected node
// is back. It needs a Docker engine and docker-compose (v1); it builds its
// image under a tag of its own and removes it, with the containers, the
// network and the homes, however it ends.

const (
	clusterJobs  = 8
	clusterSleep = 4 // seconds each job sleeps
)

// composeFile is one of deploy/'s networks.
type composeFile struct {
	file     string   // under deploy/
	flag     string   // up.sh's for it ("" for docker-compose.yml)
	services []string // the first one's API is published
}

var (
	nodesCompose    = composeFile{"docker-compose.yml", "", []string{"node0", "node1", "node2", "node3", "node4"}}
	gatewaysCompose = composeFile{"docker-compose.gateways.yml", "--gateways", []string{"gw0", "gw1", "gw2", "p1", "p2"}}
)

// composeCluster is one run of a compose file of deploy/.
type composeCluster struct {
	t       *testing.T
	file    composeFile
	dir     string // deploy/, absolute
	homes   string // each service's home and the client home, under t.TempDir()
	project string
	env     []string          // for up.sh and docker-compose
	service map[string]string // PeerID -> service
	id      map[string]string // service -> container ID
}

// fault is what happened to one node, and how long its jobs took to be
// declared lost and to run on another node.
type fault struct {
	what        string
	at          time.Time
	lost, moved []time.Duration
}

func TestComposeClusterRunsJobsExactlyOnce(t *testing.T) {
	requireCompose(t)
	begin := time.Now()
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := c.client()
	eventually(t, 60*time.Second, "node0 to see the four other nodes", func() bool {
		peers, err := cl.Peers(ctx)
		return err == nil && len(peers) >= 4
	})
	t.Logf("cluster up, node0 sees 4 peers: %s after the start", time.Since(begin).Round(time.Millisecond))

	placed := runningSleepJobs(t, ctx, cl, clusterJobs)
	stopped, cut := pickVictims(t, placed)
	faults := map[string]*fault{cut: c.disconnect(cut)}
	stopping := c.stop(stopped)
	faults[stopped] = stopping.fault
	done := waitRecovered(t, ctx, cl, placed, faults)
	r := <-stopping.done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("docker stop of %s returned after %s", c.service[stopped], r.took.Round(time.Millisecond))
	for peer, f := range faults {
		t.Logf("%s of %s: its %d jobs declared lost after %s, running on another node after %s",
			f.what, c.service[peer], len(f.lost), spread(f.lost), spread(f.moved))
	}
	checkExactlyOnce(t, ctx, cl, placed, done, faults)

	c.reconnect(ctx, cl, cut)
	for i, j := range getJobs(t, ctx, cl, jobIDs(done)) {
		if d := diffOutcome(done[i], j); d != "" {
			t.Errorf("job %s changed after %s came back: %s", j.ID, c.service[cut], d)
		}
	}
	t.Logf("test body: %s", time.Since(begin).Round(time.Millisecond))
}

// requireCompose skips the test where it cannot run.
func requireCompose(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds an image and runs a 5-container cluster; skipped with -short")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the compose cluster test needs Docker: no docker command")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("the compose cluster test needs a Docker engine: docker info: %v: %s", err, bytes.TrimSpace(out))
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("the compose cluster test needs docker-compose (v1): no docker-compose command")
	}
}

// buildImage builds a static dms and the image of deploy/Dockerfile around
// it, under a tag of its own that is removed at the end.
func buildImage(t *testing.T, deploy string) string {
	t.Helper()
	dir := t.TempDir() // the build context: the binary alone
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", filepath.Join(dir, "dms"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static dms: %v\n%s", err, out)
	}
	tag := "dms:test-" + randomHex(t, 4)
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "rmi", "--force", tag).CombinedOutput(); err != nil {
			t.Errorf("removing the image %s: %v\n%s", tag, err, out)
		}
	})
	runOK(t, exec.Command("docker", "build", "--quiet", "--file", filepath.Join(deploy, "Dockerfile"), "--tag", tag, dir))
	return tag
}

// startCluster builds the image, runs deploy/up.sh under a project name of
// its own, with the homes in a temporary directory and node0's API on a
// free loopback port, and takes the whole project down at the end.
func startCluster(t *testing.T) *composeCluster {
	t.Helper()
	return startCompose(t, nodesCompose)
}

// startCompose is startCluster for any compose file of deploy/; env is
// added to up.sh's environment.
func startCompose(t *testing.T, f composeFile, env ...string) *composeCluster {
	t.Helper()
	deploy, err := filepath.Abs(filepath.Join("..", "..", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	image := buildImage(t, deploy)
	t.Logf("built dms and the image %s: %s", image, time.Since(start).Round(time.Millisecond))
	c := &composeCluster{t: t, file: f, dir: deploy, homes: t.TempDir(), project: "dmstest" + randomHex(t, 4)}
	c.env = append(os.Environ(),
		"COMPOSE_PROJECT_NAME="+c.project, "COMPOSE_INTERACTIVE_NO_CLI=1",
		"DMS_IMAGE="+image, "DMS_HOMES="+c.homes, "DMS_API_PORT="+strconv.Itoa(freeLoopbackPort(t)))
	c.env = append(c.env, env...)
	t.Cleanup(c.down)
	start = time.Now()
	up := exec.Command("sh", filepath.Join(deploy, "up.sh"))
	if f.flag != "" {
		up.Args = append(up.Args, f.flag)
	}
	up.Env = c.env
	runOK(t, up)
	t.Logf("%s (5 homes, docker-compose up, %s's API): %s", strings.TrimSpace("up.sh "+f.flag), f.services[0], time.Since(start).Round(time.Millisecond))
	c.service = make(map[string]string)
	for _, name := range f.services {
		var info api.NodeInfo
		data, err := os.ReadFile(filepath.Join(c.homes, name+".json"))
		if err == nil {
			err = json.Unmarshal(data, &info)
		}
		if err != nil || info.PeerID == "" {
			t.Fatalf("up.sh left no identity for %s: %v", name, err)
		}
		c.service[info.PeerID] = name
	}
	c.id = c.containers()
	return c
}

// containers maps the project's services to their containers' IDs.
func (c *composeCluster) containers() map[string]string {
	c.t.Helper()
	out := c.docker("ps", "--filter", "label=com.docker.compose.project="+c.project,
		"--format", `{{.Label "com.docker.compose.service"}} {{.ID}}`)
	ids := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if service, id, ok := strings.Cut(line, " "); ok {
			ids[service] = id
		}
	}
	if len(ids) != len(c.service) {
		c.t.Fatalf("want %d running containers, got %v", len(c.service), ids)
	}
	return ids
}

// down prints the containers' logs if the test failed, then removes the
// project's containers, network and anonymous volumes.
func (c *composeCluster) down() {
	if c.t.Failed() {
		out, _ := c.compose("logs", "--no-color", "--timestamps").CombinedOutput()
		c.t.Logf("container logs:\n%s", out)
	}
	if out, err := c.compose("down", "--volumes", "--remove-orphans", "--timeout", "5").CombinedOutput(); err != nil {
		c.t.Errorf("docker-compose down: %v\n%s", err, out)
	}
}

func (c *composeCluster) compose(args ...string) *exec.Cmd {
	args = append([]string{"--file", filepath.Join(c.dir, c.file.file), "--project-name", c.project}, args...)
	cmd := exec.Command("docker-compose", args...)
	cmd.Dir = c.dir
	// The files need PeerIDs even to be taken down; up.sh exports the real ones.
	cmd.Env = append(slices.Clip(c.env), "DMS_BOOTSTRAP_ID=unused", "DMS_GW0_ID=unused", "DMS_GW1_ID=unused", "DMS_GW2_ID=unused")
	return cmd
}

// disconnect takes the node's container off the project's network.
func (c *composeCluster) disconnect(peer string) *fault {
	c.t.Helper()
	f := &fault{what: "network disconnect", at: time.Now()}
	c.docker("network", "disconnect", c.network(), c.id[c.service[peer]])
	return f
}

// stopping is a `docker stop` under way.
type stopping struct {
	fault *fault
	done  <-chan stopped // one value, when docker stop returns
}

type stopped struct {
	took time.Duration
	err  error
}

// stop runs `docker stop` on the node's container in the background, so
// that the jobs are watched meanwhile: the node's process may take seconds
// to exit.
func (c *composeCluster) stop(peer string) stopping {
	f := &fault{what: "docker stop", at: time.Now()}
	done := make(chan stopped, 1)
	cmd := exec.Command("docker", "stop", "--time", "10", c.id[c.service[peer]])
	go func() {
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("docker stop %s: %w: %s", c.service[peer], err, out)
		}
		done <- stopped{took: time.Since(f.at), err: err}
	}()
	return stopping{fault: f, done: done}
}

// network is the project's Docker network, "dms" in the compose file.
func (c *composeCluster) network() string { return c.project + "_dms" }

func (c *composeCluster) docker(args ...string) string {
	c.t.Helper()
	return runOK(c.t, exec.Command("docker", args...))
}

// client talks to the first service (node0, gw0) through its published
// port, as up.sh's client home says.
func (c *composeCluster) client() *api.Client {
	c.t.Helper()
	e, err := api.ReadEndpoint(filepath.Join(c.homes, "client"))
	if err != nil {
		c.t.Fatal(err)
	}
	return api.NewClient(e)
}

// waitRecovered polls the jobs until every one has ended, timing, for the
// jobs that ran on a faulty node, when its attempt there ended (the
// requester declared the node lost) and when the job ran on another node.
// It returns the jobs as they ended.
func waitRecovered(t *testing.T, ctx context.Context, cl *api.Client, placed []api.Job, faults map[string]*fault) []api.Job {
	t.Helper()
	lost, moved := make(map[string]bool), make(map[string]bool)
	deadline := time.Now().Add(60 * time.Second)
	for {
		now := getJobs(t, ctx, cl, jobIDs(placed))
		for i, j := range now {
			from := placed[i].Node
			f, faulty := faults[from]
			if !faulty {
				continue
			}
			if !lost[j.ID] && attemptState(j, lastAttempt(placed[i])) != lastAttempt(placed[i]).State {
				lost[j.ID] = true
				f.lost = append(f.lost, time.Since(f.at))
			}
			if !moved[j.ID] && j.State == types.JobRunning && j.Node != from {
				moved[j.ID] = true
				f.moved = append(f.moved, time.Since(f.at))
			}
		}
		if countTerminal(now) == len(now) {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not ended 60s after the faults: %s", summarize(now))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reconnect puts the node back on the network and waits until node0 sees
// it again, then a little more for what it has to say about the jobs it
// ran while cut off.
func (c *composeCluster) reconnect(ctx context.Context, cl *api.Client, peer string) {
	c.t.Helper()
	service := c.service[peer]
	at := time.Now()
	c.docker("network", "connect", "--alias", service, c.network(), c.id[service])
	eventually(c.t, 90*time.Second, service+" to be node0's peer again", func() bool {
		peers, err := cl.Peers(ctx)
		return err == nil && slices.ContainsFunc(peers, func(p api.Peer) bool { return p.ID == peer })
	})
	c.t.Logf("%s reconnected: node0's peer again after %s", service, time.Since(at).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // a late result would arrive now; nothing must change
}

// runningSleepJobs uploads the sleep module through the API once, submits n
// jobs running it, each with retries, and waits until they all run.
func runningSleepJobs(t *testing.T, ctx context.Context, cl *api.Client, n int) []api.Job {
	t.Helper()
	module, err := filepath.Abs(filepath.Join("..", "..", "examples", "sleep", "sleep.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	// Half a core each: a node offering two cores takes at most four, so
	// the jobs spread over two nodes or more, and the two nodes left after
	// the faults have room for all of them at once.
	path := filepath.Join(t.TempDir(), "sleep.yaml")
	yaml := fmt.Sprintf("name: cluster-sleep\nmodule: %s\nargs: [\"%d\"]\nresources: {cpu: 0.5, memory: 64MiB}\ntimeout: 60s\nretries: 3\n", module, clusterSleep)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := jobs.ParseFile(path)
	if err == nil {
		err = api.Upload(ctx, cl, spec)
	}
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		j, err := cl.SubmitJob(ctx, spec)
		if err != nil {
			t.Fatalf("submitting job %d: %v", i, err)
		}
		ids[i] = j.ID
	}
	var running []api.Job
	eventually(t, 30*time.Second, "every job to run", func() bool {
		running = getJobs(t, ctx, cl, ids)
		return countState(running, types.JobRunning) == n
	})
	return running
}

// pickVictims returns the node of the first job, to stop, and the node of
// the first job running elsewhere, to cut off.
func pickVictims(t *testing.T, running []api.Job) (stopped, cut string) {
	t.Helper()
	stopped = running[0].Node
	for _, j := range running {
		if j.Node != stopped {
			return stopped, j.Node
		}
	}
	t.Fatalf("every job runs on one node, %s; want two nodes or more: %s", stopped, summarize(running))
	return "", ""
}

// checkExactlyOnce checks that every job completed, exactly one of its
// attempts completed, and its stdout is the sleep's; and that a job running
// on a faulty node completed on another.
func checkExactlyOnce(t *testing.T, ctx context.Context, cl *api.Client, placed, done []api.Job, faults map[string]*fault) {
	t.Helper()
	for i, j := range done {
		if j.State != types.JobCompleted || j.Result == nil || completedAttempts(j) != 1 {
			t.Errorf("job %s: %s (%s), %d completed attempts: %+v", j.ID, j.State, j.Reason, completedAttempts(j), j.Attempts)
			continue
		}
		if _, faulty := faults[placed[i].Node]; faulty && (j.Node == placed[i].Node || len(j.Attempts) < 2) {
			t.Errorf("job %s ran on a faulty node and completed there: %+v", j.ID, j.Attempts)
		}
		fetch := time.Now()
		out, err := cl.GetBlob(ctx, j.Result.Stdout)
		if i == 0 {
			t.Logf("first stdout fetched through node0 in %s", time.Since(fetch).Round(time.Millisecond))
		}
		if want := fmt.Sprintf("slept %d seconds", clusterSleep); err != nil || !strings.Contains(string(out), want) {
			t.Errorf("job %s stdout %q (%v), want %q", j.ID, out, err, want)
		}
	}
}

// diffOutcome says how a job's outcome differs between two reads; a note
// added to an old attempt (a late result recorded, not counted) is not a
// difference.
func diffOutcome(before, after api.Job) string {
	switch {
	case before.State != after.State || before.Node != after.Node:
		return fmt.Sprintf("%s on %s became %s on %s", before.State, before.Node, after.State, after.Node)
	case before.Result == nil || after.Result == nil || before.Result.Stdout != after.Result.Stdout ||
		before.Result.ExitCode != after.Result.ExitCode:
		return fmt.Sprintf("result %+v became %+v", before.Result, after.Result)
	case len(before.Attempts) != len(after.Attempts) || completedAttempts(after) != 1:
		return fmt.Sprintf("attempts %+v became %+v", before.Attempts, after.Attempts)
	}
	return ""
}

func getJobs(t *testing.T, ctx context.Context, cl *api.Client, ids []string) []api.Job {
	t.Helper()
	out := make([]api.Job, len(ids))
	for i, id := range ids {
		j, err := cl.GetJob(ctx, id)
		if err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		out[i] = j
	}
	return out
}

func jobIDs(js []api.Job) []string {
	ids := make([]string, len(js))
	for i, j := range js {
		ids[i] = j.ID
	}
	return ids
}

func countState(js []api.Job, s types.JobState) (n int) {
	for _, j := range js {
		if j.State == s {
			n++
		}
	}
	return n
}

func countTerminal(js []api.Job) (n int) {
	for _, j := range js {
		if j.State.Terminal() {
			n++
		}
	}
	return n
}

func lastAttempt(j api.Job) api.Attempt {
	if len(j.Attempts) == 0 {
		return api.Attempt{}
	}
	return j.Attempts[len(j.Attempts)-1]
}

// attemptState is the state of the job's attempt with a's allocation.
func attemptState(j api.Job, a api.Attempt) string {
	for _, b := range j.Attempts {
		if b.AllocationID == a.AllocationID {
			return b.State
		}
	}
	return ""
}

// spread prints durations as their range.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "(none seen)"
	}
	lo, hi := slices.Min(ds), slices.Max(ds)
	if lo.Round(time.Millisecond) == hi.Round(time.Millisecond) {
		return lo.Round(time.Millisecond).String()
	}
	return lo.Round(time.Millisecond).String() + " to " + hi.Round(time.Millisecond).String()
}

func completedAttempts(j api.Job) (n int) {
	for _, a := range j.Attempts {
		if a.State == string(types.AllocCompleted) {
			n++
		}
	}
	return n
}

func summarize(js []api.Job) string {
	var b strings.Builder
	for _, j := range js {
		fmt.Fprintf(&b, "\n  %s %s on %s: %s", j.ID, j.State, j.Node, j.Reason)
	}
	return b.String()
}

// runOK runs cmd and returns its stdout; it fails the test with the
// command's output if it fails.
func runOK(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", strings.Join(cmd.Args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

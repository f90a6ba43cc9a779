package dms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/jobs/docker"
	"github.com/opendms/dms/types"
)

// guestImage builds the docker executor's test program into an image FROM
// scratch, with a tag of its own that the test removes. It skips the test
// where no Docker Engine answers.
func guestImage(t *testing.T) string {
	t.Helper()
	ex, err := docker.New(docker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ex.Ping(ctx); err != nil {
		t.Skipf("docker engine not reachable: %v", err)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the docker CLI, which builds the test image, is not installed")
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "guest"), "../jobs/docker/testdata/guest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the guest: %v\n%s", err, out)
	}
	dockerfile := "FROM scratch\nCOPY guest /guest\nENTRYPOINT [\"/guest\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	tag := "dms-test-guest:" + hex.EncodeToString(b[:])
	if out, err := exec.Command("docker", "build", "-q", "-t", tag, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
	return tag
}

func containerSpec(t *testing.T, image string, args ...string) *jobs.Spec {
	t.Helper()
	spec, err := jobs.Parse([]byte("name: guest\nexecutor: docker\nimage: " + image + "\nresources: {cpu: 0.5, memory: 64MiB}\ntimeout: 30s\n"))
	if err != nil {
		t.Fatal(err)
	}
	spec.Args = args
	return spec
}

// leftovers lists the containers DMS made for node d that still exist.
func leftovers(t *testing.T, d *DMS) string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=dms.managed=true", "--filter", "label=dms.node="+d.host.ID()).CombinedOutput()
	if err != nil {
		t.Fatalf("docker ps: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func runJob(t *testing.T, d *DMS, spec *jobs.Spec) api.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := d.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	job, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// A container job is placed by the auction, runs in a container on the
// provider's engine inside its limits, and leaves nothing behind: one that
// prints completes with its output; one that outgrows its memory is killed
// at the limit, and one that loops at its timeout, each failing saying so;
// one cancelled while it runs stops, and its capability is free again.
func TestDockerJobRunsInAContainerWithinItsLimits(t *testing.T) {
	image := guestImage(t)
	nodes := testNet(t, 2, func(i int) bool { return i != 0 })
	req, prov := nodes[0], nodes[1]
	info, err := prov.Node(context.Background())
	if err != nil || !strings.Contains(strings.Join(info.Capability.Executors, " "), "docker") {
		t.Fatalf("the provider's record offers %v (%v)", info.Capability.Executors, err)
	}

	job := runJob(t, req, containerSpec(t, image))
	if job.State != types.JobCompleted || job.Node != prov.host.ID() {
		t.Fatalf("hello: %s (%s) on %s", job.State, job.Reason, job.Node)
	}
	out, err := req.GetBlob(context.Background(), job.Result.Stdout)
	if err != nil || string(out) != "hello from the guest\n" {
		t.Fatalf("stdout %q, %v", out, err)
	}
	if u := job.Result.Usage; u == nil || u.MemoryLimit != 64<<20 || u.Wall <= 0 || u.OutputBytes != int64(len(out)) {
		t.Fatalf("hello's usage: %+v", u)
	}

	hog := containerSpec(t, image, "hog", "200")
	hog.Resources.Memory = 32 << 20
	job = runJob(t, req, hog)
	if job.State != types.JobFailed || !strings.Contains(job.Reason, "memory limit") {
		t.Fatalf("memory hog: %s (%s)", job.State, job.Reason)
	}
	loop := containerSpec(t, image, "loop")
	loop.Timeout = jobs.Duration(time.Second)
	job = runJob(t, req, loop)
	if job.State != types.JobFailed || !strings.Contains(job.Reason, "timeout") {
		t.Fatalf("endless loop: %s (%s)", job.State, job.Reason)
	}
	// Stopped at its timeout, the loop still says what it used.
	u := job.Attempts[len(job.Attempts)-1].Usage
	if u == nil || u.Wall < time.Second || u.MemoryLimit != 64<<20 {
		t.Fatalf("the endless loop's usage: %+v", u)
	}
	t.Logf("the endless loop used cpu %s in %s, memory peak %s", u.CPU, u.Wall, u.MemoryPeak)

	// Cancelled while it sleeps: the container stops and is removed.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := req.Submit(ctx, containerSpec(t, image, "sleep"))
	if err != nil {
		t.Fatal(err)
	}
	nextState(t, h.Events(), types.JobRunning)
	if err := req.CancelJob(ctx, h.ID); err != nil {
		t.Fatal(err)
	}
	if job := waitEnd(t, h); job.State != types.JobCancelled {
		t.Fatalf("cancelled: %s (%s)", job.State, job.Reason)
	}
	waitReleased(t, prov)
	waitFor(t, 10*time.Second, "the cancelled container to be removed", func() bool { return leftovers(t, prov) == "" })
}

// A node that runs no containers, or gives container jobs no network,
// declines them, and the job fails with that reason.
func TestDockerJobDeclinedWhereItCannotRun(t *testing.T) {
	image := guestImage(t)
	nodes := relNet(t, 2, func(i int) bool { return i != 0 }, func(i int) []Option {
		if i == 1 {
			return []Option{WithLease(10 * time.Second), WithDocker(DockerConfig{Mode: DockerOff})}
		}
		return []Option{WithLease(10 * time.Second)}
	})
	job := runJob(t, nodes[0], containerSpec(t, image))
	if job.State != types.JobFailed || !strings.Contains(job.Reason, `executor: "docker" not available (have wasm)`) {
		t.Fatalf("no docker: %s (%s)", job.State, job.Reason)
	}

	nodes = testNet(t, 2, func(i int) bool { return i != 0 })
	spec := containerSpec(t, image)
	spec.Network = true
	job = runJob(t, nodes[0], spec)
	if job.State != types.JobFailed || !strings.Contains(job.Reason, "network: the job asks for a network") {
		t.Fatalf("network asked: %s (%s)", job.State, job.Reason)
	}
}

// The docker executor is offered only while the engine answers: a node
// whose engine is away offers wasm alone and says so in its record, takes
// docker up when a probe succeeds, and drops it when one fails. With
// docker.mode on, a node without an engine does not start.
func TestDockerOfferedOnlyWhileTheEngineAnswers(t *testing.T) {
	away := DockerConfig{Host: "unix://" + filepath.Join(t.TempDir(), "no-engine.sock")}
	nodes := relNet(t, 1, func(int) bool { return true }, func(int) []Option { return []Option{WithDocker(away)} })
	d := nodes[0]
	offered := func() string {
		info, err := d.Node(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(info.Capability.Executors, " ")
	}
	if got := offered(); got != "wasm" {
		t.Fatalf("engine away: offers %q", got)
	}
	ctx := context.Background()
	if err := d.refreshDocker(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := offered(); got != "wasm docker" {
		t.Fatalf("engine back: offers %q", got)
	}
	if err := d.refreshDocker(ctx, d.pingDocker(ctx)); err != nil {
		t.Fatal(err)
	}
	if got := offered(); got != "wasm" {
		t.Fatalf("engine gone again: offers %q", got)
	}

	home := filepath.Join(t.TempDir(), "home")
	if _, err := Init(ctx, home, InitOptions{BenchDuration: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	away.Mode = DockerOn
	strict, err := New(WithHome(home), WithAPI(""), WithDocker(away))
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	if err := strict.Start(ctx); err == nil || !strings.Contains(err.Error(), "docker.mode is on") {
		t.Fatalf("start without an engine in mode on: %v", err)
	}
}

package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/opendms/dms/jobs"
)

// The tests run containers on the real engine, and skip when there is none.
// The test images, built once per test binary from the static Go program
// in testdata/guest (its first argument picks what it does), are FROM
// scratch and tagged uniquely; TestMain removes them.
var shared struct {
	once   sync.Once
	skip   string // why the tests skip; "" when the engine answers
	err    error
	cli    *client.Client
	run    string // unique per test binary
	images struct{ guest, user string }
	extra  []string // images tests built, removed by TestMain
	mu     sync.Mutex
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cli != nil {
		for _, ref := range append(shared.extra, shared.images.user, shared.images.guest) {
			removeImage(shared.cli, ref)
		}
		shared.cli.Close()
	}
	os.Exit(code)
}

// engine returns a client of the test engine and the test images, or skips.
func engine(t testing.TB) *client.Client {
	t.Helper()
	shared.once.Do(func() { shared.skip, shared.err = setupEngine() })
	if shared.skip != "" {
		t.Skip(shared.skip)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.cli
}

func setupEngine() (skip string, err error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return "docker engine not reachable: " + err.Error(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return "docker engine not reachable: " + err.Error(), nil
	}
	shared.cli, shared.run = cli, randomHex(6)
	bin, err := buildGuest()
	if err != nil {
		return "", err
	}
	shared.images.guest = "dms-docker-test:" + shared.run
	shared.images.user = shared.images.guest + "-user"
	if err := buildImage(ctx, cli, shared.images.guest, "FROM scratch\nCOPY guest /guest\nENTRYPOINT [\"/guest\"]\n", map[string][]byte{"guest": bin}); err != nil {
		return "", err
	}
	return "", buildImage(ctx, cli, shared.images.user, "FROM "+shared.images.guest+"\nUSER 1000:1000\n", nil)
}

func buildGuest() ([]byte, error) {
	dir, err := os.MkdirTemp("", "docker-guest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "guest")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", out, "./testdata/guest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the test guest: %w\n%s", err, b)
	}
	return os.ReadFile(out)
}

// buildImage builds tag from dockerfile, with files in its context, through
// the Engine API: no docker CLI needed.
func buildImage(ctx context.Context, cli *client.Client, tag, dockerfile string, files map[string][]byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files = maps.Clone(files)
	if files == nil {
		files = map[string][]byte{}
	}
	files["Dockerfile"] = []byte(dockerfile)
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		tw.Write(b)
	}
	tw.Close()
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		return fmt.Errorf("building %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := loadResult(resp.Body); err != nil {
		return fmt.Errorf("building %s: %w", tag, err)
	}
	return nil
}

// buildExample builds the example in examples/dir as its Dockerfile says:
// its static binary, named dir, then the image, tagged tag.
func buildExample(t testing.TB, cli *client.Client, dir, tag string) {
	t.Helper()
	src := filepath.Join("..", "..", "examples", dir)
	bin := filepath.Join(t.TempDir(), dir)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", bin, ".")
	cmd.Dir, cmd.Env = src, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the example %s: %v\n%s", dir, err, b)
	}
	dockerfile, err := os.ReadFile(filepath.Join(src, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	program, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := buildImage(context.Background(), cli, tag, string(dockerfile), map[string][]byte{dir: program}); err != nil {
		t.Fatal(err)
	}
}

// exampleImage builds the example in examples/dir once per test binary and
// returns its tag; TestMain removes it.
func exampleImage(t testing.TB, dir string) string {
	t.Helper()
	cli := engine(t)
	tag := "dms-docker-test:" + shared.run + "-" + dir
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !slices.Contains(shared.extra, tag) {
		buildExample(t, cli, dir, tag)
		shared.extra = append(shared.extra, tag)
	}
	return tag
}

func removeImage(cli *client.Client, ref string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newExecutor returns an Executor for one test. When the test ends it is
// closed, and the test fails if any container it created, or any volume
// of those, is left.
func newExecutor(t testing.TB, cfg Config) *Executor {
	t.Helper()
	cli := engine(t)
	cfg.Node = "test-" + randomHex(6)
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var volumes []string
	e.beforeRemove = func(c container.InspectResponse) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range c.Mounts {
			if m.Type == "volume" {
				volumes = append(volumes, m.Name)
			}
		}
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		ctx := context.Background()
		left, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelNode+"="+cfg.Node))})
		if err != nil || len(left) > 0 {
			t.Errorf("containers left behind: %d (%v)", len(left), err)
		}
		for _, v := range volumes {
			if _, err := cli.VolumeInspect(ctx, v); !cerrdefs.IsNotFound(err) {
				t.Errorf("volume %s left behind (%v)", v, err)
			}
		}
		if f := e.Stats().RemoveFailures; f != 0 {
			t.Errorf("%d removals failed", f)
		}
	})
	return e
}

// inspected records the containers of a run as they were before removal.
func inspected(e *Executor) func() []container.InspectResponse {
	var mu sync.Mutex
	var seen []container.InspectResponse
	prev := e.beforeRemove
	e.beforeRemove = func(c container.InspectResponse) {
		prev(c)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, c)
	}
	return func() []container.InspectResponse {
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

// guest runs the test guest in mode with args.
func guest(mode string, args ...string) jobs.Input {
	return jobs.Input{Image: shared.images.guest, Args: append([]string{mode}, args...), Job: "test"}
}

func runIn(t *testing.T, e *Executor, in jobs.Input) (*jobs.Output, error) {
	t.Helper()
	return e.Run(context.Background(), in)
}

// mustRun runs in and fails the test unless it exits 0.
func mustRun(t *testing.T, e *Executor, in jobs.Input) *jobs.Output {
	t.Helper()
	out, err := runIn(t, e, in)
	if err != nil || out.ExitCode != 0 {
		t.Fatalf("run %q: %v, output %+v", in.Args, err, out)
	}
	return out
}

package docker

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
)

// TestExample builds examples/docker-hello as its Dockerfile says (under a
// tag of the test's own) and runs it as its job.yaml says.
func TestExample(t *testing.T) {
	e := newExecutor(t, Config{})
	dir := filepath.Join("..", "..", "examples", "docker-hello")
	spec, err := jobs.ParseFile(filepath.Join(dir, "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tag := "dms-docker-test:" + shared.run + "-example"
	buildExample(t, e.cli, "docker-hello", tag)
	t.Cleanup(func() { removeImage(e.cli, tag) })
	task := spec.Task("", "", "")
	in := jobs.Input{
		Image: tag, Args: task.Args, Env: task.Env, Memory: task.Resources.Memory, CPU: task.Resources.CPU,
		Timeout: task.Timeout, Network: task.Network, WritableRoot: task.WritableRoot, Pids: task.Pids,
	}
	if spec.Image != "dms-docker-hello:latest" || task.Pids != jobs.DefaultPids {
		t.Fatalf("job.yaml names %s, pids %d", spec.Image, task.Pids)
	}
	if out := mustRun(t, e, in); string(out.Stdout) != "hello from a DMS container: args=[a b]\n" {
		t.Fatalf("stdout %q", out.Stdout)
	}
}

// An image whose program cannot start is a bad module.
func TestStartFails(t *testing.T) {
	e := newExecutor(t, Config{})
	tag := "dms-docker-test:" + shared.run + "-broken"
	if err := buildImage(context.Background(), e.cli, tag, "FROM "+shared.images.guest+"\nENTRYPOINT [\"/missing\"]\n", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeImage(e.cli, tag) })
	in := guest("exit", "0")
	in.Image, in.Timeout = tag, 10*time.Second
	if _, err := runIn(t, e, in); !errors.Is(err, jobs.ErrBadModule) {
		t.Fatalf("err = %v", err)
	}
}

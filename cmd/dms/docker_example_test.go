package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The docker-hello example works as its README says: build.sh builds the
// image FROM scratch from a static Go binary, and the example's job, placed
// by the auction on a devstack, prints its hello from a container.
func TestDockerHelloExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image and runs a container; skipped with -short")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the docker-hello example needs Docker: no docker command")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("the docker-hello example needs a Docker engine: docker info: %v: %s", err, strings.TrimSpace(string(out)))
	}
	const image = "dms-docker-hello:latest"
	dir := filepath.Join("..", "..", "examples", "docker-hello")
	existed := exec.Command("docker", "image", "inspect", image).Run() == nil
	t.Cleanup(func() {
		_ = os.Remove(filepath.Join(dir, "docker-hello")) // build.sh's binary
		if !existed {
			_ = exec.Command("docker", "rmi", "-f", image).Run()
		}
	})
	if out, err := exec.Command("sh", filepath.Join(dir, "build.sh")).CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	code, stdout, stderr := runBin(t, buildBinary(t), "devstack", "--nodes", "2", "--job", filepath.Join(dir, "job.yaml"))
	if code != 0 || !strings.Contains(stdout, "hello") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

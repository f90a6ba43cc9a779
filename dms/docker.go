package dms

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/opendms/dms/jobs/docker"
	"github.com/opendms/dms/jobs/wasm"
)

// DockerConfig is the config file's docker section: whether the node runs
// container jobs on a Docker Engine.
type DockerConfig struct {
	// Mode is DockerAuto (also when empty), DockerOn or DockerOff.
	Mode string `yaml:"mode"`
	// Host is the engine's address (unix:///var/run/docker.sock,
	// tcp://host:2376); "" reads DOCKER_HOST, as the docker CLI does.
	Host string `yaml:"host"`
	// Network lets container jobs that ask for a network (network: true)
	// have one; without it the node declines them.
	Network bool `yaml:"network"`
}

// Docker modes.
const (
	DockerAuto = "auto" // offer the docker executor while the engine answers
	DockerOn   = "on"   // the same, and refuse to start if it does not answer then
	DockerOff  = "off"  // never run containers
)

func (c DockerConfig) validate() error {
	switch c.Mode {
	case "", DockerAuto, DockerOn, DockerOff:
		return nil
	}
	return fmt.Errorf("docker.mode: %q is not auto, on or off", c.Mode)
}

// The engine is probed at start and then every dockerProbeEvery, each
// probe bounded by dockerPingTimeout.
const (
	dockerPingTimeout = 3 * time.Second
	dockerProbeEvery  = 10 * time.Second
)

// startDocker makes the docker executor unless the config turns it off or
// the node is idle-only, and offers it if the engine answers, after
// removing the containers a crash of this node left behind. Callers hold
// d.mu and build the record after.
func (d *DMS) startDocker(ctx context.Context) error {
	if !d.conf.Compute || d.conf.Docker.Mode == DockerOff {
		return nil
	}
	if d.conf.Offer.Idle.Enabled {
		d.log.Info("idle only: no container jobs (their CPU cannot be told apart from the owner's)")
		return nil
	}
	pid, err := peerIDOf(d.key)
	if err != nil {
		return err
	}
	ex, err := docker.New(docker.Config{Host: d.conf.Docker.Host, Node: pid})
	if err != nil {
		return err
	}
	d.docker = ex
	if err := d.pingDocker(ctx); err != nil {
		if d.conf.Docker.Mode == DockerOn {
			return fmt.Errorf("dms: docker.mode is on, but %w", err)
		}
		d.log.Info("docker engine not answering: no container jobs until it does", "err", err)
		return nil
	}
	if n, err := ex.RemoveLeftovers(ctx); err != nil {
		d.log.Warn("removing containers left by an earlier run", "err", err)
	} else if n > 0 {
		d.log.Info("removed containers left by an earlier run", "count", n)
	}
	d.executors = offeredExecutors(true)
	return nil
}

func (d *DMS) pingDocker(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dockerPingTimeout)
	defer cancel()
	return d.docker.Ping(ctx)
}

// offeredExecutors lists the executors a node offers: wasm always, docker
// while its engine answers.
func offeredExecutors(withDocker bool) []string {
	if withDocker {
		return []string{wasm.Name, docker.Name}
	}
	return []string{wasm.Name}
}

// goWatchDocker probes the engine and offers the docker executor only while
// it answers: the capability record changes, and is republished, when the
// engine comes or goes.
func (d *DMS) goWatchDocker() {
	if d.docker == nil {
		return
	}
	d.goEvery(dockerProbeEvery, "updating the executors offered", func(ctx context.Context) error {
		return d.refreshDocker(ctx, d.pingDocker(ctx))
	})
}

// refreshDocker applies the outcome of a probe of the engine.
func (d *DMS) refreshDocker(ctx context.Context, ping error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	want := offeredExecutors(ping == nil)
	if slices.Equal(want, d.executors) || d.closed {
		return nil
	}
	if ping != nil {
		d.log.Warn("docker engine stopped answering: no longer offering container jobs", "err", ping)
	} else {
		d.log.Info("docker engine answers: offering container jobs")
	}
	d.executors = want
	if err := d.setRecord(d.conf.Offer, d.record.Hardware, d.record.Benchmark, d.record.Energy); err != nil {
		return err
	}
	return d.applyRecord(ctx)
}

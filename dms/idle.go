package dms

import (
	"errors"
	"fmt"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/node"
)

// WithIdleOnly makes the node give only its machine's idle CPU (the config
// file's offer.idle, docs/batches.md): it bids only while the host's other
// processes leave the CPU idle, and stops its running units when they come
// back. The fields of c that are set replace the config file's; Enabled is
// implied.
func WithIdleOnly(c node.IdleConfig) Option {
	return func(o *config) error {
		c.Enabled = true
		if err := c.Validate(); err != nil {
			return fmt.Errorf("dms: WithIdleOnly: %w", err)
		}
		o.idle = &c
		return nil
	}
}

// applyIdle lays WithIdleOnly's fields over the config file's section.
func applyIdle(over *node.IdleConfig, c *node.IdleConfig) {
	if over == nil {
		return
	}
	c.Enabled = true
	for _, f := range []struct{ from, to *string }{
		{&over.Threshold, &c.Threshold}, {&over.Period, &c.Period}, {&over.StopWithin, &c.StopWithin}, {&over.Policy, &c.Policy},
	} {
		if *f.from != "" {
			*f.to = *f.from
		}
	}
}

// errIdleDocker refuses docker.mode on with idle-only: the host sampler
// cannot tell a container's CPU from the owner's, so the node would take
// its own units for its owner's return.
var errIdleDocker = errors.New("offer.idle.enabled and docker.mode: on: an idle-only node runs no container jobs " +
	"(their CPU cannot be told apart from the owner's yet); set docker.mode to auto or off (docs/batches.md)")

// checkIdle checks the idle section against the rest of the config.
func (c Config) checkIdle() error {
	if err := c.Offer.Idle.Validate(); err != nil {
		return err
	}
	if c.Offer.Idle.Enabled && c.Docker.Mode == DockerOn {
		return errIdleDocker
	}
	return nil
}

// idlePolicy returns the node's idle-only policy and the sampler of its
// host, or nil when the node bids whatever its host does.
func (c Config) idlePolicy() (*node.IdlePolicy, node.CPUSampler, error) {
	if !c.Offer.Idle.Enabled {
		return nil, nil, nil
	}
	p, err := c.Offer.Idle.Resolve()
	if err != nil {
		return nil, nil, err
	}
	cpu, err := node.HostCPU()
	if err != nil {
		return nil, nil, fmt.Errorf("offer.idle: %w", err)
	}
	return &p, cpu, nil
}

// idleInfo is the API's view of an idle-only node's host.
func idleInfo(h *node.HostState) *api.IdleInfo {
	if h == nil {
		return nil
	}
	return &api.IdleInfo{Idle: h.Idle, Others: h.Others, Threshold: h.Threshold, Since: h.Since, Reason: h.Reason, Stopped: h.Stopped}
}

package dms

import (
	"fmt"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// FlowsConfig is the config file's flows section: how the node runs the
// workflows it is given.
type FlowsConfig struct {
	Cache FlowCacheConfig `yaml:"cache"`
}

// FlowCacheConfig is the config file's flows.cache section: whether the
// node shares the results of its flows' steps through the DHT, and whose
// shared results it reuses (docs/workflows.md, The cache). Zero fields
// share nothing and take nothing.
type FlowCacheConfig struct {
	// Share publishes, for every instance this node runs to completion
	// with a cache key, a record of its result signed by the node's key,
	// for the nodes that trust it.
	Share bool `yaml:"share"`
	// Trust lists the nodes (PeerIDs or did:keys) whose shared results
	// this node reuses when its own cache misses: at most
	// MaxFlowCacheTrust. This node's own entry is ignored.
	Trust []string `yaml:"trust"`
	// LookupTimeout bounds the look-up of the trusted nodes' records for
	// one instance. Default DefaultFlowCacheLookup, at most
	// MaxFlowCacheLookup.
	LookupTimeout time.Duration `yaml:"lookup_timeout"`
}

// Defaults and bounds of FlowCacheConfig.
const (
	DefaultFlowCacheLookup = time.Second
	MaxFlowCacheLookup     = time.Minute
	// MaxFlowCacheTrust bounds the trusted nodes: a miss costs one DHT
	// look-up for each.
	MaxFlowCacheTrust = 16
)

// UnmarshalYAML reads the section field by field, as the store section.
func (c *FlowCacheConfig) UnmarshalYAML(n *yaml.Node) error {
	return decodeSection(n, "flows.cache", []string{"share", "trust", "lookup_timeout"}, func(key string, v *yaml.Node) (err error) {
		switch key {
		case "share":
			err = v.Decode(&c.Share)
		case "trust":
			err = v.Decode(&c.Trust)
		case "lookup_timeout":
			c.LookupTimeout, err = parseDuration(v.Value)
		}
		return err
	})
}

// validate checks the section; zero fields are fine (the defaults).
func (c FlowCacheConfig) validate() error {
	if _, err := c.trusted(); err != nil {
		return err
	}
	if c.LookupTimeout < 0 || c.LookupTimeout > MaxFlowCacheLookup {
		return fmt.Errorf("flows.cache.lookup_timeout: %s is outside 0 to %s (0 means the default, %s)",
			c.LookupTimeout, MaxFlowCacheLookup, DefaultFlowCacheLookup)
	}
	return nil
}

// trusted returns the PeerIDs of Trust, every did:key converted to its
// PeerID, sorted and without duplicates.
func (c FlowCacheConfig) trusted() ([]string, error) {
	if len(c.Trust) > MaxFlowCacheTrust {
		return nil, fmt.Errorf("flows.cache.trust lists %d nodes, more than %d", len(c.Trust), MaxFlowCacheTrust)
	}
	ids := make([]string, 0, len(c.Trust))
	for i, entry := range c.Trust {
		id, err := admittedPeerID(entry)
		if err != nil {
			return nil, fmt.Errorf("flows.cache.trust[%d]: %w", i, err)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// withDefaults fills the zero fields.
func (c FlowCacheConfig) withDefaults() FlowCacheConfig {
	if c.LookupTimeout == 0 {
		c.LookupTimeout = DefaultFlowCacheLookup
	}
	return c
}

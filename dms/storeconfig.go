package dms

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/types"
)

// StoreConfig is the config file's store section: what the node keeps on
// disk, and for how long (docs/config.md, docs/architecture.md). Zero
// fields take the defaults.
type StoreConfig struct {
	// MaxBytes is the budget of what the node keeps on disk: its blobs
	// (modules, inputs and outputs), its records (the database) and its
	// compiled Wasm modules. The compiled modules are kept to a twentieth
	// of it; the blobs may take what the rest leaves, and over that, the
	// blobs no live job, allocation or pin references are removed, least
	// recently used first. Default DefaultMaxBytes, at least MinMaxBytes.
	MaxBytes types.Bytes `yaml:"max_bytes"`
	// MinBlobAge keeps every blob used (stored, read, asked for) this
	// recently: a module uploaded a moment before its job is submitted,
	// a result its requester is about to fetch. Default DefaultMinBlobAge.
	MinBlobAge time.Duration `yaml:"min_blob_age"`
	// Retention is how long the full records of finished jobs and
	// allocations are kept; older ones are compacted to their summary.
	// Default DefaultRetention.
	Retention time.Duration `yaml:"retention"`
}

// Defaults and bounds of StoreConfig.
const (
	DefaultMaxBytes   = 4 << 30
	DefaultMinBlobAge = time.Minute
	DefaultRetention  = 7 * 24 * time.Hour
	MinMaxBytes       = 1 << 20
)

// UnmarshalYAML reads the section field by field, so that a value that
// does not parse is refused with its field's name; unknown fields are
// refused too, as everywhere in the config file.
func (c *StoreConfig) UnmarshalYAML(n *yaml.Node) error {
	return decodeSection(n, "store", []string{"max_bytes", "min_blob_age", "retention"}, func(key string, v *yaml.Node) (err error) {
		switch key {
		case "max_bytes":
			c.MaxBytes, err = types.ParseBytes(v.Value)
		case "min_blob_age":
			c.MinBlobAge, err = parseDuration(v.Value)
		case "retention":
			c.Retention, err = parseDuration(v.Value)
		}
		return err
	})
}

// decodeSection reads a config section's mapping field by field: field
// decodes the value of each of keys, and any other key is an unknown
// field. An error names the line and section.key; a null section is empty.
func decodeSection(n *yaml.Node, section string, keys []string, field func(key string, v *yaml.Node) error) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	want := strings.Join(keys[:len(keys)-1], ", ") + " or " + keys[len(keys)-1]
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: want a mapping of %s", n.Line, section, strings.Replace(want, " or ", " and ", 1))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, v := n.Content[i].Value, n.Content[i+1]
		err := fmt.Errorf("unknown field (want %s)", want)
		if slices.Contains(keys, key) {
			err = field(key, v)
		}
		if err != nil {
			return fmt.Errorf("line %d: %s.%s: %w", v.Line, section, key, err)
		}
	}
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 90s, 10m or 168h", s)
	}
	return d, nil
}

// validate checks the section; zero fields are fine (the defaults).
func (c StoreConfig) validate() error {
	switch {
	case c.MaxBytes < 0 || c.MaxBytes > 0 && c.MaxBytes < MinMaxBytes:
		return fmt.Errorf("store.max_bytes: %s is under the minimum, %s (0 means the default, %s)",
			c.MaxBytes, types.Bytes(MinMaxBytes), types.Bytes(DefaultMaxBytes))
	case c.MinBlobAge < 0:
		return fmt.Errorf("store.min_blob_age: %s is negative (0 means the default, %s)", c.MinBlobAge, DefaultMinBlobAge)
	case c.Retention < 0:
		return fmt.Errorf("store.retention: %s is negative (0 means the default, %s)", c.Retention, DefaultRetention)
	}
	return nil
}

// withDefaults fills the zero fields.
func (c StoreConfig) withDefaults() StoreConfig {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MinBlobAge == 0 {
		c.MinBlobAge = DefaultMinBlobAge
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	return c
}

// policy is the blob collector's, the blobs being allowed budget bytes:
// over it, a collection takes them down to nine tenths of it, so that they
// do not cross it again with each new one (a collection every time).
func (c StoreConfig) policy(budget int64) store.Policy {
	return store.Policy{Budget: budget, Target: budget / 10 * 9, MinAge: c.MinBlobAge}
}

// WithStore replaces the config file's store section: the budget of what
// the node keeps on disk, the blobs' minimum age, and the retention of full
// records.
// Zero fields take the defaults.
func WithStore(c StoreConfig) Option {
	return func(o *config) error {
		if err := c.validate(); err != nil {
			return fmt.Errorf("dms: WithStore: %w", err)
		}
		o.store = &c
		return nil
	}
}

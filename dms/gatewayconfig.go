package dms

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/gateway/policy"
)

// GatewayConfig is the config file's gateway section: whether the node
// serves functions over HTTP to the network's callers (docs/functions.md).
// Accounts, functions and endpoints exist on every node (its local API
// manages them); Listen opens them to callers with API keys.
type GatewayConfig struct {
	// Listen is the gateway's HTTP address, such as 127.0.0.1:8080 or
	// 0.0.0.0:443; "" serves no gateway.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile, both or neither, are a PEM certificate chain
	// and its key: the gateway then serves HTTPS (HTTP/2 over ALPN).
	// Relative paths are in the home. Without them it serves cleartext
	// HTTP/1.1 and HTTP/2 (prior knowledge).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// TrustedProxies are the addresses (CIDRs) whose X-Forwarded-For the
	// gateway believes when it decides a caller's address for endpoint
	// allowlists; from any other peer the header is ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TaskRetention is how long finished tasks (one per call) are kept;
	// 0: gateway.DefaultTaskRetention.
	TaskRetention time.Duration `yaml:"task_retention"`
	// RequireCredits admits a call only while its account has credits
	// available (dms account credit); otherwise 402 Payment Required.
	RequireCredits bool `yaml:"require_credits"`
	// Group makes the gateway a member of a replicated group of gateways
	// (docs/gateway.md); none when its Name is "".
	Group GroupConfig `yaml:"group"`
}

// GroupConfig is the gateway section's group: which group the gateway
// is a member of, and how it first finds the others.
type GroupConfig struct {
	// Name is the group's name; "" is no group.
	Name string `yaml:"name"`
	// Peers are the multiaddrs (/ip4/A/tcp/P/p2p/ID) of the other
	// founding members: with no state yet, the founders form the group
	// together. None: the members are found in the DHT under the name.
	Peers []string `yaml:"peers"`
	// Join makes a new member that waits to be added by one of the group
	// (dms gateway add) instead of founding it.
	Join bool `yaml:"join"`
}

// groupName is the pattern of a group's name.
var groupName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// UnmarshalYAML reads the group section, refusing unknown fields.
func (c *GroupConfig) UnmarshalYAML(n *yaml.Node) error {
	return decodeSection(n, "gateway.group", []string{"name", "peers", "join"}, func(key string, v *yaml.Node) error {
		switch key {
		case "name":
			return v.Decode(&c.Name)
		case "peers":
			return v.Decode(&c.Peers)
		}
		return v.Decode(&c.Join)
	})
}

func (c GroupConfig) validate() error {
	switch {
	case c.Name == "" && (len(c.Peers) > 0 || c.Join):
		return errors.New("gateway.group: peers and join need a name")
	case c.Name != "" && !groupName.MatchString(c.Name):
		return fmt.Errorf("gateway.group.name: %q: want 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit", c.Name)
	}
	for i, p := range c.Peers {
		if _, err := peer.AddrInfoFromString(p); err != nil {
			return fmt.Errorf("gateway.group.peers[%d]: %q is not a multiaddr with /p2p/ID: %w", i, p, err)
		}
	}
	return nil
}

// UnmarshalYAML reads the section field by field, refusing unknown fields
// and values that do not parse, with the field's name.
func (c *GatewayConfig) UnmarshalYAML(n *yaml.Node) error {
	keys := []string{"listen", "cert_file", "key_file", "trusted_proxies", "task_retention", "require_credits", "group"}
	return decodeSection(n, "gateway", keys, func(key string, v *yaml.Node) error {
		switch key {
		case "listen":
			return v.Decode(&c.Listen)
		case "cert_file":
			return v.Decode(&c.CertFile)
		case "key_file":
			return v.Decode(&c.KeyFile)
		case "trusted_proxies":
			return v.Decode(&c.TrustedProxies)
		case "group":
			return v.Decode(&c.Group)
		case "require_credits":
			return v.Decode(&c.RequireCredits)
		}
		var err error
		c.TaskRetention, err = parseDuration(v.Value)
		return err
	})
}

// validate checks the section; an empty one is valid (no gateway).
func (c GatewayConfig) validate() error {
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return fmt.Errorf("gateway.listen: %q is not host:port, such as 127.0.0.1:8080: %w", c.Listen, err)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("gateway.cert_file and gateway.key_file go together: give both for HTTPS, or neither")
	}
	if c.TaskRetention < 0 {
		return fmt.Errorf("gateway.task_retention: %s is negative (0 means the default, %s)", c.TaskRetention, gateway.DefaultTaskRetention)
	}
	if _, err := c.trusted(); err != nil {
		return err
	}
	return c.Group.validate()
}

// trusted parses TrustedProxies.
func (c GatewayConfig) trusted() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.TrustedProxies))
	for i, s := range c.TrustedProxies {
		p, err := policy.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("gateway.trusted_proxies[%d]: %w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// WithGateway replaces the config file's gateway section.
func WithGateway(c GatewayConfig) Option {
	return func(o *config) error {
		if err := c.validate(); err != nil {
			return fmt.Errorf("dms: WithGateway: %w", err)
		}
		o.gateway = &c
		return nil
	}
}

// WithGatewayListen serves the gateway on addr, over the config file's
// gateway.listen; certFile and keyFile, when given, replace its TLS pair.
// The other gateway settings stay the config file's.
func WithGatewayListen(addr, certFile, keyFile string) Option {
	return func(o *config) error {
		o.gatewayListen = &gatewayListen{addr: addr, cert: certFile, key: keyFile}
		return nil
	}
}

// WithGatewayGroup makes the gateway a member of the group name, over the
// config file's gateway.group: peers are the other founders' multiaddrs
// (none: found in the DHT), join a new member that waits to be added.
func WithGatewayGroup(name string, peers []string, join bool) Option {
	return func(o *config) error {
		g := GroupConfig{Name: name, Peers: peers, Join: join}
		if err := g.validate(); err != nil {
			return fmt.Errorf("dms: WithGatewayGroup: %w", err)
		}
		o.gatewayGroup = &g
		return nil
	}
}

// gatewayListen is WithGatewayListen's overlay.
type gatewayListen struct{ addr, cert, key string }

// apply lays the overlay over the config file's section.
func (l *gatewayListen) apply(c *GatewayConfig) {
	if l == nil {
		return
	}
	c.Listen = l.addr
	if l.cert != "" || l.key != "" {
		c.CertFile, c.KeyFile = l.cert, l.key
	}
}

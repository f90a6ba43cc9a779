package dms

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/gateway"
)

// TestGatewayConfig: a fresh home serves no gateway, an edited section
// loads back, and a bad value is refused with the file and the field named.
func TestGatewayConfig(t *testing.T) {
	home, _ := newHome(t)
	cfg, err := LoadConfig(home)
	if err != nil || cfg.Gateway.Listen != "" || cfg.Gateway.TaskRetention != gateway.DefaultTaskRetention {
		t.Fatalf("a fresh home's gateway section: %+v, %v", cfg.Gateway, err)
	}
	want := GatewayConfig{Listen: "127.0.0.1:8080", CertFile: "gw.crt", KeyFile: "gw.key",
		TrustedProxies: []string{"10.0.0.0/8", "127.0.0.1"}, TaskRetention: 48 * time.Hour}
	rewriteConfig(t, home, func(c *Config) { c.Gateway = want })
	cfg, err = LoadConfig(home)
	if err != nil || cfg.Gateway.Listen != want.Listen || cfg.Gateway.CertFile != want.CertFile || cfg.Gateway.KeyFile != want.KeyFile ||
		!slices.Equal(cfg.Gateway.TrustedProxies, want.TrustedProxies) || cfg.Gateway.TaskRetention != want.TaskRetention {
		t.Fatalf("after editing: %+v, %v", cfg.Gateway, err)
	}
	path := filepath.Join(home, configFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new, want string }{
		{`listen: "127.0.0.1:8080"`, `listen: "8080"`, `gateway.listen: "8080" is not host:port`},
		{`key_file: "gw.key"`, `key_file: ""`, "gateway.cert_file and gateway.key_file go together"},
		{"- 10.0.0.0/8", "- 10.0.0.1/8", "gateway.trusted_proxies[0]: policy: invalid"},
		{"- 10.0.0.0/8", "- everyone", "gateway.trusted_proxies[0]"},
		{"task_retention: 48h0m0s", "task_retention: forever", `gateway.task_retention: "forever" is not a duration`},
		{"task_retention: 48h0m0s", "task_retention: -1h", "gateway.task_retention: -1h0m0s is negative"},
		{"task_retention: 48h0m0s", "task_retension: 1h", "gateway.task_retension: unknown field"},
	} {
		if !strings.Contains(string(good), tc.old) {
			t.Fatalf("config lacks %q:\n%s", tc.old, good)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(good), tc.old, tc.new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(home)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s and %q", tc.new, err, path, tc.want)
		}
	}
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(WithHome(home), WithGatewayListen("127.0.0.1:0", "only.crt", "")); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("WithGatewayListen with a certificate and no key: %v", err)
	}
	for _, tc := range []struct {
		name  string
		peers []string
		join  bool
		want  string
	}{
		{"Team A", nil, false, `gateway.group.name: "Team A": want 1 to 63`},
		{"", nil, true, "peers and join need a name"},
		{"team", []string{"/ip4/127.0.0.1/tcp/4001"}, false, "gateway.group.peers[0]: \"/ip4/127.0.0.1/tcp/4001\" is not a multiaddr with /p2p/ID"},
		{"team", []string{"12D3KooW"}, false, "gateway.group.peers[0]"},
	} {
		if _, err := New(WithHome(home), WithGatewayGroup(tc.name, tc.peers, tc.join)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WithGatewayGroup(%q, %q, %v): %v, want %q", tc.name, tc.peers, tc.join, err, tc.want)
		}
	}
	rewriteConfig(t, home, func(c *Config) { c.Gateway.Group = GroupConfig{Name: "team", Join: true} })
	if cfg, err := LoadConfig(home); err != nil || cfg.Gateway.Group.Name != "team" || !cfg.Gateway.Group.Join {
		t.Errorf("gateway.group after editing: %+v, %v", cfg.Gateway.Group, err)
	}
}

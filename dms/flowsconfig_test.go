package dms

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFlowCacheConfig: a fresh home shares nothing and trusts no one; an
// edited section loads back, did:keys read as PeerIDs; a bad value is
// refused with the file and the field named.
func TestFlowCacheConfig(t *testing.T) {
	home, info := newHome(t)
	_, otherInfo := newHome(t)
	cfg, err := LoadConfig(home)
	if c := cfg.Flows.Cache; err != nil || c.Share || len(c.Trust) != 0 || c.LookupTimeout != DefaultFlowCacheLookup {
		t.Fatalf("a fresh home's flows.cache: %+v, %v", c, err)
	}
	rewriteConfig(t, home, func(c *Config) {
		c.Flows.Cache = FlowCacheConfig{Share: true, Trust: []string{otherInfo.DID, otherInfo.PeerID, info.PeerID}, LookupTimeout: 3 * time.Second}
	})
	cfg, err = LoadConfig(home)
	if c := cfg.Flows.Cache; err != nil || !c.Share || len(c.Trust) != 3 || c.LookupTimeout != 3*time.Second {
		t.Fatalf("after editing: %+v, %v", c, err)
	}
	ids, err := cfg.Flows.Cache.trusted()
	want := []string{otherInfo.PeerID, info.PeerID}
	slices.Sort(want)
	if err != nil || !slices.Equal(ids, want) {
		t.Fatalf("trusted: %v, %v; want %v", ids, err, want)
	}
	path := filepath.Join(home, configFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new, want string }{
		{"lookup_timeout: 3s", "lookup_timeout: 2m", "flows.cache.lookup_timeout: 2m0s is outside 0 to 1m0s"},
		{"lookup_timeout: 3s", "lookup_timeout: -1s", "flows.cache.lookup_timeout: -1s is outside"},
		{"lookup_timeout: 3s", "lookup_timeout: soon", `flows.cache.lookup_timeout: "soon" is not a duration`},
		{"lookup_timeout: 3s", "lookup_timeuot: 3s", "flows.cache.lookup_timeuot: unknown field"},
		{"    share: true", "    share: maybe", "flows.cache.share: yaml: unmarshal errors"},
		{"- " + otherInfo.DID, "- alice", `flows.cache.trust[0]: "alice" is neither a did:key nor a PeerID`},
		{"- " + otherInfo.DID, "- QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "is not the PeerID of an Ed25519 key"},
	} {
		if !strings.Contains(string(good), tc.old) {
			t.Fatalf("config lacks %q:\n%s", tc.old, good)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(good), tc.old, tc.new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(home)
		t.Logf("%s: %v", tc.new, err)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s and %q", tc.new, err, path, tc.want)
		}
	}
	many := make([]string, MaxFlowCacheTrust+1)
	for i := range many {
		many[i] = info.PeerID
	}
	if _, err := New(WithHome(home), WithFlowCache(FlowCacheConfig{Trust: many})); err == nil || !strings.Contains(err.Error(), "WithFlowCache: flows.cache.trust lists 17 nodes, more than 16") {
		t.Errorf("WithFlowCache trusting too many: %v", err)
	}
}

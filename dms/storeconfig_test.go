package dms

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// TestStoreConfig: a fresh home's config file holds the store defaults, an
// edited section loads back, and a bad value is refused with the file and
// the field named.
func TestStoreConfig(t *testing.T) {
	home, _ := newHome(t)
	cfg, err := LoadConfig(home)
	if err != nil || cfg.Store != (StoreConfig{MaxBytes: DefaultMaxBytes, MinBlobAge: DefaultMinBlobAge, Retention: DefaultRetention}) {
		t.Fatalf("a fresh home's store section: %+v, %v", cfg.Store, err)
	}
	rewriteConfig(t, home, func(c *Config) {
		c.Store = StoreConfig{MaxBytes: 512 << 20, MinBlobAge: 30 * time.Second, Retention: 48 * time.Hour}
	})
	if cfg, err = LoadConfig(home); err != nil || cfg.Store != (StoreConfig{MaxBytes: 512 << 20, MinBlobAge: 30 * time.Second, Retention: 48 * time.Hour}) {
		t.Fatalf("after editing: %+v, %v", cfg.Store, err)
	}
	path := filepath.Join(home, configFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new, want string }{
		{`max_bytes: "512 MiB"`, `max_bytes: "100KiB"`, "store.max_bytes: 100 KiB is under the minimum, 1 MiB"},
		{`max_bytes: "512 MiB"`, `max_bytes: "ten gigs"`, `store.max_bytes: types: bad size: "ten gigs" (want a number with an optional unit such as 64MiB or 2GB)`},
		{`max_bytes: "512 MiB"`, `max_bytes: "-1GiB"`, `store.max_bytes: types: bad size: "-1GiB" is negative`},
		{"min_blob_age: 30s", "min_blob_age: -5s", "store.min_blob_age: -5s is negative"},
		{"min_blob_age: 30s", "min_blob_age: 60", `store.min_blob_age: "60" is not a duration such as 90s, 10m or 168h`},
		{"retention: 48h0m0s", "retention: a week", `store.retention: "a week" is not a duration`},
		{"retention: 48h0m0s", "retnetion: 1h", `store.retnetion: unknown field`},
		{"retention: 48h0m0s", "retention: -1h", "store.retention: -1h0m0s is negative"},
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
	if _, err := New(WithHome(home), WithStore(StoreConfig{MaxBytes: types.Bytes(1000)})); err == nil || !strings.Contains(err.Error(), "WithStore: store.max_bytes") {
		t.Errorf("WithStore with a tiny budget: %v", err)
	}
}

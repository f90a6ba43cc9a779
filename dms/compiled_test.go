package dms

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The compiled modules are pruned to their budget, those written longest
// ago first; a temporary file is left alone while wazero may be writing
// it, and removed once it is clearly a crash's leftover.
func TestPruneCompiled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wazero-v1-amd64-linux")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	files := []struct {
		name string
		size int
		age  time.Duration
	}{
		{"old", 300, 3 * time.Hour},
		{"middle", 300, 2 * time.Hour},
		{"new", 300, time.Minute},
		{"new.123.tmp", 100, time.Minute},
		{"crashed.456.tmp", 100, 2 * time.Hour},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, make([]byte, f.size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, now.Add(-f.age), now.Add(-f.age)); err != nil {
			t.Fatal(err)
		}
	}
	freed, err := pruneCompiled(filepath.Dir(dir), 650, now)
	if err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	for i := range left {
		left[i] = filepath.Base(left[i])
	}
	slices.Sort(left)
	if want := []string{"middle", "new", "new.123.tmp"}; !slices.Equal(left, want) || freed != 400 {
		t.Fatalf("left %v, freed %d; want %v and 400", left, freed, want)
	}
	if freed, err := pruneCompiled(filepath.Join(t.TempDir(), "none"), 1, now); err != nil || freed != 0 {
		t.Fatalf("no cache yet: %d, %v", freed, err)
	}
}

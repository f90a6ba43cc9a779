package store

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// TestRewrite rewrites some records in place, in batches, and leaves one
// that was written after it was read.
func TestRewrite(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	kvs := map[string]any{"node/uuid": "u"}
	for i := range 2*rewriteBatch + 10 {
		kvs[fmt.Sprintf("job/%04d", i)] = map[string]int{"n": i}
	}
	if err := db.PutAll(kvs); err != nil {
		t.Fatal(err)
	}
	n, err := db.Rewrite("job/", func(key string, v []byte) ([]byte, bool, error) {
		if key == "job/0001" { // someone else writes it after the read
			if err := db.Put(key, map[string]int{"n": -1}); err != nil {
				return nil, false, err
			}
		}
		if strings.HasSuffix(key, "0") {
			return []byte(`"rewritten"`), true, nil
		}
		return nil, false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := (2*rewriteBatch + 10 + 9) / 10; n != want { // job/0000, job/0010, ...
		t.Fatalf("rewrote %d records, want %d", n, want)
	}
	var s string
	if err := db.Get("job/0010", &s); err != nil || s != "rewritten" {
		t.Fatalf("job/0010 = %q, %v", s, err)
	}
	var m map[string]int
	if err := db.Get("job/0001", &m); err != nil || m["n"] != -1 {
		t.Fatalf("job/0001, written after it was read: %v, %v", m, err)
	}
	if _, err := db.Rewrite("job/", func(string, []byte) ([]byte, bool, error) { return nil, false, fmt.Errorf("boom") }); err == nil {
		t.Fatal("an error from fn was not returned")
	}
	counts, err := db.Count()
	if err != nil || !maps.Equal(counts, map[string]int{"node": 1, "job": 2*rewriteBatch + 10}) {
		t.Fatalf("counts %v, %v", counts, err)
	}
}

// TestCollectValueLog runs on disk and in memory without error.
func TestCollectValueLog(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	if _, err := db.CollectValueLog(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	mem, err := OpenInMemory(homeOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if n, err := mem.CollectValueLog(); n != 0 || err != nil {
		t.Fatalf("in memory: %d, %v", n, err)
	}
}

// TestScanVersions: a record written after a scan has a version above the
// scan's read timestamp; the others do not, and their values are read only
// when asked for.
func TestScanVersions(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	if err := db.PutAll(map[string]any{"job/a": 1, "job/b": 2, "alloc/c": 3}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]uint64{}
	ts, err := db.ScanVersions("job/", func(key string, version uint64, _ func() ([]byte, error)) error {
		seen[key] = version
		return nil
	})
	if err != nil || len(seen) != 2 || seen["job/a"] > ts || seen["job/b"] > ts {
		t.Fatalf("first scan: %v at %d, %v", seen, ts, err)
	}
	if err := db.Put("job/b", 20); err != nil {
		t.Fatal(err)
	}
	changed := map[string]string{}
	ts2, err := db.ScanVersions("job/", func(key string, version uint64, value func() ([]byte, error)) error {
		if version <= ts {
			return nil
		}
		v, err := value()
		changed[key] = string(v)
		return err
	})
	if err != nil || !maps.Equal(changed, map[string]string{"job/b": "20"}) || ts2 < ts {
		t.Fatalf("second scan: changed %v, read at %d after %d, %v", changed, ts2, ts, err)
	}
}

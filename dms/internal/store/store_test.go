package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opendms/dms/types"
)

// open opens the database of a home dir: records in dir/db, blobs in
// dir/blobs.
func open(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(homeOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func homeOptions(dir string) Options {
	return Options{Dir: filepath.Join(dir, "db"), BlobDir: filepath.Join(dir, "blobs")}
}

func TestRecordsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	type rec struct{ N int }
	for i, k := range []string{"alloc/b", "alloc/a", "job/x"} {
		if err := db.Put(k, rec{i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, dir)
	defer db.Close()
	var keys []string
	err := db.Scan("alloc/", func(k string, _ []byte) error { keys = append(keys, k); return nil })
	if err != nil || strings.Join(keys, ",") != "alloc/a,alloc/b" {
		t.Fatalf("scan = %v, %v", keys, err)
	}
	var r rec
	if err := db.Get("job/x", &r); err != nil || r.N != 2 {
		t.Fatalf("get = %+v, %v", r, err)
	}
	if err := db.Get("job/none", &r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if err := db.Delete("job/x"); err != nil {
		t.Fatal(err)
	}
	if err := db.Get("job/x", &r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
}

// TestWriteIsAllOrNothing: Write puts and deletes in one transaction; a
// value it cannot encode leaves the store as it was.
func TestWriteIsAllOrNothing(t *testing.T) {
	type rec struct{ N int }
	db := open(t, t.TempDir())
	defer db.Close()
	if err := db.Put("job/old", rec{N: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(map[string]any{"job/new": rec{N: 2}, "job/bad": func() {}}, []string{"job/old"}); err == nil {
		t.Fatal("a value that cannot be encoded was written")
	}
	var r rec
	if found, err := db.Lookup("job/old", &r); !found || err != nil {
		t.Fatalf("a failed Write deleted job/old: %v %v", found, err)
	}
	if found, _ := db.Lookup("job/new", &r); found {
		t.Fatal("a failed Write stored job/new")
	}
	if err := db.Write(map[string]any{"job/new": rec{N: 2}}, []string{"job/old", "job/absent"}); err != nil {
		t.Fatal(err)
	}
	if found, _ := db.Lookup("job/old", &r); found {
		t.Fatal("job/old not deleted")
	}
	if err := db.Get("job/new", &r); err != nil || r.N != 2 {
		t.Fatalf("job/new = %+v, %v", r, err)
	}
}

func TestBlobs(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	defer db.Close()
	bs := db.Blobs(16)
	c, err := bs.Put([]byte("hello from dms"))
	if err != nil {
		t.Fatal(err)
	}
	if c != types.CIDOf([]byte("hello from dms")).String() || !bs.Has(c) {
		t.Fatalf("cid %s", c)
	}
	got, err := bs.Get(c)
	if err != nil || string(got) != "hello from dms" {
		t.Fatalf("get = %q, %v", got, err)
	}
	if _, err := bs.Put(make([]byte, 17)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized blob: %v", err)
	}
	if _, err := bs.Get("not-a-cid"); err == nil {
		t.Fatal("bad CID accepted")
	}
	if _, err := bs.Get(types.CIDOf([]byte("absent")).String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent blob: %v", err)
	}
	// A corrupted file is caught by verification.
	if err := os.WriteFile(dirFS{dir: filepath.Join(dir, "blobs")}.path(c), []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.Get(c); !errors.Is(err, types.ErrCIDMismatch) {
		t.Fatalf("corrupt blob: %v", err)
	}
}

func TestPutAll(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	kvs := map[string]any{}
	for i := range 300 {
		kvs[fmt.Sprintf("job/%03d", i)] = map[string]int{"n": i}
	}
	if err := db.PutAll(kvs); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := db.Scan("job/", func(key string, v []byte) error {
		var got map[string]int
		if err := json.Unmarshal(v, &got); err != nil || key != fmt.Sprintf("job/%03d", got["n"]) {
			return fmt.Errorf("%s = %s (%v)", key, v, err)
		}
		n++
		return nil
	})
	if err != nil || n != 300 {
		t.Fatalf("read back %d records: %v", n, err)
	}
	if err := db.PutAll(map[string]any{"bad": func() {}}); err == nil {
		t.Fatal("a value JSON cannot encode was written")
	}
}

// TestUpdateIsAtomicAndSerializable: concurrent read-modify-write
// transactions of one counter lose no increment (a conflict reruns the
// function on a fresh snapshot), and a transaction whose function fails
// writes nothing.
func TestUpdateIsAtomicAndSerializable(t *testing.T) {
	d, err := Open(Options{Dir: t.TempDir(), BlobDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const workers, each = 4, 50
	var wg sync.WaitGroup
	var done atomic.Int64
	for range workers {
		wg.Go(func() {
			for range each {
				err := d.Update(func(tx *Tx) error {
					var n int
					if _, err := tx.Lookup("counter", &n); err != nil {
						return err
					}
					return tx.Put("counter", n+1)
				})
				switch {
				case err == nil:
					done.Add(1)
				case !errors.Is(err, ErrConflict):
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var n int
	if err := d.Get("counter", &n); err != nil || int64(n) != done.Load() || n < workers*each/2 {
		t.Fatalf("counter %d, %v: want the %d increments committed (of %d)", n, err, done.Load(), workers*each)
	}
	boom := errors.New("boom")
	err = d.Update(func(tx *Tx) error {
		if err := tx.Put("a", 1); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update: %v, want boom", err)
	}
	if ok, _ := d.Lookup("a", new(int)); ok {
		t.Fatal("a failed transaction wrote")
	}
	err = d.Update(func(tx *Tx) error {
		for _, k := range []string{"s/1", "s/2", "s/3", "t/1"} {
			if err := tx.Put(k, k); err != nil {
				return err
			}
		}
		var seen []string
		if err := tx.Scan("s/", "s/2", func(k string, _ []byte) error { seen = append(seen, k); return nil }); err != nil {
			return err
		}
		if !slices.Equal(seen, []string{"s/2", "s/3"}) {
			return fmt.Errorf("scan from s/2 saw %v", seen)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestScanRange: the keys from from to to, in order, those around them
// left out; an error from fn stops the scan.
func TestScanRange(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	for _, k := range []string{"a/1", "b/1", "b/2", "b/3", "b/4", "b/5", "bb", "c/1"} {
		if err := db.Put(k, k); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(from, to string) string {
		t.Helper()
		var keys []string
		err := db.ScanRange(from, to, func(k string, v []byte) error {
			if want, _ := json.Marshal(k); string(v) != string(want) {
				t.Fatalf("%s holds %s", k, v)
			}
			keys = append(keys, k)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(keys, ",")
	}
	for _, c := range []struct{ from, to, want string }{
		{"b/2", "b/4", "b/2,b/3"},
		{"b/0", "b/9", "b/1,b/2,b/3,b/4,b/5"},
		{"b/4", "c/1", "b/4,b/5,bb"},
		{"", "b/2", "a/1,b/1"},
		{"b/3", "b/3", ""},
		{"b/4", "b/2", ""},
		{"b/6", "b/9", ""},
	} {
		if got := scan(c.from, c.to); got != c.want {
			t.Errorf("ScanRange(%q, %q) = %s, want %s", c.from, c.to, got, c.want)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := db.ScanRange("b/1", "b/9", func(string, []byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("after an error: %v, %d keys", err, n)
	}
}

package store

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/opendms/dms/types"
)

// TestHasReadsNoValue shows that Has does not read a blob: checking a
// 4 MiB blob allocates about what checking a 16-byte one does, far less
// than the blob (ValueCopy would allocate all of it).
func TestHasReadsNoValue(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	bs := db.Blobs(8 << 20)
	small, err := bs.Put(randomBytes(t, 16))
	if err != nil {
		t.Fatal(err)
	}
	large, err := bs.Put(randomBytes(t, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	bytesOf := func(c string) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			if !bs.Has(c) {
				t.Fatalf("Has(%s) = false", c)
			}
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / 10
	}
	if s, l := bytesOf(small), bytesOf(large); l > 64<<10 || l > 4*s+4096 {
		t.Fatalf("Has allocated %d bytes a call on a 4 MiB blob, %d on a 16-byte one", l, s)
	}
}

// BenchmarkBlobsHas checks a 1 MiB blob: a key lookup, whatever the size.
func BenchmarkBlobsHas(b *testing.B) {
	db, err := Open(homeOptions(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	bs := db.Blobs(2 << 20)
	data := make([]byte, 1<<20)
	rand.Read(data)
	c, err := bs.Put(data)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !bs.Has(c) {
			b.Fatal("blob missing")
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestBlobsSurviveReopen: the index rebuilt from the files holds every
// blob, its size, and the order they were written in.
func TestBlobsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	bs := db.Blobs(1 << 20)
	var cids []string
	for _, n := range []int{10, 1000, 100_000} {
		c, err := bs.Put(randomBytes(t, n))
		if err != nil {
			t.Fatal(err)
		}
		cids = append(cids, c)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, dir)
	defer db.Close()
	bs = db.Blobs(1 << 20)
	if n, size := bs.Stats(); n != 3 || size != 101_010 {
		t.Fatalf("after reopen: %d blobs, %d bytes; want 3, 101010", n, size)
	}
	for _, c := range cids {
		if _, err := bs.Get(c); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMigrateBlobRecords: blobs an earlier version kept as badger records
// (under blob/) are moved to files at Open, small and large alike.
func TestMigrateBlobRecords(t *testing.T) {
	dir := t.TempDir()
	old, err := openRecords(homeOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, n := range []int{100, 1 << 20} { // in the LSM tree, in the value log
		data := randomBytes(t, n)
		c := types.CIDOf(data).String()
		want[c] = data
		if err := old.putRaw([]byte(blobPrefix+c), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db := open(t, dir)
	defer db.Close()
	bs := db.Blobs(2 << 20)
	for c, data := range want {
		got, err := bs.Get(c)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("migrated blob %s: %d bytes, %v", c, len(got), err)
		}
		if ok, err := db.has([]byte(blobPrefix + c)); ok || err != nil {
			t.Fatalf("the record of blob %s is still there (%v)", c, err)
		}
	}
}

// TestConcurrentPuts stores the same and different blobs from many
// goroutines: each is counted once.
func TestConcurrentPuts(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	bs := db.Blobs(1 << 20)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				if _, err := bs.Put([]byte(fmt.Sprintf("blob %d", j%10+i%2*10))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n, size := bs.Stats(); n != 20 || size != 10*6+10*7 {
		t.Fatalf("%d blobs, %d bytes; want 20, 130", n, size)
	}
}

package store

import (
	"crypto/rand"
	"runtime"
	"testing"
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
	db, err := Open(b.TempDir(), nil)
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

package store

import (
	"bytes"
	"errors"
	"testing"
)

// TestOpenInMemory copies the records of an on-disk database, keeps what is
// written in memory only, and refuses values it cannot hold.
func TestOpenInMemory(t *testing.T) {
	dir := t.TempDir()
	disk := open(t, dir)
	if err := disk.Put("node/uuid", "u1"); err != nil {
		t.Fatal(err)
	}
	if err := disk.Close(); err != nil {
		t.Fatal(err)
	}
	mem, err := OpenInMemory(homeOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	var uuid string
	if err := mem.Get("node/uuid", &uuid); err != nil || uuid != "u1" {
		t.Fatalf("copied record: %q, %v", uuid, err)
	}
	blobs := mem.Blobs(1 << 20)
	small := bytes.Repeat([]byte("a"), MaxInMemoryValue)
	c, err := blobs.Put(small)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := blobs.Get(c); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("blob read back: %d bytes, %v", len(got), err)
	}
	if _, err := blobs.Put(append(small, 'b')); err != nil {
		t.Fatalf("a blob over MaxInMemoryValue (blobs are not badger values): %v", err)
	}
	if err := mem.Put("big", string(small)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a record over MaxInMemoryValue: got %v, want ErrTooLarge", err)
	}
	if err := mem.Put("job/x", 1); err != nil {
		t.Fatal(err)
	}
	if err := mem.Close(); err != nil {
		t.Fatal(err)
	}
	disk = open(t, dir)
	defer disk.Close()
	if ok, err := disk.Lookup("job/x", new(int)); ok || err != nil {
		t.Fatalf("a record written in memory reached the disk: %v, %v", ok, err)
	}
}

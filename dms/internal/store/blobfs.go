package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// blobFS holds the bytes of blobs by CID. The blobStore above it keeps the
// index and calls commit and remove under its lock, so that what the index
// says and what the files hold change together. Implementations are safe
// for concurrent use.
type blobFS interface {
	// stage writes data where no reader sees it yet.
	stage(data []byte) (staged, error)
	// read returns the bytes of blob c; an error wrapping fs.ErrNotExist
	// if there is none.
	read(c string) ([]byte, error)
	// remove deletes blob c; removing an absent blob is not an error.
	remove(c string) error
	// list calls fn with every blob held, its size, and when it was written.
	list(fn func(c string, size int64, written time.Time)) error
}

// staged is a blob written but not yet visible.
type staged interface {
	// commit makes the bytes blob c, atomically: a reader sees all of them
	// or none.
	commit(c string) error
	// discard drops them; after a commit it does nothing.
	discard()
}

// dirFS keeps each blob in a file named by its CID, under a directory named
// by the CID's last two characters (1,024 of them for base32 CIDs, whose
// first characters are all the same). A blob is written to tmp/ and
// renamed into place, so a crash never leaves a partial blob under its
// name; what a crash leaves in tmp/ is removed at the next open.
//
// Blobs are files rather than badger values because badger does not give
// their space back: a deleted value stays in badger's value log until a
// value-log GC rewrites its file, and GC picks only files that compactions
// of the LSM tree have reported discardable. The tree of a node's records
// is small and such compactions almost never run, so measured (300 blobs
// of 1 MiB stored, then deleted, RunValueLogGC until it rewrites nothing,
// Flatten, reopen), none of the 300 MiB came back, and putting and deleting
// 600 more grew the directory to 1 GiB. Removing a file frees its space at
// once.
type dirFS struct{ dir string }

const (
	blobTmp  = "tmp"
	dirMode  = 0o700
	blobMode = 0o600
)

func openDirFS(dir string) (dirFS, error) {
	tmp := filepath.Join(dir, blobTmp)
	if err := os.RemoveAll(tmp); err != nil { // half-written blobs of a crash
		return dirFS{}, fmt.Errorf("store: clearing %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, dirMode); err != nil {
		return dirFS{}, fmt.Errorf("store: creating %s: %w", tmp, err)
	}
	return dirFS{dir: dir}, nil
}

// shard names the directory of blob c.
func shard(c string) string {
	if len(c) < 2 {
		return "_"
	}
	return strings.ToLower(c[len(c)-2:])
}

func (f dirFS) path(c string) string { return filepath.Join(f.dir, shard(c), c) }

func (f dirFS) stage(data []byte) (staged, error) {
	tmp, err := os.CreateTemp(filepath.Join(f.dir, blobTmp), "blob-")
	if err != nil {
		return nil, err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	return &stagedFile{f: f, tmp: tmp.Name()}, nil
}

type stagedFile struct {
	f   dirFS
	tmp string
}

func (s *stagedFile) commit(c string) error {
	final := s.f.path(c)
	if err := os.Rename(s.tmp, final); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// The shard's directory is made by its first blob.
		if err := os.MkdirAll(filepath.Dir(final), dirMode); err != nil {
			return err
		}
		if err := os.Rename(s.tmp, final); err != nil {
			return err
		}
	}
	s.tmp = ""
	return nil
}

func (s *stagedFile) discard() {
	if s.tmp != "" {
		os.Remove(s.tmp)
	}
}

func (f dirFS) read(c string) ([]byte, error) { return os.ReadFile(f.path(c)) }

func (f dirFS) remove(c string) error {
	if err := os.Remove(f.path(c)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// list reads every shard directory; a file whose name is not a CID (none
// that this package writes) is skipped.
func (f dirFS) list(fn func(c string, size int64, written time.Time)) error {
	shards, err := os.ReadDir(f.dir)
	if err != nil {
		return err
	}
	for _, sh := range shards {
		if !sh.IsDir() || sh.Name() == blobTmp {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(f.dir, sh.Name()))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if _, err := cid.Decode(e.Name()); err != nil || !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			fn(e.Name(), info.Size(), info.ModTime())
		}
	}
	return nil
}

// memFS keeps blobs in memory, for a database opened with OpenInMemory.
type memFS struct {
	mu    sync.RWMutex
	blobs map[string][]byte
}

func newMemFS() *memFS { return &memFS{blobs: map[string][]byte{}} }

func (m *memFS) stage(data []byte) (staged, error) {
	return &stagedMem{m: m, data: append([]byte(nil), data...)}, nil
}

type stagedMem struct {
	m    *memFS
	data []byte
}

func (s *stagedMem) commit(c string) error {
	s.m.mu.Lock()
	s.m.blobs[c] = s.data
	s.m.mu.Unlock()
	return nil
}

func (s *stagedMem) discard() {}

func (m *memFS) read(c string) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, ok := m.blobs[c]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return b, nil
}

func (m *memFS) remove(c string) error {
	m.mu.Lock()
	delete(m.blobs, c)
	m.mu.Unlock()
	return nil
}

func (m *memFS) list(func(string, int64, time.Time)) error { return nil } // empty when opened

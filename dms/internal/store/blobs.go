package store

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/opendms/dms/types"
)

// blobStore is the one set of blobs of a DB: their bytes in a blobFS, and
// in memory an index of each blob's size and last use, which the collector
// orders them by. A use (Put, Get, Has) changes the index only: recency
// costs no write. The index is rebuilt from the files at open, each blob
// last used when its file was written.
type blobStore struct {
	fs    blobFS
	clock func() time.Time

	// over receives (without blocking; capacity 1) when a Put leaves the
	// blobs over budget, or finds the disk full.
	over chan struct{}

	mu     sync.Mutex // guards the fields below, and every commit and remove
	index  map[string]*blobEntry
	bytes  int64
	seq    uint64 // the last use's number
	budget int64  // 0: none
}

// blobEntry is what the index holds of one blob.
type blobEntry struct {
	size int64
	used time.Time // the last use
	seq  uint64    // the number of the last use: the LRU order
}

func newBlobStore(f blobFS, clock func() time.Time) (*blobStore, error) {
	s := &blobStore{fs: f, clock: clock, index: map[string]*blobEntry{}, over: make(chan struct{}, 1)}
	var found []BlobUse
	err := f.list(func(c string, size int64, written time.Time) {
		found = append(found, BlobUse{CID: c, Size: size, Used: written})
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing blobs: %w", err)
	}
	slices.SortFunc(found, func(a, b BlobUse) int { return cmp.Or(a.Used.Compare(b.Used), cmp.Compare(a.CID, b.CID)) })
	for _, b := range found {
		s.seq++
		s.index[b.CID] = &blobEntry{size: b.Size, used: b.Used, seq: s.seq}
		s.bytes += b.Size
	}
	return s, nil
}

// touch marks blob c used now and reports whether it is held. Callers hold s.mu.
func (s *blobStore) touch(c string) bool {
	e, ok := s.index[c]
	if ok {
		s.seq++
		e.used, e.seq = s.clock(), s.seq
	}
	return ok
}

// add indexes blob c, just committed, as used now. Callers hold s.mu.
func (s *blobStore) add(c string, size int64) {
	if s.touch(c) {
		return // a concurrent Put of the same bytes committed first
	}
	s.seq++
	s.index[c] = &blobEntry{size: size, used: s.clock(), seq: s.seq}
	s.bytes += size
	if s.budget > 0 && s.bytes > s.budget {
		s.signal()
	}
}

// signal tells the collector, if it waits, that the blobs need collecting.
func (s *blobStore) signal() {
	select {
	case s.over <- struct{}{}:
	default:
	}
}

// BlobUse is a blob's size and last use.
type BlobUse struct {
	CID  string
	Size int64
	Used time.Time // when it was last stored, read or asked for
	Seq  uint64    // the number of that use: a later use has a larger one
}

// Blobs is the content-addressed part of the database: a view of its blobs
// that refuses to store one over its size limit. Every method is safe for
// concurrent use.
type Blobs struct {
	s       *blobStore
	maxSize int64
}

// Blobs returns the blob store, refusing blobs over maxSize bytes.
func (d *DB) Blobs(maxSize int64) *Blobs { return &Blobs{s: d.blobs, maxSize: maxSize} }

// Put stores data and returns its CID (CIDv1, raw, sha2-256). A blob
// already held is not written again. When the disk is full the error wraps
// ErrNoSpace, and nothing stored before is touched.
func (b *Blobs) Put(data []byte) (string, error) {
	if int64(len(data)) > b.maxSize {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), b.maxSize)
	}
	c := types.CIDOf(data).String()
	if b.Has(c) {
		return c, nil
	}
	st, err := b.s.fs.stage(data)
	if err == nil {
		b.s.mu.Lock()
		if err = st.commit(c); err == nil {
			b.s.add(c, int64(len(data)))
		}
		b.s.mu.Unlock()
		st.discard()
	}
	if errors.Is(err, syscall.ENOSPC) {
		b.s.signal()
		return "", fmt.Errorf("%w: storing blob %s (%s): %w", ErrNoSpace, c, types.Bytes(len(data)), err)
	}
	if err != nil {
		return "", fmt.Errorf("store: storing blob %s: %w", c, err)
	}
	return c, nil
}

// Get returns the blob named by c, verified against it.
func (b *Blobs) Get(c string) ([]byte, error) {
	id, err := cid.Decode(c)
	if err != nil {
		return nil, fmt.Errorf("store: bad CID %q: %w", c, err)
	}
	c = id.String()
	if !b.Has(c) {
		return nil, fmt.Errorf("%w: blob %s", ErrNotFound, c)
	}
	data, err := b.s.fs.read(c)
	if errors.Is(err, fs.ErrNotExist) { // collected since Has
		return nil, fmt.Errorf("%w: blob %s", ErrNotFound, c)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading blob %s: %w", c, err)
	}
	if err := types.VerifyCID(id, data); err != nil {
		return nil, fmt.Errorf("store: blob %s is corrupt: %w", c, err)
	}
	return data, nil
}

// Has reports whether the blob named by c is stored, and counts as a use
// of it. It reads the index in memory only.
func (b *Blobs) Has(c string) bool {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	return b.s.touch(c)
}

// Watch sets the budget of the blobs and returns the channel that
// receives when a Put leaves them over it or finds the disk full: the
// collector's cue. The channel holds one signal at most: a collector that
// was busy finds one waiting.
func (b *Blobs) Watch(budget int64) <-chan struct{} {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	b.s.budget = budget
	return b.s.over
}

// Stats returns how many blobs are stored and their bytes.
func (b *Blobs) Stats() (count int, bytes int64) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	return len(b.s.index), b.s.bytes
}

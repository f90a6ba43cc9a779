package p2p

import (
	"fmt"
	"sync"

	"github.com/opendms/dms/types"
)

// MemBlobs is an in-memory BlobStore, for tests and simulations. The zero
// value is ready to use.
type MemBlobs struct {
	mu    sync.RWMutex
	blobs map[string][]byte
}

var _ BlobStore = (*MemBlobs)(nil)

// Put stores a copy of data under its CID.
func (m *MemBlobs) Put(data []byte) (string, error) {
	c := types.CIDOf(data).String()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blobs == nil {
		m.blobs = make(map[string][]byte)
	}
	m.blobs[c] = append([]byte(nil), data...)
	return c, nil
}

// Get returns the blob named c.
func (m *MemBlobs) Get(c string) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, ok := m.blobs[c]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrBlobNotFound, c)
	}
	return b, nil
}

// Has reports whether the blob named c is stored.
func (m *MemBlobs) Has(c string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.blobs[c]
	return ok
}

package store

import (
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/opendms/dms/types"
)

const blobPrefix = "blob/"

// Blobs is the content-addressed part of the database.
type Blobs struct {
	db      *DB
	maxSize int64
}

// Blobs returns the blob store, refusing blobs over maxSize bytes.
func (d *DB) Blobs(maxSize int64) *Blobs { return &Blobs{db: d, maxSize: maxSize} }

// Put stores data and returns its CID (CIDv1, raw, sha2-256).
func (b *Blobs) Put(data []byte) (string, error) {
	if int64(len(data)) > b.maxSize {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), b.maxSize)
	}
	c := types.CIDOf(data).String()
	if b.Has(c) {
		return c, nil
	}
	if err := b.db.putRaw([]byte(blobPrefix+c), data); err != nil {
		return "", err
	}
	return c, nil
}

// Get returns the blob named by c, verified against it.
func (b *Blobs) Get(c string) ([]byte, error) {
	id, err := cid.Decode(c)
	if err != nil {
		return nil, fmt.Errorf("store: bad CID %q: %w", c, err)
	}
	data, err := b.db.getRaw([]byte(blobPrefix + id.String()))
	if err != nil {
		return nil, err
	}
	if err := types.VerifyCID(id, data); err != nil {
		return nil, fmt.Errorf("store: blob %s is corrupt: %w", c, err)
	}
	return data, nil
}

// Has reports whether the blob named by c is stored. It reads the key
// only: the value, in the value log for a blob over valueThreshold, is
// never read.
func (b *Blobs) Has(c string) bool {
	ok, err := b.db.has([]byte(blobPrefix + c))
	return ok && err == nil
}

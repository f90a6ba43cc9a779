package types

import (
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
)

// CIDOf returns the CIDv1 (raw codec, sha2-256) of data. Every blob, result and
// capability record in DMS is named this way.
func CIDOf(data []byte) cid.Cid {
	h, err := multihash.Sum(data, multihash.SHA2_256, -1)
	if err != nil {
		// sha2-256 is always registered; an error here is a programming error.
		panic(fmt.Sprintf("types: sha2-256 multihash: %v", err))
	}
	return cid.NewCidV1(cid.Raw, h)
}

// CIDOfReader is CIDOf for what r reads, without holding it in memory. It
// returns the CID and the number of bytes read.
func CIDOfReader(r io.Reader) (cid.Cid, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return cid.Undef, n, err
	}
	mh, err := multihash.Encode(h.Sum(nil), multihash.SHA2_256)
	if err != nil {
		panic(fmt.Sprintf("types: sha2-256 multihash: %v", err))
	}
	return cid.NewCidV1(cid.Raw, mh), n, nil
}

// VerifyCID reports whether data hashes to c. It recomputes the hash with the
// function named in c, so a CID of another hash function is checked too.
func VerifyCID(c cid.Cid, data []byte) error {
	p := c.Prefix()
	got, err := p.Sum(data)
	if err != nil {
		return fmt.Errorf("types: hashing for %s: %w", c, err)
	}
	if !got.Equals(c) {
		return fmt.Errorf("%w: want %s, got %s", ErrCIDMismatch, c, got)
	}
	return nil
}

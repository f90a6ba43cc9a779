package p2p

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	record "github.com/libp2p/go-libp2p-record"
	cryptopb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Shared cache records: what a node says a flow step's run gave, for the
// nodes that trust it to reuse (docs/workflows.md, The cache). A record
// is a DHT value under
//
//	/dmscache/<locator>/<publisher's PeerID>
//
// where the locator is a hash of the cache key, and the value is
//
//	version (1 byte) | signed at (8: unix nanoseconds, big-endian)
//	| nonce (12) | AES-256-GCM ciphertext of the value | signature (64)
//
// The signature, by the publisher's Ed25519 key, covers a domain string,
// the whole DHT key and every byte before it: a record cannot be moved to
// another key, publisher or cache key, nor changed. Every DHT server
// checks it (cacheValidator) before it stores or serves a record, and the
// node that reads one checks it again, with its age and its seal
// (GetCacheRecord).
//
// The value is sealed with a key derived from the cache key, which never
// leaves the node: a DHT server sees a locator, a publisher and a size,
// not the result, so it cannot fetch the blobs a result names. Only a
// node that knows what the cache key names (the program and its inputs)
// can derive both the locator and the seal key.
const (
	cacheNamespace = "dmscache"
	// MaxCacheRecordSize bounds a record, signature and seal included.
	MaxCacheRecordSize = 64 << 10
	// cacheRecordMaxAge is how long a reader takes a record after it was
	// signed: kad-dht's default MaxRecordAge, how long DHT servers keep a
	// value without its being put again.
	cacheRecordMaxAge = 48 * time.Hour

	cacheRecordVersion = 1
	cacheSignDomain    = "dms/flowcache/record/v1"
	cacheLocateDomain  = "dms/flowcache/locate/v1"
	cacheSealDomain    = "dms/flowcache/seal/v1"

	cacheHeaderSize = 1 + 8
	cacheNonceSize  = 12
	cacheTagSize    = 16 // AES-GCM's
	minCacheRecord  = cacheHeaderSize + cacheNonceSize + cacheTagSize + ed25519.SignatureSize
)

// cacheDHTKey is the DHT key of publisher's record for cacheKey.
func cacheDHTKey(cacheKey string, publisher peer.ID) string {
	sum := sha256.Sum256([]byte(cacheLocateDomain + "\x00" + cacheKey))
	return "/" + cacheNamespace + "/" + hex.EncodeToString(sum[:]) + "/" + publisher.String()
}

// cacheSealKey is the AES-256 key that seals the values of cacheKey.
func cacheSealKey(cacheKey string) []byte {
	sum := sha256.Sum256([]byte(cacheSealDomain + "\x00" + cacheKey))
	return sum[:]
}

// cachePublisher returns the publisher a DHT key of the namespace names;
// it refuses any other key: another namespace, a locator that is not 64
// lowercase hex digits, a PeerID that does not decode or is not written
// in its canonical form (one key per locator and publisher).
func cachePublisher(key string) (peer.ID, error) {
	rest, ok := strings.CutPrefix(key, "/"+cacheNamespace+"/")
	locator, id, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || len(locator) != 2*sha256.Size || strings.ToLower(locator) != locator {
		return "", fmt.Errorf("%w: key %.100q is not /%s/<locator>/<peer id>", ErrBadRecord, key, cacheNamespace)
	}
	if _, err := hex.DecodeString(locator); err != nil {
		return "", fmt.Errorf("%w: key locator: %w", ErrBadRecord, err)
	}
	p, err := peer.Decode(id)
	if err != nil || p.String() != id {
		return "", fmt.Errorf("%w: key names %.60q, not a PeerID in its canonical form", ErrBadRecord, id)
	}
	return p, nil
}

// signedCacheBytes is what a record's signature covers: the domain, the
// DHT key and the record without its signature.
func signedCacheBytes(key string, body []byte) []byte {
	msg := make([]byte, 0, len(cacheSignDomain)+len(key)+len(body)+2)
	msg = append(msg, cacheSignDomain...)
	msg = append(msg, 0)
	msg = append(msg, key...)
	msg = append(msg, 0)
	return append(msg, body...)
}

// sealCacheRecord makes the record of value under key: sealed with seal,
// dated at, signed with priv.
func sealCacheRecord(priv ed25519.PrivateKey, key string, seal, value []byte, at time.Time) ([]byte, error) {
	if size := minCacheRecord + len(value); size > MaxCacheRecordSize {
		return nil, fmt.Errorf("%w: a record of %d bytes is over %d", ErrBadRecord, size, MaxCacheRecordSize)
	}
	aead, err := newCacheAEAD(seal)
	if err != nil {
		return nil, err
	}
	rec := make([]byte, cacheHeaderSize+cacheNonceSize, minCacheRecord+len(value))
	rec[0] = cacheRecordVersion
	binary.BigEndian.PutUint64(rec[1:], uint64(at.UnixNano()))
	if _, err := rand.Read(rec[cacheHeaderSize:]); err != nil {
		return nil, err
	}
	rec = aead.Seal(rec, rec[cacheHeaderSize:], value, []byte(key))
	return append(rec, ed25519.Sign(priv, signedCacheBytes(key, rec))...), nil
}

func newCacheAEAD(seal []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(seal)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// verifyCacheRecord checks a record against its DHT key: its size,
// version and its publisher's signature (the publisher's key is its
// PeerID's, an Ed25519 key), and returns when it was signed.
func verifyCacheRecord(key string, rec []byte) (time.Time, error) {
	p, err := cachePublisher(key)
	if err != nil {
		return time.Time{}, err
	}
	switch {
	case len(rec) > MaxCacheRecordSize:
		return time.Time{}, fmt.Errorf("%w: %d bytes, over %d", ErrBadRecord, len(rec), MaxCacheRecordSize)
	case len(rec) < minCacheRecord:
		return time.Time{}, fmt.Errorf("%w: %d bytes, under %d", ErrBadRecord, len(rec), minCacheRecord)
	case rec[0] != cacheRecordVersion:
		return time.Time{}, fmt.Errorf("%w: version %d, want %d", ErrBadRecord, rec[0], cacheRecordVersion)
	}
	pub, err := p.ExtractPublicKey()
	if err != nil || pub.Type() != cryptopb.KeyType_Ed25519 {
		return time.Time{}, fmt.Errorf("%w: publisher %s has no Ed25519 key in its PeerID", ErrBadRecord, p)
	}
	body, sig := rec[:len(rec)-ed25519.SignatureSize], rec[len(rec)-ed25519.SignatureSize:]
	if ok, err := pub.Verify(signedCacheBytes(key, body), sig); !ok || err != nil {
		return time.Time{}, fmt.Errorf("%w: not signed by %s for this key", ErrBadRecord, p)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(rec[1:]))), nil
}

// openCacheRecord verifies a record, refuses it past cacheRecordMaxAge at
// now, and returns its value, unsealed with seal.
func openCacheRecord(key string, seal, rec []byte, now time.Time) ([]byte, error) {
	at, err := verifyCacheRecord(key, rec)
	if err != nil {
		return nil, err
	}
	if age := now.Sub(at); age > cacheRecordMaxAge {
		return nil, fmt.Errorf("%w: signed %s ago, over %s", ErrBadRecord, age.Round(time.Second), cacheRecordMaxAge)
	}
	aead, err := newCacheAEAD(seal)
	if err != nil {
		return nil, err
	}
	sealed := rec[cacheHeaderSize : len(rec)-ed25519.SignatureSize]
	value, err := aead.Open(nil, sealed[:cacheNonceSize], sealed[cacheNonceSize:], []byte(key))
	if err != nil {
		return nil, fmt.Errorf("%w: its seal does not open with this cache key's", ErrBadRecord)
	}
	return value, nil
}

// cacheValidator is the DHT's validator of the dmscache namespace: every
// host stores, serves and takes only records whose publisher signed them
// for their key, and prefers the newest.
type cacheValidator struct{}

var _ record.Validator = cacheValidator{}

// Validate checks a record's key, size and signature. The seal is left
// to the readers that know the cache key.
func (cacheValidator) Validate(key string, value []byte) error {
	_, err := verifyCacheRecord(key, value)
	return err
}

// Select picks the newest valid record, the greatest bytes among equally
// new ones (a choice that does not depend on the order).
func (cacheValidator) Select(key string, values [][]byte) (int, error) {
	best, bestAt := -1, time.Time{}
	for i, v := range values {
		at, err := verifyCacheRecord(key, v)
		if err != nil {
			continue
		}
		if best < 0 || at.After(bestAt) || at.Equal(bestAt) && bytes.Compare(v, values[best]) > 0 {
			best, bestAt = i, at
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: none of %d records is valid", ErrBadRecord, len(values))
	}
	return best, nil
}

// PutCacheRecord publishes value as this host's record for cacheKey: its
// own copy at once, then the DHT peers closest to the key. It fails for a
// value too large for a record (MaxCacheRecordSize), and when the DHT
// lookup fails, as when the host has no peer yet: the host still serves
// its own copy to the lookups that reach it. cacheKey must be a secret
// of those who know what it names (a hash of it), never sent anywhere.
func (h *Host) PutCacheRecord(ctx context.Context, cacheKey string, value []byte) error {
	if cacheKey == "" {
		return fmt.Errorf("%w: empty cache key", ErrBadRecord)
	}
	key := cacheDHTKey(cacheKey, h.host.ID())
	rec, err := sealCacheRecord(h.cfg.Key, key, cacheSealKey(cacheKey), value, h.cfg.Clock())
	if err != nil {
		return err
	}
	if err := h.dht.PutValue(ctx, key, rec); err != nil {
		return fmt.Errorf("p2p: putting a cache record: %w", err)
	}
	return nil
}

// GetCacheRecord returns the value of publisher's record for cacheKey:
// the first record the DHT lookup finds that verifies, is under
// cacheRecordMaxAge old and opens with cacheKey's seal. It fails with
// ErrNoRecord when the lookup ends without one, ErrBadRecord when it
// found only records refused, or ctx's error.
func (h *Host) GetCacheRecord(ctx context.Context, cacheKey, publisher string) ([]byte, error) {
	p, err := peer.Decode(publisher)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadPeer, publisher, err)
	}
	key := cacheDHTKey(cacheKey, p)
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found, err := h.dht.SearchValue(qctx, key)
	if err != nil {
		return nil, fmt.Errorf("p2p: looking up a cache record: %w", err)
	}
	defer func() {
		cancel()
		for range found { // the search's goroutine ends with it
		}
	}()
	var refused error
	for rec := range found {
		value, err := openCacheRecord(key, cacheSealKey(cacheKey), rec, h.cfg.Clock())
		if err == nil {
			return value, nil
		}
		refused = err
	}
	switch {
	case refused != nil:
		return nil, refused
	case ctx.Err() != nil:
		return nil, fmt.Errorf("p2p: looking up a cache record: %w", ctx.Err())
	}
	return nil, fmt.Errorf("%w: %s for this cache key", ErrNoRecord, publisher)
}

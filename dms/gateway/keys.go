package gateway

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sync/singleflight"

	"github.com/opendms/dms/dms/api"
)

// An API key reads "dms_<ID>_<secret>": a 128-bit random ID, by which the
// key is found and listed, and a 256-bit random secret, both from
// crypto/rand in lowercase base32 (26 and 52 characters). Only the
// secret's argon2id hash is stored.
const (
	keyTag      = "dms_"
	keyIDBytes  = 16
	secretBytes = 32
)

var keyText = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// kdf is the argon2id cost of a key's hash, stored with it so that a
// change of cost leaves the keys made before working.
type kdf struct {
	Time      uint32 `json:"t"`
	MemoryKiB uint32 `json:"m"`
	Threads   uint8  `json:"p"`
	KeyLen    uint32 `json:"len"`
}

// keyCost is OWASP's argon2id setting (19 MiB, 2 passes, 1 lane): 20 to
// 40 ms a hash.
var keyCost = kdf{Time: 2, MemoryKiB: 19 << 10, Threads: 1, KeyLen: 32}

func (k kdf) hash(secret, salt []byte) []byte {
	return argon2.IDKey(secret, salt, k.Time, k.MemoryKiB, k.Threads, k.KeyLen)
}

// keyRecord is a key as stored: its hash, never its secret.
type keyRecord struct {
	Key
	Salt []byte `json:"salt"`
	Hash []byte `json:"hash"`
	KDF  kdf    `json:"kdf"`
}

// makeKey makes a key of an account, and its record.
func makeKey(account string, now time.Time) (NewKey, keyRecord, error) {
	id, secret, salt := make([]byte, keyIDBytes), make([]byte, secretBytes), make([]byte, 16)
	for _, b := range [][]byte{id, secret, salt} {
		if _, err := rand.Read(b); err != nil {
			return NewKey{}, keyRecord{}, fmt.Errorf("gateway: making a key: %w", err)
		}
	}
	k := Key{ID: keyText.EncodeToString(id), Account: account, CreatedAt: now}
	rec := keyRecord{Key: k, Salt: salt, Hash: keyCost.hash(secret, salt), KDF: keyCost}
	return NewKey{Key: k, Secret: keyTag + k.ID + "_" + keyText.EncodeToString(secret)}, rec, nil
}

// parseKey splits an API key into its ID and secret; false if it is not
// one.
func parseKey(key string) (id string, secret []byte, ok bool) {
	rest, ok := strings.CutPrefix(key, keyTag)
	if !ok {
		return "", nil, false
	}
	id, text, ok := strings.Cut(rest, "_")
	if !ok {
		return "", nil, false
	}
	raw, err := keyText.DecodeString(id)
	if err != nil || len(raw) != keyIDBytes || keyText.EncodeToString(raw) != id {
		return "", nil, false
	}
	secret, err = keyText.DecodeString(text)
	if err != nil || len(secret) != secretBytes || keyText.EncodeToString(secret) != text {
		return "", nil, false
	}
	return id, secret, true
}

// errBadKey is the one answer to every key that does not authenticate,
// here and in the HTTP handler: missing, unknown, malformed, revoked or
// wrong. A caller learns nothing about which it was.
var errBadKey = fmt.Errorf("%w: missing or invalid API key (send Authorization: Bearer KEY)", api.ErrUnauthorized)

// Authenticate returns the account an API key belongs to. A key verified
// before is found in memory; otherwise its hash is computed, at most
// maxHashing at once, and once for all the requests that bring the same
// key while it is computed (verifier.flight): a client's burst on a member
// that has not verified its key yet, or after a snapshot emptied the
// cache, had 64 requests hash the one key, 4 at a time, for seconds of
// CPU. A caller whose ctx ends stops waiting; the hash goes on for the
// others, bounded by keyVerifyTimeout.
func (g *Gateway) Authenticate(ctx context.Context, key string) (string, error) {
	sum := sha256.Sum256([]byte(key))
	if acct, ok := g.keys.cached(sum); ok {
		return acct, nil
	}
	id, secret, ok := parseKey(key)
	if !ok {
		return "", errBadKey
	}
	for again := false; ; again = true {
		done := g.keys.flight.DoChan(string(sum[:]), func() (any, error) {
			vctx, cancel := context.WithTimeout(g.ctx, keyVerifyTimeout)
			defer cancel()
			return g.verifyKey(vctx, sum, id, secret)
		})
		select {
		case r := <-done:
			if r.Err != nil {
				return "", r.Err
			}
			// The verification this request joined may have begun before
			// the key was revoked: it is trusted if it was remembered, as
			// a revocation since it began would have kept it out of the
			// cache or dropped it; else the key is verified again, once.
			if _, ok := g.keys.cached(sum); ok || again {
				return r.Val.(string), nil
			}
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// keyVerifyTimeout bounds a key's shared verification: its record's
// lookup and its turn to hash.
const keyVerifyTimeout = 30 * time.Second

// verifyKey checks the key with id and secret against its record and
// remembers it, returning its account.
func (g *Gateway) verifyKey(ctx context.Context, sum [sha256.Size]byte, id string, secret []byte) (string, error) {
	if acct, ok := g.keys.cached(sum); ok { // verified by the flight that ended as this one began
		return acct, nil
	}
	epoch := g.keys.current()
	var rec keyRecord
	found, err := g.db.Lookup(keyKey(id), &rec)
	if err == nil && !found && g.fresh(ctx) == nil { // a key just made through another member
		found, err = g.db.Lookup(keyKey(id), &rec)
	}
	switch {
	case err != nil:
		return "", err
	case !found || rec.RevokedAt != nil:
		return "", errBadKey
	}
	match, err := g.keys.verify(ctx, rec, secret)
	switch {
	case err != nil:
		return "", err
	case !match:
		return "", errBadKey
	}
	g.keys.remember(sum, rec.ID, rec.Account, epoch)
	return rec.Account, nil
}

// AddKey makes another key of an account.
func (g *Gateway) AddKey(ctx context.Context, account string) (NewKey, error) {
	key, rec, err := makeKey(account, g.now())
	if err != nil {
		return NewKey{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	err = g.update(ctx, func(t *tx) error {
		if _, err := txFind[Account](t, accountName.MatchString(account), accountKey(account), "account", account); err != nil {
			return err
		}
		t.set(keyKey(rec.ID), rec)
		return nil
	})
	return key, err
}

// ListKeys lists an account's keys, revoked ones too, oldest first.
func (g *Gateway) ListKeys(ctx context.Context, account string) ([]Key, error) {
	if _, err := g.account(account); err != nil {
		return nil, err
	}
	var out []Key
	err := each(g.db, keyPrefix, func(_ string, rec keyRecord) error {
		if rec.Account == account {
			out = append(out, rec.Key)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b Key) int { return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID)) })
	return out, err
}

// RevokeKey makes a key fail at once, the keys verified in memory
// included; ErrConflict if it was revoked already.
func (g *Gateway) RevokeKey(ctx context.Context, account, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// The machine's change makes every member's cache forget the key.
	return g.update(ctx, func(t *tx) error {
		var rec keyRecord
		found, err := t.lookup(keyKey(id), &rec)
		switch {
		case err != nil:
			return err
		case !found || rec.Account != account:
			return notFound("key", id)
		case rec.RevokedAt != nil:
			return fmt.Errorf("%w: key %s was revoked at %s", api.ErrConflict, id, rec.RevokedAt.Format(time.RFC3339))
		}
		now := g.now()
		rec.RevokedAt = &now
		t.set(keyKey(id), rec)
		return nil
	})
}

// liveKeys counts the keys not revoked of each account.
func (g *Gateway) liveKeys() (map[string]int, error) {
	counts := map[string]int{}
	err := each(g.db, keyPrefix, func(_ string, rec keyRecord) error {
		if rec.RevokedAt == nil {
			counts[rec.Account]++
		}
		return nil
	})
	return counts, err
}

// Bounds of the verifier.
const (
	// maxCachedKeys bounds the keys verified kept in memory: about 100
	// bytes each.
	maxCachedKeys = 4096
	// maxHashing bounds the argon2id hashes computed at once, and so the
	// memory they take (19 MiB each).
	maxHashing = 4
)

// verifier checks keys against their hashes. Computing argon2id on every
// request would cost 20 to 40 ms and 19 MiB, so the keys verified are kept
// in a bounded cache, by the SHA-256 of the whole key (a key that differs
// in any byte misses it), until revoked; and a semaphore bounds the hashes
// computed at once, so a flood of wrong keys queues instead of taking the
// memory. Safe for concurrent use.
type verifier struct {
	sem    chan struct{}
	flight singleflight.Group // by the key's SHA-256: one verification at a time
	hashed atomic.Uint64      // hashes computed since the start: KeyHashes

	mu sync.Mutex
	// epoch counts revocations: a key verified while one happened is not
	// remembered, since the revocation may have missed it in the cache.
	epoch uint64
	cache map[[sha256.Size]byte]verified
}

type verified struct{ id, account string }

func newVerifier() *verifier {
	return &verifier{sem: make(chan struct{}, maxHashing), cache: map[[sha256.Size]byte]verified{}}
}

func (v *verifier) cached(sum [sha256.Size]byte) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	k, ok := v.cache[sum]
	return k.account, ok
}

func (v *verifier) current() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.epoch
}

// verify compares secret's hash with the record's in constant time,
// waiting for a turn to hash.
func (v *verifier) verify(ctx context.Context, rec keyRecord, secret []byte) (bool, error) {
	select {
	case v.sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-v.sem }()
	v.hashed.Add(1)
	return subtle.ConstantTimeCompare(rec.KDF.hash(secret, rec.Salt), rec.Hash) == 1, nil
}

// remember caches a key verified, unless a revocation happened since
// epoch. A full cache drops an entry it picks at random.
func (v *verifier) remember(sum [sha256.Size]byte, id, account string, epoch uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.epoch != epoch {
		return
	}
	if len(v.cache) >= maxCachedKeys {
		for k := range v.cache {
			delete(v.cache, k)
			break
		}
	}
	v.cache[sum] = verified{id: id, account: account}
}

// forget drops a revoked key from the cache.
// reset forgets every key verified (the records were replaced).
func (v *verifier) reset() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.epoch++
	clear(v.cache)
}

func (v *verifier) forget(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.epoch++
	for k, e := range v.cache {
		if e.id == id {
			delete(v.cache, k)
		}
	}
}

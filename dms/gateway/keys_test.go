package gateway

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
)

func TestAccounts(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	for _, bad := range []string{"", "Bob", "-bob", "bob/x", "bob_x", strings.Repeat("b", 64)} {
		_, _, err := r.g.CreateAccount(ctx, bad)
		if !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), accountRule) {
			t.Errorf("CreateAccount(%q): %v, want ErrBadRequest naming the rule", bad, err)
		}
	}
	if _, _, err := r.g.CreateAccount(ctx, "alice"); !errors.Is(err, api.ErrConflict) {
		t.Errorf("second alice: %v, want ErrConflict", err)
	}
	bob, key, err := r.g.CreateAccount(ctx, "bob-2")
	if err != nil || bob.Keys != 1 || !strings.HasPrefix(key.Secret, "dms_"+key.ID+"_") || key.Account != "bob-2" {
		t.Fatalf("CreateAccount: %+v %+v %v", bob, key, err)
	}
	accts, err := r.g.ListAccounts(ctx)
	if err != nil || len(accts) != 2 || accts[0].Name != "alice" || accts[1].Name != "bob-2" || accts[1].Keys != 1 {
		t.Fatalf("ListAccounts: %+v %v", accts, err)
	}
	if _, err := r.g.GetAccount(ctx, "carol"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("GetAccount(carol): %v", err)
	}
	if _, err := r.g.As(ctx, "carol"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("As(carol): %v", err)
	}
}

func TestKeys(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if acct, err := r.g.Authenticate(ctx, r.key); err != nil || acct != "alice" {
		t.Fatalf("Authenticate: %q %v", acct, err)
	}
	r.clock.Add(time.Second)
	second, err := r.g.AddKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if acct, err := r.g.Authenticate(ctx, second.Secret); err != nil || acct != "alice" {
		t.Fatalf("Authenticate the second key: %q %v", acct, err)
	}
	keys, err := r.g.ListKeys(ctx, "alice")
	if err != nil || len(keys) != 2 || keys[1].ID != second.ID {
		t.Fatalf("ListKeys: %+v %v", keys, err)
	}

	if err := r.g.RevokeKey(ctx, "alice", second.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.g.Authenticate(ctx, second.Secret); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("a revoked key, cached before: %v", err)
	}
	if err := r.g.RevokeKey(ctx, "alice", second.ID); !errors.Is(err, api.ErrConflict) {
		t.Errorf("revoking twice: %v", err)
	}
	if acct, err := r.g.Authenticate(ctx, r.key); err != nil || acct != "alice" {
		t.Fatalf("the first key after revoking the second: %q %v", acct, err)
	}
	if a, _ := r.g.GetAccount(ctx, "alice"); a.Keys != 1 {
		t.Errorf("alice has %d live keys, want 1", a.Keys)
	}
	if _, err := r.g.AddKey(ctx, "carol"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("AddKey(carol): %v", err)
	}
	if err := r.g.RevokeKey(ctx, "alice", "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("RevokeKey(nope): %v", err)
	}
}

func TestBadKeys(t *testing.T) {
	r := newRig(t)
	id, secret, ok := parseKey(r.key)
	if !ok {
		t.Fatalf("parseKey(%q) failed", r.key)
	}
	other, _ := newKeyText(t)
	wrongSecret := keyTag + id + "_" + other
	if len(wrongSecret) != len(r.key) || keyText.EncodeToString(secret) == other {
		t.Fatal("the wrong secret is not one")
	}
	bad := []string{
		"", "dms_", "dms__", r.key + "x", r.key[:len(r.key)-1], strings.ToUpper(r.key),
		"xyz_" + strings.TrimPrefix(r.key, "dms_"), strings.Replace(r.key, "_", "-", -1),
		keyTag + id, keyTag + id + "_", wrongSecret,
		keyTag + strings.Repeat("a", 26) + "_" + other, // an unknown ID
	}
	for _, k := range bad {
		acct, err := r.g.Authenticate(t.Context(), k)
		if !errors.Is(err, api.ErrUnauthorized) || err.Error() != errBadKey.Error() {
			t.Errorf("Authenticate(%q): %q, %v; want the one unauthorized error", k, acct, err)
		}
	}
}

// newKeyText returns a random secret in a key's text form.
func newKeyText(t *testing.T) (string, string) {
	k, _, err := makeKey("x", start)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, _ := parseKey(k.Secret)
	return keyText.EncodeToString(secret), k.ID
}

func TestKeyRevokedWhileVerifying(t *testing.T) {
	r := newRig(t)
	k, err := r.g.AddKey(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	// Verify and revoke at once: whichever comes first, the key revoked
	// is not found in the cache afterwards.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.g.Authenticate(t.Context(), k.Secret)
	}()
	go func() {
		defer wg.Done()
		if err := r.g.RevokeKey(t.Context(), "alice", k.ID); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	if _, err := r.g.Authenticate(t.Context(), k.Secret); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("revoked key: %v", err)
	}
}

func TestKeyIsStoredHashed(t *testing.T) {
	r := newRig(t)
	_, secret, _ := parseKey(r.key)
	text := keyText.EncodeToString(secret)
	err := r.db.Scan(keyPrefix, func(key string, v []byte) error {
		if strings.Contains(string(v), text) {
			t.Errorf("%s holds the secret: %s", key, v)
		}
		var rec keyRecord
		if err := r.db.Get(key, &rec); err != nil || rec.KDF != keyCost || len(rec.Salt) != 16 || len(rec.Hash) != 32 {
			t.Errorf("%s: %+v %v", key, rec, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifierCacheIsBounded(t *testing.T) {
	v := newVerifier()
	for i := range maxCachedKeys + 10 {
		v.remember([32]byte{byte(i), byte(i >> 8)}, "id", "acct", 0)
	}
	if len(v.cache) != maxCachedKeys {
		t.Fatalf("cache of %d keys, want %d", len(v.cache), maxCachedKeys)
	}
	v.forget("id")
	if len(v.cache) != 0 {
		t.Fatalf("cache of %d keys after forgetting their ID", len(v.cache))
	}
}

// A burst of requests with one key on a gateway that has not verified it
// yet hashes it once: the others wait for that hash instead of each
// computing their own (64 requests had hashed it 4 at a time, seconds of
// CPU on a member that had just joined a group).
func TestKeyHashedOnceForABurst(t *testing.T) {
	r := newRig(t)
	before := r.g.KeyHashes()
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			<-start
			if acct, err := r.g.Authenticate(t.Context(), r.key); err != nil || acct != "alice" {
				errs <- fmt.Errorf("Authenticate: %q, %v", acct, err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := r.g.KeyHashes() - before; n != 1 {
		t.Fatalf("64 requests with one key hashed it %d times, want 1", n)
	}
}

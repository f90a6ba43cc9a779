package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/opendms/dms/dms/api"
)

// HeaderIdempotencyKey names the header that makes a call run once: a
// call whose key an earlier call of the account used gets that call's
// answer, or 409 while it runs. Calls are at-least-once (one whose
// instance was lost with it in flight is sent to another); the key is
// what keeps a client's retry from running the function again. A key is
// kept as long as its task. Keys are per account, and per endpoint for
// calls through one: every caller of an endpoint open to anyone shares
// its keys, so such callers should send random keys (UUIDs).
const HeaderIdempotencyKey = "Idempotency-Key"

// maxIdempotencyKey bounds a key (Stripe's limit).
const maxIdempotencyKey = 255

// idemRetry is the Retry-After of a call whose key's call still runs.
const idemRetry = time.Second

// idemKey is the record of t's key: keys are per account, and per
// endpoint for a call through one.
func idemKey(t Task) string {
	sum := sha256.Sum256([]byte(t.Endpoint + "\x00" + t.Idempotency))
	return idemPrefix + t.Account + "/" + hex.EncodeToString(sum[:])
}

// checkIdempotencyKey reports a key that is too long or not printable
// ASCII.
func checkIdempotencyKey(key string) error {
	if len(key) > maxIdempotencyKey {
		return fmt.Errorf("%w: %s is %d bytes, at most %d", api.ErrBadRequest, HeaderIdempotencyKey, len(key), maxIdempotencyKey)
	}
	for i := range len(key) {
		if key[i] < 0x20 || key[i] > 0x7e {
			return fmt.Errorf("%w: %s holds a byte that is not printable ASCII", api.ErrBadRequest, HeaderIdempotencyKey)
		}
	}
	return nil
}

// replay answers a call whose key an earlier call used: that call's
// response or error, or 409 with Retry-After while it runs.
func (g *Gateway) replay(ctx context.Context, acct, earlier string) (Response, error) {
	t, err := g.task(acct, earlier)
	if err != nil {
		return Response{}, err
	}
	if !t.State.Terminal() {
		return Response{}, &api.RetryError{
			Err:   fmt.Errorf("%w: a call with this %s runs as task %s", api.ErrConflict, HeaderIdempotencyKey, t.ID),
			After: idemRetry,
		}
	}
	return (&scope{g: g, account: acct}).TaskResult(ctx, t.ID)
}

package gateway

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/policy"
)

// admit applies an endpoint's policy to a call from ip. A call refused
// gets the policy's reason (403, or 429 with Retry-After) and is not
// counted; one admitted is counted in the database before it runs. The
// count is read and written under the endpoint's stripe lock, so calls at
// once never pass the quota. An endpoint keeps one count, its latest
// day's: the first call of another day deletes it in the write of its own
// count, so only that call scans the endpoint's counts.
func (g *Gateway) admit(ep string, pol policy.Policy, ip netip.Addr) error {
	now := g.now()
	day := pol.Day(now)
	mu := g.stripe("ep:" + ep)
	mu.Lock()
	defer mu.Unlock()
	var used int
	found, err := g.db.Lookup(quotaKey(ep, day), &used)
	if err != nil {
		return err
	}
	if r := pol.Check(ip, now, used); r != nil {
		return refused(r)
	}
	var stale []string
	if !found {
		if stale, err = keys(g.db, quotasOf(ep)); err != nil {
			return err
		}
	}
	return g.db.Write(map[string]any{quotaKey(ep, day): used + 1}, stale)
}

// refused is the error of a call a policy refused: 403 or 429, with when
// to try again.
func refused(r *policy.Refusal) error {
	sentinel := api.ErrForbidden
	if r.Status == http.StatusTooManyRequests {
		sentinel = api.ErrTooManyRequests
	}
	return &api.RetryError{Err: fmt.Errorf("%w: %s", sentinel, r.Reason), After: r.RetryAfter}
}

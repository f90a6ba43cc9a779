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
// once never pass the quota, and the counts of other days go in the same
// write.
func (g *Gateway) admit(ep string, pol policy.Policy, ip netip.Addr) error {
	now := g.now()
	day := pol.Day(now)
	mu := g.stripe("ep:" + ep)
	mu.Lock()
	defer mu.Unlock()
	used, stale, err := g.quotaUsed(ep, day)
	if err != nil {
		return err
	}
	if r := pol.Check(ip, now, used); r != nil {
		return refused(r)
	}
	return g.db.Write(map[string]any{quotaKey(ep, day): used + 1}, stale)
}

// quotaUsed reads the calls counted on an endpoint's quota day, and the
// keys of the counts of other days.
func (g *Gateway) quotaUsed(ep, day string) (used int, stale []string, err error) {
	err = each(g.db, quotasOf(ep), func(key string, n int) error {
		if key == quotaKey(ep, day) {
			used = n
		} else {
			stale = append(stale, key)
		}
		return nil
	})
	return used, stale, err
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

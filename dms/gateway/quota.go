package gateway

import (
	"fmt"
	"net/http"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/policy"
)

// refused is the error of a call a policy refused: 403 or 429, with when
// to try again.
func refused(r *policy.Refusal) error {
	sentinel := api.ErrForbidden
	if r.Status == http.StatusTooManyRequests {
		sentinel = api.ErrTooManyRequests
	}
	return &api.RetryError{Err: fmt.Errorf("%w: %s", sentinel, r.Reason), After: r.RetryAfter}
}

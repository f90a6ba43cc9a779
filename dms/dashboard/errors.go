package dashboard

import (
	"errors"
	"fmt"

	"github.com/opendms/dms/dms/api"
)

var (
	// ErrNoService means a Config has no Service to show.
	ErrNoService = errors.New("dashboard: no service")

	errUnauthorized = fmt.Errorf("%w: missing or wrong bearer token (see api.json in the node's home)", api.ErrUnauthorized)
	errTooMany      = fmt.Errorf("%w: too many dashboard sessions or codes live: wait for some to expire", api.ErrTooManyRequests)
)

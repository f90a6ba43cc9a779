package api

import "errors"

var (
	// ErrNotFound means no job or blob has the given ID (HTTP 404).
	ErrNotFound = errors.New("api: not found")
	// ErrConflict means the request does not fit the job's state, such as
	// cancelling a finished job or reading the output of a running one (HTTP 409).
	ErrConflict = errors.New("api: conflict")
	// ErrUnauthorized means the bearer token is missing or wrong (HTTP 401).
	ErrUnauthorized = errors.New("api: unauthorized")
	// ErrBadRequest means a request other than a job spec is malformed, such
	// as a blob ID that is not a CID (HTTP 400).
	ErrBadRequest = errors.New("api: bad request")
	// ErrTooLarge means a request body is over its size limit (HTTP 413).
	ErrTooLarge = errors.New("api: request too large")
	// ErrPaymentRequired means the account has no credits available for
	// the work asked: a call or job is refused before any provider is
	// engaged; the message says the account's balance (HTTP 402).
	ErrPaymentRequired = errors.New("api: payment required")
	// ErrForbidden means the caller is known but may not do this: an
	// endpoint policy refused the call (HTTP 403).
	ErrForbidden = errors.New("api: forbidden")
	// ErrTooManyRequests means a quota or a queue is full; the response's
	// Retry-After says when to try again (HTTP 429).
	ErrTooManyRequests = errors.New("api: too many requests")
	// ErrHeadersTooLarge means a call's headers do not fit in the
	// program's environment (HTTP 431).
	ErrHeadersTooLarge = errors.New("api: request headers too large")
	// ErrBadGateway means the program behind a call failed: it trapped,
	// exited non-zero or wrote a malformed response (HTTP 502).
	ErrBadGateway = errors.New("api: bad gateway")
	// ErrUnavailable means no provider can run the call now; the message
	// sums up why each declined (HTTP 503).
	ErrUnavailable = errors.New("api: service unavailable")
	// ErrGatewayTimeout means the program ran past its timeout (HTTP 504).
	ErrGatewayTimeout = errors.New("api: gateway timeout")
	// ErrNotLoopback means Serve was asked to listen on a non-loopback address.
	ErrNotLoopback = errors.New("api: not a loopback address")
	// ErrNoDaemon means a home has no api.json: no daemon is running there.
	ErrNoDaemon = errors.New("api: no running daemon")
)

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
	// ErrNotLoopback means Serve was asked to listen on a non-loopback address.
	ErrNotLoopback = errors.New("api: not a loopback address")
	// ErrNoDaemon means a home has no api.json: no daemon is running there.
	ErrNoDaemon = errors.New("api: no running daemon")
)

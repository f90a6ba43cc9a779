package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/opendms/dms/jobs"
)

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error    string    `json:"error"`
	Problems []problem `json:"problems,omitempty"`
	Doc      string    `json:"doc,omitempty"` // what the problems are of: "flow spec"; "" for a job spec
}

// problem is a jobs.FieldError on the wire.
type problem struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

func toProblems(fes []jobs.FieldError) []problem {
	out := make([]problem, len(fes))
	for i, fe := range fes {
		out[i] = problem{Field: fe.Field, Problem: fe.Problem}
	}
	return out
}

func fromProblems(ps []problem) []jobs.FieldError {
	out := make([]jobs.FieldError, len(ps))
	for i, p := range ps {
		out[i] = jobs.FieldError{Field: p.Field, Problem: p.Problem}
	}
	return out
}

// reply writes v as JSON with status, or the error if err is not nil.
func (h *handler) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, status, v)
}

// fail writes err with the status it maps to.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	WriteError(w, r, err, h.logger)
}

// WriteError writes err as the API's JSON error body with the status it
// maps to (the one table, statusErrors), and Retry-After when err is a
// Retryer. Server-side failures are logged.
func WriteError(w http.ResponseWriter, r *http.Request, err error, logger *slog.Logger) {
	status := StatusOf(err)
	body := errorBody{Error: err.Error()}
	var specErr *jobs.SpecError
	if errors.As(err, &specErr) {
		body.Problems, body.Doc = toProblems(specErr.Problems), specErr.Doc
	}
	var retry Retryer
	if errors.As(err, &retry) && retry.RetryAfter() > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(retry.RetryAfter().Seconds())), 10))
	}
	if status == http.StatusInternalServerError {
		logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	WriteJSON(w, status, body)
}

// statusErrors pairs each HTTP status with the errors that map to it. The
// first error listed for a status is the one a Client's error matches.
var statusErrors = []struct {
	status int
	err    error
}{
	{http.StatusNotFound, ErrNotFound},
	{http.StatusConflict, ErrConflict},
	{http.StatusUnauthorized, ErrUnauthorized},
	{http.StatusRequestEntityTooLarge, ErrTooLarge},
	{http.StatusBadRequest, ErrBadRequest},
	{http.StatusBadRequest, jobs.ErrInvalidSpec},
	{http.StatusPaymentRequired, ErrPaymentRequired},
	{http.StatusForbidden, ErrForbidden},
	{http.StatusTooManyRequests, ErrTooManyRequests},
	{http.StatusRequestHeaderFieldsTooLarge, ErrHeadersTooLarge},
	{http.StatusBadGateway, ErrBadGateway},
	{http.StatusServiceUnavailable, ErrUnavailable},
	{http.StatusGatewayTimeout, ErrGatewayTimeout},
}

// Retryer is an error that tells the client when to try again: its
// response carries a Retry-After header (429, 503).
type Retryer interface {
	error
	RetryAfter() time.Duration
}

// RetryError wraps an error with the time after which a retry may succeed.
type RetryError struct {
	Err   error
	After time.Duration
}

func (e *RetryError) Error() string             { return e.Err.Error() }
func (e *RetryError) Unwrap() error             { return e.Err }
func (e *RetryError) RetryAfter() time.Duration { return e.After }

// StatusOf maps an error to its HTTP status.
func StatusOf(err error) int {
	for _, se := range statusErrors {
		if errors.Is(err, se.err) {
			return se.status
		}
	}
	if errors.Is(err, context.Canceled) {
		return 499 // the client left; nobody reads this status
	}
	return http.StatusInternalServerError
}

// WriteJSON writes v as a JSON body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/opendms/dms/jobs"
)

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error    string    `json:"error"`
	Problems []problem `json:"problems,omitempty"`
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
	writeJSON(w, status, v)
}

// fail writes err with the status it maps to. Server-side failures are logged.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	body := errorBody{Error: err.Error()}
	var specErr *jobs.SpecError
	if errors.As(err, &specErr) {
		body.Problems = toProblems(specErr.Problems)
	}
	if status == http.StatusInternalServerError {
		h.logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, body)
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
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

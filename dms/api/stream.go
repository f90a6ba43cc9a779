package api

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// streamNDJSON writes each event as a line of JSON, flushed, until the
// channel closes, the client leaves or the server stops.
func streamNDJSON[T any](w http.ResponseWriter, r *http.Request, events <-chan T) {
	ctx := r.Context()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil { // the client has its answer before the first event
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if enc.Encode(ev) != nil || rc.Flush() != nil {
				return // the client left; ctx ends the watch
			}
		case <-ctx.Done():
			return
		case <-stopping(ctx):
			return
		}
	}
}

// stream names one of a job's two output streams.
type stream string

const (
	streamStdout stream = "stdout"
	streamStderr stream = "stderr"
)

// jobOutput serves a finished job's stdout or stderr blob.
func (h *handler) jobOutput(s stream) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		job, err := h.svc.GetJob(r.Context(), r.PathValue("id"))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		c, err := outputCID(job, s)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		data, err := h.svc.GetBlob(r.Context(), c)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeBytes(w, data)
	}
}

// outputCID returns the CID of a job's output stream: ErrConflict while the
// job runs, ErrNotFound when it ended without a result.
func outputCID(job Job, s stream) (string, error) {
	switch {
	case job.Result != nil && s == streamStdout:
		return job.Result.Stdout, nil
	case job.Result != nil:
		return job.Result.Stderr, nil
	case !job.State.Terminal():
		return "", fmt.Errorf("%w: job %s is %s: no %s yet", ErrConflict, job.ID, job.State, s)
	}
	return "", fmt.Errorf("%w: job %s ended %s without a result", ErrNotFound, job.ID, job.State)
}

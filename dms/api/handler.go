package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/opendms/dms/jobs"
)

// MaxBlobSize bounds a blob uploaded with POST /v1/blobs. A spec sent with
// POST /v1/jobs is bounded by jobs.MaxSpecSize.
const MaxBlobSize = 256 << 20

// handler serves the API over a Service.
type handler struct {
	svc     Service
	token   []byte
	logger  *slog.Logger
	maxBlob int64
}

// NewHandler returns the API's HTTP handler over svc. Every request must carry
// "Authorization: Bearer <token>"; an empty token refuses every request. A nil
// logger discards.
func NewHandler(svc Service, token string, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{svc: svc, token: []byte(token), logger: logger, maxBlob: MaxBlobSize}
	return h.routes()
}

func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	svc := h.svc
	mux.HandleFunc("POST /v1/jobs", submitting(h, jobs.Parse, requireCIDs, svc.SubmitJob))
	mux.HandleFunc("GET /v1/jobs", listing(h, svc.ListJobs))
	mux.HandleFunc("GET /v1/jobs/{id}", getting(h, svc.GetJob))
	mux.HandleFunc("GET /v1/jobs/{id}/events", watching(h, svc.WatchJob))
	mux.HandleFunc("GET /v1/jobs/{id}/stdout", h.jobOutput(streamStdout))
	mux.HandleFunc("GET /v1/jobs/{id}/stderr", h.jobOutput(streamStderr))
	mux.HandleFunc("DELETE /v1/jobs/{id}", h.acting("id", svc.CancelJob))
	mux.HandleFunc("GET /v1/jobs/{id}/receipts", getting(h, svc.JobReceipts))
	mux.HandleFunc("GET /v1/jobs/{id}/trace", getting(h, svc.JobTrace))
	mux.HandleFunc("GET /v1/traces/{id}", getting(h, svc.CallTrace))
	mux.HandleFunc("GET /v1/earnings", h.earnings)
	mux.HandleFunc("POST /v1/flows", submitting(h, jobs.ParseFlow, requireFlowCIDs, svc.SubmitFlow))
	mux.HandleFunc("GET /v1/flows", listing(h, svc.ListFlows))
	mux.HandleFunc("GET /v1/flows/{id}", getting(h, svc.GetFlow))
	mux.HandleFunc("GET /v1/flows/{id}/events", watching(h, svc.WatchFlow))
	mux.HandleFunc("DELETE /v1/flows/{id}", h.acting("id", svc.CancelFlow))
	mux.HandleFunc("POST /v1/batches", submitting(h, jobs.ParseBatch, requireBatchCIDs, svc.SubmitBatch))
	mux.HandleFunc("GET /v1/batches", listing(h, svc.ListBatches))
	mux.HandleFunc("GET /v1/batches/{id}", getting(h, svc.GetBatch))
	mux.HandleFunc("GET /v1/batches/{id}/events", watching(h, svc.WatchBatch))
	mux.HandleFunc("GET /v1/batches/{id}/units", h.batchUnits)
	mux.HandleFunc("DELETE /v1/batches/{id}", h.acting("id", svc.CancelBatch))
	mux.HandleFunc("POST /v1/blobs", h.putBlob)
	mux.HandleFunc("GET /v1/blobs/{cid}", h.getBlob)
	mux.HandleFunc("HEAD /v1/blobs/{cid}", h.hasBlob)
	mux.HandleFunc("GET /v1/node", answering(h, svc.Node))
	mux.HandleFunc("POST /v1/node/benchmark", answering(h, svc.Benchmark))
	mux.HandleFunc("GET /v1/node/allocations", paging(h, "state", svc.NodeAllocations))
	mux.HandleFunc("GET /v1/node/locks", answering(h, svc.NodeLocks))
	mux.HandleFunc("GET /v1/node/bids", paging(h, "outcome", svc.NodeBids))
	mux.HandleFunc("GET /v1/peers", listing(h, svc.Peers))
	mux.HandleFunc("GET /v1/peers/reputation", listing(h, svc.Reputation))
	mux.HandleFunc("POST /v1/peers/reputation/{peer}/forgive", h.acting("peer", svc.ForgivePeer))
	mux.HandleFunc("GET /v1/store", answering(h, svc.StoreInfo))
	mux.HandleFunc("POST /v1/store/gc", answering(h, svc.CollectGarbage))
	mux.HandleFunc("PUT /v1/store/pins/{cid}", h.pin)
	mux.HandleFunc("DELETE /v1/store/pins/{cid}", h.unpin)
	return LogRequests(h.logger, "api request", h.authorized(mux))
}

// authorized refuses a request without the right bearer token.
func (h *handler) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || len(h.token) == 0 || subtle.ConstantTimeCompare([]byte(got), h.token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dms"`)
			h.fail(w, r, fmt.Errorf("%w: missing or wrong bearer token (see api.json in the node's home)", ErrUnauthorized))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LogRequests logs every request next serves at debug level, as msg.
func LogRequests(logger *slog.Logger, msg string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		logger.Debug(msg, "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start))
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer (to flush).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// submitting serves the submission of a spec (a job's, a flow's, a
// batch's) of at most jobs.MaxSpecSize bytes: parse reads it, check
// refuses what names local files, submit starts it; 201 and what submit
// returns.
func submitting[S, T any](h *handler, parse func([]byte) (S, error), check func(S) error, submit func(context.Context, S) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, jobs.MaxSpecSize))
		if err != nil {
			h.fail(w, r, bodyError(err))
			return
		}
		spec, err := parse(data)
		if err == nil {
			err = check(spec)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		v, err := submit(r.Context(), spec)
		h.reply(w, r, http.StatusCreated, v, err)
	}
}

// replyList replies with list, as [] rather than null when empty.
func replyList[T any](h *handler, w http.ResponseWriter, r *http.Request, list []T, err error) {
	if list == nil {
		list = []T{}
	}
	h.reply(w, r, http.StatusOK, list, err)
}

// listing serves what list returns.
func listing[T any](h *handler, list func(context.Context) ([]T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		l, err := list(r.Context())
		replyList(h, w, r, l, err)
	}
}

// answering serves what ask returns.
func answering[T any](h *handler, ask func(context.Context) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := ask(r.Context())
		h.reply(w, r, http.StatusOK, v, err)
	}
}

// getting serves what get returns of the request's {id}.
func getting[T any](h *handler, get func(context.Context, string) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := get(r.Context(), r.PathValue("id"))
		h.reply(w, r, http.StatusOK, v, err)
	}
}

// watching streams what watch sends of the request's {id} as NDJSON, one
// value per line, flushed as it is written, until the channel closes (what
// is watched ended), the client leaves or the server stops.
func watching[T any](h *handler, watch func(context.Context, string) (<-chan T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		events, err := watch(r.Context(), r.PathValue("id"))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		streamNDJSON(w, r, events)
	}
}

// acting does what do does to the request's {key} (cancel an ID, forgive
// a peer), and answers 204 once it is done.
func (h *handler) acting(key string, do func(context.Context, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := do(r.Context(), r.PathValue(key)); err != nil {
			h.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (h *handler) putBlob(w http.ResponseWriter, r *http.Request) {
	c, err := h.svc.PutBlob(r.Context(), http.MaxBytesReader(w, r.Body, h.maxBlob))
	if err != nil {
		err = bodyError(err)
	}
	h.reply(w, r, http.StatusCreated, map[string]string{"cid": c}, err)
}

func (h *handler) getBlob(w http.ResponseWriter, r *http.Request) {
	c := r.PathValue("cid")
	if !isCID(c) {
		h.fail(w, r, fmt.Errorf("%w: %q is not a CID", ErrBadRequest, c))
		return
	}
	data, err := h.svc.GetBlob(r.Context(), c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeBytes(w, data)
}

// hasBlob answers 200 when the node holds the blob, 404 when it does not.
func (h *handler) hasBlob(w http.ResponseWriter, r *http.Request) {
	c := r.PathValue("cid")
	if !isCID(c) {
		h.fail(w, r, fmt.Errorf("%w: %q is not a CID", ErrBadRequest, c))
		return
	}
	ok, err := h.svc.HasBlob(r.Context(), c)
	if err == nil && !ok {
		err = fmt.Errorf("%w: blob %s", ErrNotFound, c)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *handler) pin(w http.ResponseWriter, r *http.Request) {
	h.pinning(w, r, h.svc.Pin)
}

func (h *handler) unpin(w http.ResponseWriter, r *http.Request) {
	h.pinning(w, r, h.svc.Unpin)
}

// pinning calls pin or unpin with the request's CID; 204 when it is done.
func (h *handler) pinning(w http.ResponseWriter, r *http.Request, do func(context.Context, string) error) {
	c := r.PathValue("cid")
	if !isCID(c) {
		h.fail(w, r, fmt.Errorf("%w: %q is not a CID", ErrBadRequest, c))
		return
	}
	if err := do(r.Context(), c); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// bodyError turns a body over its limit into ErrTooLarge.
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return fmt.Errorf("%w: body over %d bytes", ErrTooLarge, tooLarge.Limit)
	}
	return err
}

func writeBytes(w http.ResponseWriter, data []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// requireCIDs checks that a spec names its module and input archive by CID:
// the daemon cannot read the client's files.
func requireCIDs(spec *jobs.Spec) error {
	var problems []jobs.FieldError
	if _, ok := spec.ModuleCID(); !ok && spec.Module != "" || spec.Executor != "docker" && spec.Module == "" {
		problems = append(problems, jobs.FieldError{Field: "module",
			Problem: fmt.Sprintf("%q is not a CID: upload the module with POST /v1/blobs and give its CID", spec.Module)})
	}
	if _, ok := spec.ImageArchiveCID(); !ok && spec.ImageArchive != "" {
		problems = append(problems, jobs.FieldError{Field: "image_archive",
			Problem: fmt.Sprintf("%q is not a CID: upload the archive with POST /v1/blobs and give its CID", spec.ImageArchive)})
	}
	if spec.InputDir != "" && !isCID(spec.InputDir) {
		problems = append(problems, jobs.FieldError{Field: "input_dir",
			Problem: fmt.Sprintf("%q is not a CID: upload a tar archive of the directory with POST /v1/blobs and give its CID", spec.InputDir)})
	}
	if len(problems) > 0 {
		return &jobs.SpecError{Problems: problems}
	}
	return nil
}

func isCID(s string) bool {
	_, err := cid.Decode(s)
	return err == nil
}

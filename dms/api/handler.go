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
	mux.HandleFunc("POST /v1/jobs", h.submitJob)
	mux.HandleFunc("GET /v1/jobs", h.listJobs)
	mux.HandleFunc("GET /v1/jobs/{id}", h.getJob)
	mux.HandleFunc("GET /v1/jobs/{id}/events", h.watchJob)
	mux.HandleFunc("GET /v1/jobs/{id}/stdout", h.jobOutput(streamStdout))
	mux.HandleFunc("GET /v1/jobs/{id}/stderr", h.jobOutput(streamStderr))
	mux.HandleFunc("DELETE /v1/jobs/{id}", h.cancelJob)
	mux.HandleFunc("POST /v1/flows", h.submitFlow)
	mux.HandleFunc("GET /v1/flows", h.listFlows)
	mux.HandleFunc("GET /v1/flows/{id}", h.getFlow)
	mux.HandleFunc("GET /v1/flows/{id}/events", h.watchFlow)
	mux.HandleFunc("DELETE /v1/flows/{id}", h.cancelFlow)
	mux.HandleFunc("POST /v1/batches", h.submitBatch)
	mux.HandleFunc("GET /v1/batches", h.listBatches)
	mux.HandleFunc("GET /v1/batches/{id}", h.getBatch)
	mux.HandleFunc("GET /v1/batches/{id}/events", h.watchBatch)
	mux.HandleFunc("GET /v1/batches/{id}/units", h.batchUnits)
	mux.HandleFunc("DELETE /v1/batches/{id}", h.cancelBatch)
	mux.HandleFunc("POST /v1/blobs", h.putBlob)
	mux.HandleFunc("GET /v1/blobs/{cid}", h.getBlob)
	mux.HandleFunc("HEAD /v1/blobs/{cid}", h.hasBlob)
	mux.HandleFunc("GET /v1/node", h.node)
	mux.HandleFunc("POST /v1/node/benchmark", h.benchmark)
	mux.HandleFunc("GET /v1/peers", h.peers)
	mux.HandleFunc("GET /v1/peers/reputation", h.reputation)
	mux.HandleFunc("POST /v1/peers/reputation/{peer}/forgive", h.forgive)
	mux.HandleFunc("GET /v1/store", h.storeInfo)
	mux.HandleFunc("POST /v1/store/gc", h.collect)
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

func (h *handler) submitJob(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, jobs.MaxSpecSize))
	if err != nil {
		h.fail(w, r, bodyError(err))
		return
	}
	spec, err := jobs.Parse(data)
	if err == nil {
		err = requireCIDs(spec)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	job, err := h.svc.SubmitJob(r.Context(), spec)
	h.reply(w, r, http.StatusCreated, job, err)
}

func (h *handler) listJobs(w http.ResponseWriter, r *http.Request) {
	list, err := h.svc.ListJobs(r.Context())
	replyList(h, w, r, list, err)
}

// replyList replies with list, as [] rather than null when empty.
func replyList[T any](h *handler, w http.ResponseWriter, r *http.Request, list []T, err error) {
	if list == nil {
		list = []T{}
	}
	h.reply(w, r, http.StatusOK, list, err)
}

func (h *handler) getJob(w http.ResponseWriter, r *http.Request) {
	job, err := h.svc.GetJob(r.Context(), r.PathValue("id"))
	h.reply(w, r, http.StatusOK, job, err)
}

func (h *handler) cancelJob(w http.ResponseWriter, r *http.Request) {
	if err := h.svc.CancelJob(r.Context(), r.PathValue("id")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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

func (h *handler) node(w http.ResponseWriter, r *http.Request) {
	info, err := h.svc.Node(r.Context())
	h.reply(w, r, http.StatusOK, info, err)
}

func (h *handler) benchmark(w http.ResponseWriter, r *http.Request) {
	info, err := h.svc.Benchmark(r.Context())
	h.reply(w, r, http.StatusOK, info, err)
}

func (h *handler) peers(w http.ResponseWriter, r *http.Request) {
	list, err := h.svc.Peers(r.Context())
	replyList(h, w, r, list, err)
}

func (h *handler) reputation(w http.ResponseWriter, r *http.Request) {
	list, err := h.svc.Reputation(r.Context())
	replyList(h, w, r, list, err)
}

func (h *handler) forgive(w http.ResponseWriter, r *http.Request) {
	if err := h.svc.ForgivePeer(r.Context(), r.PathValue("peer")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) storeInfo(w http.ResponseWriter, r *http.Request) {
	info, err := h.svc.StoreInfo(r.Context())
	h.reply(w, r, http.StatusOK, info, err)
}

func (h *handler) collect(w http.ResponseWriter, r *http.Request) {
	col, err := h.svc.CollectGarbage(r.Context())
	h.reply(w, r, http.StatusOK, col, err)
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

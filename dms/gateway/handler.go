package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/opendms/dms/dms/api"
)

// Body limits of the management API. A call's body is limited by its
// revision's MaxBody, which Invoke enforces while it reads.
const (
	MaxJSONBody   = 1 << 20   // a JSON request body (deploy, endpoint spec...)
	MaxModuleBody = 256 << 20 // a module uploaded with POST /v1/blobs
)

// jsonReadTimeout bounds the reading of a JSON body, so a client that
// trickles one cannot hold a handler (the server has no ReadTimeout: see
// Serve).
const jsonReadTimeout = 30 * time.Second

// Backend is what the handler serves. *Gateway implements it.
type Backend interface {
	Admin
	// As is one account's Service; api.ErrNotFound for an unknown account.
	As(ctx context.Context, account string) (Service, error)
	// Authenticate returns the account of an API key; api.ErrUnauthorized
	// for a key that is malformed, unknown or revoked.
	Authenticate(ctx context.Context, key string) (string, error)
	// CallEndpoint runs a call through an endpoint's policies. key is the
	// caller's bearer key, "" without one; an endpoint with auth "key"
	// checks it.
	CallEndpoint(ctx context.Context, name string, call Call, key string) (Response, error)
}

// HandlerConfig configures NewHandler.
type HandlerConfig struct {
	// AdminToken is the node's API token. Set (on the node's loopback
	// API), it serves the admin routes and may act as any account named
	// by a DMS-Account header. Empty (the public gateway listener): there
	// are no admin routes, and a token sent anyway is just an unknown key.
	AdminToken string
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// an endpoint's caller address is worked out. Empty: none.
	TrustedProxies []netip.Prefix
	// Logger logs failed requests (and every request at debug level); nil
	// discards.
	Logger *slog.Logger
}

// handler serves the gateway's HTTP side over a Backend.
type handler struct {
	b         Backend
	token     []byte
	trusted   []netip.Prefix
	logger    *slog.Logger
	maxModule int64 // MaxModuleBody; tests lower it
}

// NewHandler returns the gateway's HTTP handler: the management API under
// /v1 for accounts (API keys, or the admin token with DMS-Account), the
// admin routes when c.AdminToken is set, and endpoints under /e/NAME/.
// Every error the gateway writes is JSON and carries "DMS-Error: 1".
func NewHandler(b Backend, c HandlerConfig) http.Handler {
	return newHandler(b, c).routes()
}

func newHandler(b Backend, c HandlerConfig) *handler {
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &handler{b: b, token: []byte(c.AdminToken), trusted: c.TrustedProxies, logger: logger, maxModule: MaxModuleBody}
}

func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	account := func(pattern string, fn accountFunc) { mux.Handle(pattern, h.asAccount(fn)) }
	account("POST /v1/blobs", h.putModule)
	account("POST /v1/functions", h.deploy)
	account("GET /v1/functions", h.listFunctions)
	account("GET /v1/functions/{name}", h.getFunction)
	account("DELETE /v1/functions/{name}", h.deleteFunction)
	account("GET /v1/functions/{name}/revisions", h.revisions)
	account("PUT /v1/functions/{name}/default", h.setDefault)
	account("PUT /v1/functions/{name}/tags", h.setTags)
	account("PUT /v1/functions/{name}/scaling", h.setScaling)
	account("GET /v1/functions/{name}/instances", h.instances)
	account("/v1/functions/{name}/invoke", h.invoke)
	account("/v1/functions/{name}/invoke/{path...}", h.invoke)
	account("POST /v1/endpoints", h.createEndpoint)
	account("GET /v1/endpoints", h.listEndpoints)
	account("GET /v1/endpoints/{name}", h.getEndpoint)
	account("PUT /v1/endpoints/{name}", h.updateEndpoint)
	account("DELETE /v1/endpoints/{name}", h.deleteEndpoint)
	account("GET /v1/tasks", h.listTasks)
	account("GET /v1/tasks/{id}", h.getTask)
	account("POST /v1/tasks/{id}/stop", h.stopTask)
	account("GET /v1/tasks/{id}/result", h.taskResult)
	account("GET /v1/tags", h.listTags)
	if len(h.token) > 0 {
		admin := func(pattern string, fn http.HandlerFunc) { mux.Handle(pattern, h.asAdmin(fn)) }
		admin("POST /v1/accounts", h.createAccount)
		admin("GET /v1/accounts", h.listAccounts)
		admin("GET /v1/accounts/{name}", h.getAccount)
		admin("POST /v1/payouts", h.payout)
		admin("GET /v1/payouts", h.statements)
		admin("POST /v1/accounts/{name}/credits", h.credit)
		admin("PUT /v1/accounts/{name}/limit", h.setLimit)
		admin("POST /v1/accounts/{name}/keys", h.addKey)
		admin("GET /v1/accounts/{name}/keys", h.listKeys)
		admin("DELETE /v1/accounts/{name}/keys/{id}", h.revokeKey)
		admin("GET /v1/invoices", h.listInvoices)
		admin("GET /v1/invoices/{account}/{period}", h.getInvoice)
		admin("POST /v1/invoices/{account}/{period}/close", h.closeInvoice)
		admin("GET /v1/gateway/group", h.getGroup)
		admin("POST /v1/gateway/group/members", h.addMember)
		admin("DELETE /v1/gateway/group/members/{id}", h.removeMember)
	}
	mux.HandleFunc("/e/{name}", h.callEndpoint)
	mux.HandleFunc("/e/{name}/{path...}", h.callEndpoint)
	mux.HandleFunc("/", h.noRoute)
	return api.LogRequests(h.logger, "gateway request", mux)
}

// accountFunc serves a route for the account the request acts as.
type accountFunc func(w http.ResponseWriter, r *http.Request, svc Service)

// asAccount works out the account a request acts as and serves it:
//   - the admin token (only when one is configured) acts as the account
//     named by DMS-Account, which it must carry;
//   - any other bearer is an API key and acts as its own account; a
//     DMS-Account header beside it is refused (400), never followed, so a
//     key can never reach past its account.
func (h *handler) asAccount(fn accountFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, err := h.accountOf(r)
		var svc Service
		if err == nil {
			svc, err = h.b.As(r.Context(), name)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		fn(w, r, svc)
	})
}

// accountOf is the account a request's credentials act as.
func (h *handler) accountOf(r *http.Request) (string, error) {
	secret, ok := bearer(r)
	if !ok {
		return "", errBadKey
	}
	named := r.Header.Values(HeaderAccount)
	if h.isAdmin(secret) {
		if len(named) != 1 || named[0] == "" {
			return "", fmt.Errorf("%w: the admin token acts as an account only with one %s: NAME header", api.ErrBadRequest, HeaderAccount)
		}
		return named[0], nil
	}
	account, err := h.b.Authenticate(r.Context(), secret)
	if errors.Is(err, api.ErrUnauthorized) {
		return "", errBadKey
	}
	if err != nil {
		return "", err
	}
	if len(named) > 0 {
		return "", fmt.Errorf("%w: an API key acts as its own account: drop the %s header", api.ErrBadRequest, HeaderAccount)
	}
	return account, nil
}

// asAdmin serves a route to the admin token only.
func (h *handler) asAdmin(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if secret, ok := bearer(r); !ok || !h.isAdmin(secret) {
			h.fail(w, r, fmt.Errorf("%w: missing or wrong admin token (see api.json in the node's home)", api.ErrUnauthorized))
			return
		}
		next(w, r)
	})
}

// isAdmin compares secret with the admin token in constant time; no token
// configured matches nothing.
func (h *handler) isAdmin(secret string) bool {
	return len(h.token) > 0 && subtle.ConstantTimeCompare([]byte(secret), h.token) == 1
}

// bearer is the request's bearer credential: one Authorization header
// "Bearer X" (the scheme in any case) with a non-empty X without spaces.
func bearer(r *http.Request) (string, bool) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return "", false
	}
	scheme, secret, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" || strings.ContainsAny(secret, " \t") {
		return "", false
	}
	return secret, true
}

// fail writes err as a gateway error: dms/api's JSON body and status,
// DMS-Error, DMS-Task when err carries a task, and the Bearer challenge
// on a 401.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set(HeaderError, "1")
	var callErr *CallError
	if errors.As(err, &callErr) && callErr.Task != "" {
		w.Header().Set(HeaderTask, callErr.Task)
	}
	if api.StatusOf(err) == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dms-gateway"`)
	}
	api.WriteError(w, r, err, h.logger)
}

// reply writes v as JSON with status, or the error if err is not nil.
func (h *handler) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.WriteJSON(w, status, v)
}

// replyList replies with list, as [] rather than null when empty.
func replyList[T any](h *handler, w http.ResponseWriter, r *http.Request, list []T, err error) {
	if list == nil {
		list = []T{}
	}
	h.reply(w, r, http.StatusOK, list, err)
}

// replyNone answers 204, or the error.
func (h *handler) replyNone(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) noRoute(w http.ResponseWriter, r *http.Request) {
	h.fail(w, r, fmt.Errorf("%w: no route %s %s", api.ErrNotFound, r.Method, r.URL.Path))
}

// readJSON decodes the request's JSON body into v: at most MaxJSONBody
// bytes (else 413), one value, no unknown fields, read within
// jsonReadTimeout. Each problem is a 400 that names it.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(jsonReadTimeout)) // unsupported outside a server: then unbounded
	defer rc.SetReadDeadline(time.Time{})               // a later read (or the server's) must not trip on it
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxJSONBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, next := dec.Token(); next != io.EOF {
			err = errors.New("more than one JSON value")
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: request body over %d bytes", api.ErrTooLarge, tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: request body is empty: want a JSON object", api.ErrBadRequest)
	default:
		return fmt.Errorf("%w: request body: %w", api.ErrBadRequest, err)
	}
}

// pathName is the path value key when it is a plausible name: not empty,
// not . or .., without slashes or control characters (a name is a path
// segment of its own on the wire). The Gateway checks its own rules.
func pathName(r *http.Request, key string) (string, error) {
	name := r.PathValue(key)
	bad := name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) ||
		strings.ContainsFunc(name, func(c rune) bool { return c < 0x20 || c == 0x7f })
	if bad {
		return "", fmt.Errorf("%w: %q is not a valid %s", api.ErrBadRequest, name, key)
	}
	return name, nil
}

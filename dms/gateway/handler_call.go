package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/policy"
)

// The segments before a call's own path: /v1/functions/NAME/invoke and
// /e/NAME.
const (
	invokeSegments   = 4
	endpointSegments = 2
)

// invoke serves /v1/functions/{name}/invoke[/{path...}] for any method.
// The gateway's own parameters, ?rev=N and ?async=1, are taken out of the
// query; everything else goes on to the function.
func (h *handler) invoke(w http.ResponseWriter, r *http.Request, svc Service) {
	name, err := pathName(r, "name")
	var q invokeParams
	if err == nil {
		q, err = invokeQuery(r.URL.RawQuery)
	}
	var call Call
	if err == nil {
		call, err = h.newCall(r, invokeSegments, q.rest)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	call.Revision = q.rev
	if !q.async {
		resp, err := svc.Invoke(r.Context(), name, call)
		h.respond(w, r, resp, err)
		return
	}
	task, err := svc.InvokeAsync(r.Context(), name, call)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/tasks/"+url.PathEscape(task.ID))
	w.Header().Set(HeaderTask, task.ID)
	api.WriteJSON(w, http.StatusAccepted, task)
}

// callEndpoint serves /e/{name}[/{path...}] for any method. The HTTP layer
// asks for no credentials: the endpoint's policies decide, with the bearer
// key if the caller sent one.
func (h *handler) callEndpoint(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	var call Call
	if err == nil {
		call, err = h.newCall(r, endpointSegments, r.URL.RawQuery)
	}
	var resp Response
	if err == nil {
		key, _ := bearer(r)
		resp, err = h.b.CallEndpoint(r.Context(), name, call, key)
	}
	h.respond(w, r, resp, err)
}

// newCall is the Call of a request to an invoke or endpoint route whose
// prefix is its first prefix segments, with rawQuery as its query. The
// body streams on; the credentials stay here.
func (h *handler) newCall(r *http.Request, prefix int, rawQuery string) (Call, error) {
	ip, err := policy.ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), h.trusted)
	if err != nil {
		return Call{}, fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	header := r.Header.Clone()
	header.Del("Authorization")
	header.Del("Proxy-Authorization")
	header.Del(HeaderAccount)
	call := Call{
		IdempotencyKey: r.Header.Get(HeaderIdempotencyKey),
		Method:         r.Method,
		RawQuery:       rawQuery,
		Header:         header,
		Body:           r.Body,
		Host:           r.Host,
		Scheme:         "http",
		Proto:          r.Proto,
		ClientIP:       ip.String(),
	}
	if r.TLS != nil {
		call.Scheme = "https"
	}
	call.Path = pathAfter(r.URL.EscapedPath(), prefix)
	return call, nil
}

// pathAfter is an escaped path without its first n segments: "" when
// nothing follows them, else "/...". The segments of a route's prefix
// hold no unescaped slash (the mux matched them), so this cuts exactly
// the prefix and keeps the rest as the caller escaped it.
func pathAfter(escaped string, n int) string {
	for range n {
		i := strings.IndexByte(escaped[1:], '/')
		if i < 0 {
			return ""
		}
		escaped = escaped[1+i:]
	}
	return escaped
}

// invokeParams are the gateway's parameters of an invoke, and the query
// left for the function.
type invokeParams struct {
	rev   int    // 0: the default revision
	async bool   // answer 202 with the task at once
	rest  string // the raw query without rev and async, otherwise as sent
}

// invokeQuery takes rev and async out of a raw query, keeping the other
// parameters byte for byte and in order: the function sees what its caller
// sent, not a re-encoding.
func invokeQuery(raw string) (invokeParams, error) {
	var p invokeParams
	var rest []string
	seen := map[string]bool{}
	for part := range strings.SplitSeq(raw, "&") {
		k, v, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || key != "rev" && key != "async" {
			if part != "" {
				rest = append(rest, part)
			}
			continue
		}
		if seen[key] {
			return p, fmt.Errorf("%w: query: %s given twice", api.ErrBadRequest, key)
		}
		seen[key] = true
		if err := p.set(key, v); err != nil {
			return p, err
		}
	}
	p.rest = strings.Join(rest, "&")
	return p, nil
}

// set reads the gateway parameter key's raw value.
func (p *invokeParams) set(key, raw string) error {
	v, err := url.QueryUnescape(raw)
	if err != nil {
		return fmt.Errorf("%w: query: %s: %w", api.ErrBadRequest, key, err)
	}
	if key == "rev" {
		p.rev, err = strconv.Atoi(v)
		if err != nil || p.rev < 1 {
			return fmt.Errorf("%w: query: rev=%q: want a revision number (1, 2, ...)", api.ErrBadRequest, v)
		}
		return nil
	}
	if v == "" { // a bare ?async
		p.async = true
		return nil
	}
	p.async, err = strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%w: query: async=%q: want 1 or 0", api.ErrBadRequest, v)
	}
	return nil
}

// respond writes a function's response, or the gateway's error.
func (h *handler) respond(w http.ResponseWriter, r *http.Request, resp Response, err error) {
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	if err == nil && (status < 200 || status > 599) {
		err = &CallError{Task: resp.Task, Err: fmt.Errorf("%w: the function answered status %d", api.ErrBadGateway, status)}
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	hdr := w.Header()
	for k, vs := range resp.Header {
		k = http.CanonicalHeaderKey(k)
		if !gatewayOwned[k] {
			hdr[k] = append(hdr[k], vs...)
		}
	}
	hdr.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	if resp.Task != "" {
		hdr.Set(HeaderTask, resp.Task)
	}
	w.WriteHeader(status)
	w.Write(resp.Body)
}

// gatewayOwned are the response headers a function may not set: the
// gateway's own marks (a function must not pass for the gateway), the
// body's framing, and hop-by-hop headers.
var gatewayOwned = map[string]bool{
	http.CanonicalHeaderKey(HeaderTask):  true,
	http.CanonicalHeaderKey(HeaderError): true,
	"Content-Length":                     true,
	"Transfer-Encoding":                  true,
	"Connection":                         true,
	"Keep-Alive":                         true,
	"Proxy-Connection":                   true,
	"Te":                                 true,
	"Trailer":                            true,
	"Upgrade":                            true,
}

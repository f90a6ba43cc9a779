package cgi

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Request is an HTTP call as the program sees it.
type Request struct {
	Method string
	// ScriptName is the route prefix the gateway matched, such as "/e/echo"
	// or "/v1/functions/echo/invoke".
	ScriptName string
	// PathInfo is the rest of the path after ScriptName, "" or starting with
	// "/", still percent-encoded as on the wire (cut from
	// url.URL.EscapedPath, not url.URL.Path).
	PathInfo   string
	RawQuery   string
	Host       string // Host header or server name, may carry ":port"
	Scheme     string // "http" or "https"
	Proto      string // "HTTP/1.1", "HTTP/2.0"
	RemoteAddr string // the client IP the gateway decided, without a port
	Header     http.Header
	// ContentLength is the length of the body; -1 means unknown.
	ContentLength int64
}

// notPassed are the variables that headers would make and a program never gets.
var notPassed = headerVars(append([]string{
	"Authorization", "Proxy-Authorization", // they carry the caller's gateway API key
	"Content-Length", // CONTENT_LENGTH comes from Request.ContentLength
	"Host",           // HTTP_HOST comes from Request.Host
	"Proxy",          // "httpoxy": HTTP_PROXY is a proxy setting to many HTTP clients
}, hopByHop...))

// Env returns the program's environment for r: the CGI/1.1 variables of
// RFC 3875, WAGI's X_MATCHED_ROUTE, X_FULL_URL and X_RAW_PATH_INFO, and an
// HTTP_* variable for each header passed (see the package doc for which are
// not). Its names and values add up to at most limit bytes; over it, the
// error wraps ErrTooLarge. A request that no environment can carry gives an
// error wrapping ErrBadRequest. The result depends on r alone.
func Env(r Request, limit int) (map[string]string, error) {
	pathInfo, err := url.PathUnescape(r.PathInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: PATH_INFO %q is not percent-encoded: %w", ErrBadRequest, r.PathInfo, err)
	}
	env := cgiVars(r, pathInfo)
	maps.Copy(env, headerEnv(r.Header)) // headers make only HTTP_* and CONTENT_TYPE
	if err := checkEnv(env, limit); err != nil {
		return nil, err
	}
	return env, nil
}

// cgiVars are the variables that do not come from headers, with
// CONTENT_TYPE empty until a header sets it.
func cgiVars(r Request, pathInfo string) map[string]string {
	name, port := splitHost(r.Host, r.Scheme)
	env := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE":   "DMS",
		"SERVER_PROTOCOL":   r.Proto,
		"SERVER_NAME":       name,
		"SERVER_PORT":       port,
		"REQUEST_METHOD":    r.Method,
		"SCRIPT_NAME":       r.ScriptName,
		"PATH_INFO":         pathInfo,
		"PATH_TRANSLATED":   pathInfo, // as in WAGI: there is no document root to translate to
		"QUERY_STRING":      r.RawQuery,
		"REMOTE_ADDR":       r.RemoteAddr,
		"REMOTE_HOST":       r.RemoteAddr, // RFC 3875 §4.1.9 allows the address in place of a name
		"AUTH_TYPE":         "",           // set, as WAGI does; the program never sees the caller's credentials
		"REMOTE_USER":       "",
		"CONTENT_TYPE":      "",
		"X_MATCHED_ROUTE":   strings.TrimSuffix(r.ScriptName, "/") + "/...",
		"X_RAW_PATH_INFO":   r.PathInfo,
		"X_FULL_URL":        fullURL(r),
	}
	if r.Host != "" {
		env["HTTP_HOST"] = r.Host
	}
	if r.ContentLength >= 0 {
		env["CONTENT_LENGTH"] = strconv.FormatInt(r.ContentLength, 10)
	}
	return env
}

// splitHost splits a Host header into SERVER_NAME and SERVER_PORT; without a
// port, the scheme's default. An IPv6 literal keeps its brackets (RFC 3875 §4.1.14).
func splitHost(host, scheme string) (name, port string) {
	if i := strings.LastIndexByte(host, ':'); i > strings.LastIndexByte(host, ']') && i < len(host)-1 {
		return host[:i], host[i+1:]
	}
	host = strings.TrimSuffix(host, ":")
	if scheme == "https" {
		return host, "443"
	}
	return host, "80"
}

// fullURL is the URL the client called, with the path as it was sent.
func fullURL(r Request) string {
	u := r.Scheme + "://" + r.Host + r.ScriptName + r.PathInfo
	if r.RawQuery != "" {
		u += "?" + r.RawQuery
	}
	return u
}

// headerEnv maps the headers that are passed to their variables. Keys that
// map to one variable (a Header built by hand may hold "x-a" and "X-A") are
// joined in sorted key order.
func headerEnv(h http.Header) map[string]string {
	env := make(map[string]string)
	for _, k := range slices.Sorted(maps.Keys(h)) {
		name := headerVar(k)
		if name == "" || notPassed[name] || len(h[k]) == 0 {
			continue
		}
		if name == "HTTP_CONTENT_TYPE" {
			name = "CONTENT_TYPE"
		}
		sep := ", "
		if name == "HTTP_COOKIE" {
			sep = "; " // RFC 9113 §8.2.3: HTTP/2 may split one Cookie header in many
		}
		if prev, ok := env[name]; ok {
			env[name] = prev + sep + strings.Join(h[k], sep)
		} else {
			env[name] = strings.Join(h[k], sep)
		}
	}
	return env
}

// headerVar is the variable for header name k (RFC 3875 §4.1.18), or ""
// when k is not a token or holds an underscore: "X_Real_IP" would collide
// with "X-Real-IP", so, as Apache and nginx do, it is not passed.
func headerVar(k string) string {
	if !isToken(k) || strings.Contains(k, "_") {
		return ""
	}
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(k, "-", "_"))
}

// headerVars is the set of variables for header names.
func headerVars(names []string) map[string]bool {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[headerVar(n)] = true
	}
	return set
}

// checkEnv refuses a NUL byte in a value (WASI and exec carry C strings) and
// an environment over limit bytes.
func checkEnv(env map[string]string, limit int) error {
	size := 0
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if strings.IndexByte(env[k], 0) >= 0 {
			return fmt.Errorf("%w: %s holds a NUL byte", ErrBadRequest, k)
		}
		size += len(k) + len(env[k])
	}
	if size > limit {
		return fmt.Errorf("%w: %d bytes of names and values, over the limit of %d", ErrTooLarge, size, limit)
	}
	return nil
}

package cgi_test

import (
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/opendms/dms/dms/gateway/cgi"
)

const noLimit = 1 << 20

// post is curl -d hi 'http://127.0.0.1:8080/e/echo/hello?a=1&b=two'.
func post() cgi.Request {
	return cgi.Request{
		Method: "POST", ScriptName: "/e/echo", PathInfo: "/hello", RawQuery: "a=1&b=two",
		Host: "127.0.0.1:8080", Scheme: "http", Proto: "HTTP/1.1", RemoteAddr: "10.0.0.7",
		Header: http.Header{
			"Accept":       {"*/*"},
			"User-Agent":   {"curl/8.5.0"},
			"Content-Type": {"application/x-www-form-urlencoded"},
		},
		ContentLength: 2,
	}
}

func TestEnvEveryVariable(t *testing.T) {
	got, err := cgi.Env(post(), noLimit)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"AUTH_TYPE":         "",
		"CONTENT_LENGTH":    "2",
		"CONTENT_TYPE":      "application/x-www-form-urlencoded",
		"GATEWAY_INTERFACE": "CGI/1.1",
		"HTTP_ACCEPT":       "*/*",
		"HTTP_HOST":         "127.0.0.1:8080",
		"HTTP_USER_AGENT":   "curl/8.5.0",
		"PATH_INFO":         "/hello",
		"PATH_TRANSLATED":   "/hello",
		"QUERY_STRING":      "a=1&b=two",
		"REMOTE_ADDR":       "10.0.0.7",
		"REMOTE_HOST":       "10.0.0.7",
		"REMOTE_USER":       "",
		"REQUEST_METHOD":    "POST",
		"SCRIPT_NAME":       "/e/echo",
		"SERVER_NAME":       "127.0.0.1",
		"SERVER_PORT":       "8080",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"SERVER_SOFTWARE":   "DMS",
		"X_FULL_URL":        "http://127.0.0.1:8080/e/echo/hello?a=1&b=two",
		"X_MATCHED_ROUTE":   "/e/echo/...",
		"X_RAW_PATH_INFO":   "/hello",
	}
	if !maps.Equal(got, want) {
		t.Errorf("Env:\n got %v\nwant %v", got, want)
	}
}

func TestEnv(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*cgi.Request)
		want   map[string]string // these variables, among others
		absent []string          // and not these
	}{{
		name: "header mapping",
		change: func(r *cgi.Request) {
			r.Header.Set("X-Request-Id", "r1")
			r.Header["Accept"] = []string{"text/html", "application/json"}
			r.Header.Set("Dnt", "1")
		},
		want: map[string]string{"HTTP_X_REQUEST_ID": "r1", "HTTP_ACCEPT": "text/html, application/json", "HTTP_DNT": "1"},
	}, {
		name: "credentials never passed, however spelled",
		change: func(r *cgi.Request) {
			r.Header.Set("Authorization", "Bearer dms-key")
			r.Header.Set("Proxy-Authorization", "Basic eDp5")
			r.Header["authorization"] = []string{"Bearer by-hand"} // a Header built without canonical keys
			r.Header["Proxy_Authorization"] = []string{"Basic eDp5"}
		},
		absent: []string{"HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION", "AUTH_TYPE=Bearer"},
	}, {
		name: "cookie passed, HTTP/2 cookie fields joined with a semicolon",
		change: func(r *cgi.Request) {
			r.Proto = "HTTP/2.0"
			r.Header["Cookie"] = []string{"a=1", "b=2"}
		},
		want: map[string]string{"HTTP_COOKIE": "a=1; b=2", "SERVER_PROTOCOL": "HTTP/2.0"},
	}, {
		name: "hop-by-hop headers and Proxy not passed",
		change: func(r *cgi.Request) {
			for _, h := range []string{"Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "Proxy"} {
				r.Header.Set(h, "x")
			}
		},
		absent: []string{"HTTP_CONNECTION", "HTTP_KEEP_ALIVE", "HTTP_TE", "HTTP_TRAILER", "HTTP_TRANSFER_ENCODING", "HTTP_UPGRADE", "HTTP_PROXY_CONNECTION", "HTTP_PROXY"},
	}, {
		name: "a header name with an underscore or not a token is not passed",
		change: func(r *cgi.Request) {
			r.Header["X_Real_Ip"] = []string{"6.6.6.6"}
			r.Header["Bad Name"] = []string{"x"}
			r.Header["X=Y"] = []string{"x"}
		},
		absent: []string{"HTTP_X_REAL_IP", "HTTP_BAD NAME", "HTTP_X=Y"},
	}, {
		name: "content headers only in CONTENT_*, from the fields",
		change: func(r *cgi.Request) {
			r.Header.Set("Content-Length", "999")
			r.Header.Set("Host", "spoofed.example")
		},
		want:   map[string]string{"CONTENT_LENGTH": "2", "HTTP_HOST": "127.0.0.1:8080", "CONTENT_TYPE": "application/x-www-form-urlencoded"},
		absent: []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"},
	}, {
		name: "encoded path: PATH_INFO decoded, X_RAW_PATH_INFO and X_FULL_URL as sent",
		change: func(r *cgi.Request) {
			r.PathInfo = "/a%20b/c%2Fd+e/%C3%A9"
			r.RawQuery = ""
		},
		want: map[string]string{
			"PATH_INFO": "/a b/c/d+e/é", "PATH_TRANSLATED": "/a b/c/d+e/é", "X_RAW_PATH_INFO": "/a%20b/c%2Fd+e/%C3%A9",
			"X_FULL_URL": "http://127.0.0.1:8080/e/echo/a%20b/c%2Fd+e/%C3%A9", "QUERY_STRING": "",
		},
	}, {
		name: "empty body, no path info",
		change: func(r *cgi.Request) {
			r.Method, r.PathInfo, r.ContentLength = "GET", "", 0
			r.Header.Del("Content-Type")
		},
		want: map[string]string{"CONTENT_LENGTH": "0", "CONTENT_TYPE": "", "PATH_INFO": "", "X_MATCHED_ROUTE": "/e/echo/...", "REQUEST_METHOD": "GET"},
	}, {
		name:   "unknown length",
		change: func(r *cgi.Request) { r.ContentLength = -1 },
		absent: []string{"CONTENT_LENGTH"},
	}, {
		name: "HTTP/2 over TLS, default port",
		change: func(r *cgi.Request) {
			r.Proto, r.Scheme, r.Host, r.ScriptName = "HTTP/2.0", "https", "fn.example.org", "/v1/functions/echo/invoke"
		},
		want: map[string]string{
			"SERVER_PROTOCOL": "HTTP/2.0", "SERVER_NAME": "fn.example.org", "SERVER_PORT": "443", "HTTP_HOST": "fn.example.org",
			"SCRIPT_NAME": "/v1/functions/echo/invoke", "X_MATCHED_ROUTE": "/v1/functions/echo/invoke/...",
			"X_FULL_URL": "https://fn.example.org/v1/functions/echo/invoke/hello?a=1&b=two",
		},
	}, {
		name:   "IPv6 host keeps its brackets",
		change: func(r *cgi.Request) { r.Host, r.RemoteAddr = "[::1]:8080", "::1" },
		want:   map[string]string{"SERVER_NAME": "[::1]", "SERVER_PORT": "8080", "REMOTE_ADDR": "::1"},
	}, {
		name:   "no host",
		change: func(r *cgi.Request) { r.Host = "" },
		want:   map[string]string{"SERVER_NAME": "", "SERVER_PORT": "80"},
		absent: []string{"HTTP_HOST"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			r := post()
			c.change(&r)
			env, err := cgi.Env(r, noLimit)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.want {
				if got, ok := env[k]; !ok || got != v {
					t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
				}
			}
			for _, k := range c.absent {
				name, value, hasValue := strings.Cut(k, "=")
				if got, ok := env[name]; ok && (!hasValue || got == value) {
					t.Errorf("%s = %q, want it absent", name, got)
				}
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*cgi.Request)
		limit  int
		want   error
		says   string
	}{
		{"too large", func(r *cgi.Request) { r.Header.Set("X-Big", strings.Repeat("x", 5000)) }, 4096, cgi.ErrTooLarge, "over the limit of 4096"},
		{"bad percent-encoding", func(r *cgi.Request) { r.PathInfo = "/a%zz" }, noLimit, cgi.ErrBadRequest, `PATH_INFO "/a%zz"`},
		{"NUL in the path", func(r *cgi.Request) { r.PathInfo = "/a%00b" }, noLimit, cgi.ErrBadRequest, "PATH_INFO holds a NUL"},
		{"NUL in a header", func(r *cgi.Request) { r.Header.Set("X-A", "a\x00b") }, noLimit, cgi.ErrBadRequest, "HTTP_X_A holds a NUL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := post()
			c.change(&r)
			env, err := cgi.Env(r, c.limit)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) || env != nil {
				t.Errorf("Env = %v, %v; want an error wrapping %v that says %q", env, err, c.want, c.says)
			}
		})
	}
}

// TestEnvLimit checks the limit counts names and values, inclusively.
func TestEnvLimit(t *testing.T) {
	env, err := cgi.Env(post(), noLimit)
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for k, v := range env {
		size += len(k) + len(v)
	}
	if _, err := cgi.Env(post(), size); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	if _, err := cgi.Env(post(), size-1); !errors.Is(err, cgi.ErrTooLarge) {
		t.Errorf("a byte over the limit: %v, want ErrTooLarge", err)
	}
}

// TestEnvDeterministic checks that keys mapping to one variable join in a
// fixed order, whatever the map's iteration order.
func TestEnvDeterministic(t *testing.T) {
	r := post()
	r.Header = http.Header{"X-A": {"1"}, "x-a": {"2"}, "X-a": {"3"}}
	for range 20 {
		env, err := cgi.Env(r, noLimit)
		if err != nil || env["HTTP_X_A"] != "1, 3, 2" {
			t.Fatalf("HTTP_X_A = %q, %v; want sorted key order %q", env["HTTP_X_A"], err, "1, 3, 2")
		}
	}
}

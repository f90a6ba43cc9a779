package cgi_test

import (
	"bytes"
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/opendms/dms/dms/gateway/cgi"
)

// FuzzParseOutput checks ParseOutput never panics and that what it accepts
// is a response the gateway can send: a status in 200..599, one
// Content-Type, no header the gateway owns, and a Body that is a suffix of
// stdout.
func FuzzParseOutput(f *testing.F) {
	for _, c := range outputs {
		f.Add([]byte(c.stdout))
	}
	f.Add([]byte("Status: 99\n\n"))
	f.Add([]byte("Location: /x\r\nContent-Length: 3\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, stdout []byte) {
		res, err := cgi.ParseOutput(stdout)
		if err != nil {
			if !errors.Is(err, cgi.ErrBadOutput) {
				t.Fatalf("error %v does not wrap ErrBadOutput", err)
			}
			return
		}
		if res.Status < 200 || res.Status > 599 {
			t.Errorf("status %d", res.Status)
		}
		if !bytes.HasSuffix(stdout, res.Body) {
			t.Errorf("body %q is not a suffix of stdout", res.Body)
		}
		if len(res.Header["Content-Type"]) != 1 {
			t.Errorf("Content-Type %q", res.Header["Content-Type"])
		}
		for _, h := range []string{"Status", "Content-Length", "Connection", "Transfer-Encoding", "Keep-Alive", "Upgrade", "Trailer"} {
			if _, ok := res.Header[h]; ok {
				t.Errorf("header %s passed", h)
			}
		}
	})
}

// FuzzEnv checks Env never panics and that an environment it returns can
// be given to a program: names WASI can carry, no NUL in a value, no
// credentials, within the limit, and the same for the same request.
func FuzzEnv(f *testing.F) {
	f.Add("POST", "/e/echo", "/hello", "a=1", "127.0.0.1:8080", "http", "HTTP/1.1", "10.0.0.7", "X-A", "1", int64(2), 4096)
	f.Add("GET", "/v1/functions/echo/invoke", "/a%20b%2F", "", "[::1]", "https", "HTTP/2.0", "::1", "Cookie", "a=1", int64(0), 1024)
	f.Add("GET", "", "/%00", "", "h:", "http", "HTTP/1.0", "", "authorization", "Bearer k", int64(-1), 100)
	f.Add("PUT", "/e/x/", "%zz", "q", "", "", "", "", "X_A", "a\x00", int64(7), 0)
	f.Fuzz(func(t *testing.T, method, script, pathInfo, query, host, scheme, proto, remote, name, value string, length int64, limit int) {
		r := cgi.Request{
			Method: method, ScriptName: script, PathInfo: pathInfo, RawQuery: query, Host: host,
			Scheme: scheme, Proto: proto, RemoteAddr: remote, Header: http.Header{name: {value}}, ContentLength: length,
		}
		env, err := cgi.Env(r, limit)
		if err != nil {
			if !errors.Is(err, cgi.ErrTooLarge) && !errors.Is(err, cgi.ErrBadRequest) {
				t.Fatalf("error %v wraps neither ErrTooLarge nor ErrBadRequest", err)
			}
			return
		}
		size := 0
		for k, v := range env {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
				t.Errorf("%q=%q cannot be in an environment", k, v)
			}
			size += len(k) + len(v)
		}
		if size > limit {
			t.Errorf("%d bytes, over the limit %d", size, limit)
		}
		if _, ok := env["HTTP_AUTHORIZATION"]; ok {
			t.Error("HTTP_AUTHORIZATION passed")
		}
		if again, _ := cgi.Env(r, limit); !maps.Equal(env, again) {
			t.Errorf("Env differs between calls: %v, %v", env, again)
		}
	})
}

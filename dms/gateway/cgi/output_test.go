package cgi_test

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/opendms/dms/dms/gateway/cgi"
)

const plain = cgi.DefaultContentType

// outputs are stdouts that parse; they also seed FuzzParseOutput.
var outputs = []struct {
	name   string
	stdout string
	status int
	header http.Header
	body   string
}{
	{"empty stdout", "", 200, http.Header{"Content-Type": {plain}}, ""},
	{"no block", "hello\nworld\n", 200, http.Header{"Content-Type": {plain}}, "hello\nworld\n"},
	{"LF", "Content-Type: text/html\n\n<p>hi</p>\n", 200, http.Header{"Content-Type": {"text/html"}}, "<p>hi</p>\n"},
	{"CRLF", "Status: 201 Created\r\nContent-Type: application/json\r\n\r\n{}\r\n", 201,
		http.Header{"Content-Type": {"application/json"}}, "{}\r\n"},
	{"mixed line ends", "Content-Type: text/csv\r\nX-A: 1\n\r\na,b", 200, http.Header{"Content-Type": {"text/csv"}, "X-A": {"1"}}, "a,b"},
	{"block without a blank line is body", "Content-Type: text/html\n<p>hi</p>", 200,
		http.Header{"Content-Type": {plain}}, "Content-Type: text/html\n<p>hi</p>"},
	{"block at the end without a blank line is body", "Status: 404\n", 200, http.Header{"Content-Type": {plain}}, "Status: 404\n"},
	{"status with reason", "Status: 404 Not Found\nContent-Type: text/plain\n\nno such thing", 404,
		http.Header{"Content-Type": {"text/plain"}}, "no such thing"},
	{"status alone", "Status: 204\n\n", 204, http.Header{"Content-Type": {plain}}, ""},
	{"names in any case, no space", "status:503\ncontent-type:text/html  \n\n", 503, http.Header{"Content-Type": {"text/html"}}, ""},
	{"location is a redirect", "Location: https://example.org/\n\n", 302,
		http.Header{"Location": {"https://example.org/"}, "Content-Type": {plain}}, ""},
	{"location with status", "Status: 301\nLocation: /new\n\n", 301, http.Header{"Location": {"/new"}, "Content-Type": {plain}}, ""},
	{"duplicate headers kept", "Content-Type: text/plain\nSet-Cookie: a=1\nSet-Cookie: b=2\nX-A: 1\nx-a: 2\n\nok", 200,
		http.Header{"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}, "X-A": {"1", "2"}}, "ok"},
	{"header-like text without a CGI field is body", "Note: this is text\nAuthor: Ada\n\nmore", 200,
		http.Header{"Content-Type": {plain}}, "Note: this is text\nAuthor: Ada\n\nmore"},
	{"first line not a header is body", "hello\nStatus: 404\n\nx", 200, http.Header{"Content-Type": {plain}}, "hello\nStatus: 404\n\nx"},
	{"leading blank line is body", "\nStatus: 404\n\nx", 200, http.Header{"Content-Type": {plain}}, "\nStatus: 404\n\nx"},
	{"binary body", "Content-Type: application/octet-stream\n\n\x00\xff\r\n\r\n\x01", 200,
		http.Header{"Content-Type": {"application/octet-stream"}}, "\x00\xff\r\n\r\n\x01"},
	{"binary without a block", "\x00\x01:\n\n\xff", 200, http.Header{"Content-Type": {plain}}, "\x00\x01:\n\n\xff"},
	{"gateway-owned headers dropped",
		"Content-Type: text/plain\nContent-Length: 999\nConnection: close\nTransfer-Encoding: chunked\nKeep-Alive: 5\nUpgrade: h2c\nTrailer: X\nX-Kept: yes\n\nok",
		200, http.Header{"Content-Type": {"text/plain"}, "X-Kept": {"yes"}}, "ok"},
	{"huge header-like text without a CGI field is body", "X-Pad: " + strings.Repeat("p", 70<<10) + "\n\nx", 200,
		http.Header{"Content-Type": {plain}}, "X-Pad: " + strings.Repeat("p", 70<<10) + "\n\nx"},
}

func TestParseOutput(t *testing.T) {
	for _, c := range outputs {
		t.Run(c.name, func(t *testing.T) {
			res, err := cgi.ParseOutput([]byte(c.stdout))
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != c.status || !reflect.DeepEqual(res.Header, c.header) || string(res.Body) != c.body {
				t.Errorf("got %d %v %q\nwant %d %v %q", res.Status, res.Header, res.Body, c.status, c.header, c.body)
			}
		})
	}
}

func TestParseOutputErrors(t *testing.T) {
	for _, c := range []struct{ name, stdout, says string }{
		{"status 99", "Status: 99\n\n", `line 1 "Status: 99": status 99 is not in 200..599`},
		{"status 600", "Content-Type: text/plain\nStatus: 600 Odd\n\n", "line 2 \"Status: 600 Odd\": status 600 is not in 200..599"},
		{"status 1xx refused", "Status: 101 Switching Protocols\n\n", "status 101 is not in 200..599"},
		{"status not a number", "Status: OK\n\n", `status "OK" is not a number`},
		{"status empty", "Status:\nContent-Type: text/plain\n\n", `line 1 "Status:": status "" is not a number`},
		{"second status", "Status: 200\nStatus: 404\n\n", "line 2 \"Status: 404\": a second Status"},
		{"second content type", "Content-Type: a/b\ncontent-type: c/d\n\n", "line 2 \"content-type: c/d\": a second Content-Type"},
		{"empty location", "Location:\n\n", "empty Location"},
		{"line without a colon", "Content-Type: text/plain\nthis is not a header\n\nbody", `line 2 "this is not a header": has no colon`},
		{"name not a token", "Status: 200\nBad Name: x\n\n", `line 2 "Bad Name: x": header name "Bad Name" is not a token`},
		{"folded line", "Status: 200\nX-A: 1\n  continued\n\n", "line 3"},
		{"control character", "Status: 200\nX-A: a\rb\n\n", `line 2 "X-A: a\rb": value holds control character '\r'`},
		{"huge header block", "Status: 200\nX-Pad: " + strings.Repeat("p", 64<<10) + "\n\n", "the header block is 65556 bytes, over 65536"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := cgi.ParseOutput([]byte(c.stdout))
			if !errors.Is(err, cgi.ErrBadOutput) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("ParseOutput = %+v, %v; want ErrBadOutput saying %q", res, err, c.says)
			}
		})
	}
}

// TestParseOutputBodyAliases checks Body is stdout's own suffix, not a copy.
func TestParseOutputBodyAliases(t *testing.T) {
	stdout := []byte("Content-Type: text/plain\n\nbody")
	res, err := cgi.ParseOutput(stdout)
	if err != nil || len(res.Body) != 4 || &res.Body[0] != &stdout[len(stdout)-4] {
		t.Errorf("Body %q, err %v: want the last 4 bytes of stdout", res.Body, err)
	}
}

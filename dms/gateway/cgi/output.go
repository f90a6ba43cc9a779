package cgi

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// MaxHeaderBlock bounds the header block at the top of a program's stdout.
const MaxHeaderBlock = 64 << 10

// DefaultContentType is the Content-Type of a response that sets none.
const DefaultContentType = "text/plain; charset=utf-8"

// Response is what a program's stdout says.
type Response struct {
	Status int         // 200 when the output sets none, 302 with only a Location
	Header http.Header // from the header block; always one Content-Type
	Body   []byte      // a suffix of stdout, not a copy
}

// gatewayOwned are the headers a program may print and the gateway drops:
// it frames the response itself.
var gatewayOwned = append([]string{"Content-Length"}, hopByHop...)

// ParseOutput splits a program's stdout into a CGI header block and a body.
//
// stdout has a header block when it starts with a line "Name: value",
// reaches an empty line (LF or CRLF endings), and a line before that empty
// line is Status, Content-Type or Location (RFC 3875 §6.2). Otherwise all
// of stdout is the body, with status 200 and DefaultContentType. A header
// block with a line that is not "token: value" or holds a control
// character, a bad or second Status, an empty or second Content-Type or
// Location, or a size over MaxHeaderBlock is an error wrapping ErrBadOutput
// that names the line.
//
// Status must be 200..599; its reason phrase is dropped. Location without
// Status gives 302 (RFC 3875 §6.2.3); a Location that is a local path is a
// client redirect too, as in WAGI: the gateway does no internal redirects.
// A response without Content-Type gets DefaultContentType. The gateway
// frames the response, so Status, Content-Length and the hop-by-hop headers
// (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
// Transfer-Encoding, Upgrade) never reach Header.
func ParseOutput(stdout []byte) (Response, error) {
	block, body, ok := cutBlock(stdout)
	lines := splitLines(block)
	if !ok || len(lines) == 0 || !isHeaderLine(lines[0]) || !hasCGIField(lines) {
		return finish(Response{Header: http.Header{}, Body: stdout}), nil
	}
	if len(block) > MaxHeaderBlock {
		return Response{}, fmt.Errorf("%w: the header block is %d bytes, over %d", ErrBadOutput, len(block), MaxHeaderBlock)
	}
	res := Response{Header: http.Header{}, Body: body}
	for i, line := range lines {
		if err := res.add(line); err != nil {
			return Response{}, fmt.Errorf("%w: line %d %q: %s", ErrBadOutput, i+1, clip(line), err)
		}
	}
	return finish(res), nil
}

// cutBlock cuts stdout at its first empty line: block is what comes before
// it (with line ends), body what follows. ok is false without an empty line.
func cutBlock(stdout []byte) (block, body []byte, ok bool) {
	for i := 0; ; {
		n := bytes.IndexByte(stdout[i:], '\n')
		if n < 0 {
			return nil, nil, false
		}
		if line := stdout[i : i+n]; len(line) == 0 || string(line) == "\r" {
			return stdout[:i], stdout[i+n+1:], true
		}
		i += n + 1
	}
}

// splitLines splits a block from cutBlock into lines without their ends.
func splitLines(block []byte) []string {
	if len(block) == 0 {
		return nil
	}
	lines := strings.Split(string(block[:len(block)-1]), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// isHeaderLine reports whether line starts "token:".
func isHeaderLine(line string) bool {
	name, _, ok := strings.Cut(line, ":")
	return ok && isToken(name)
}

// hasCGIField reports whether a line is Status, Content-Type or Location,
// one of which makes the lines a header block.
func hasCGIField(lines []string) bool {
	for _, l := range lines {
		name, _, _ := strings.Cut(l, ":")
		switch http.CanonicalHeaderKey(name) {
		case "Status", "Content-Type", "Location":
			return true
		}
	}
	return false
}

// add adds one header line to res.
func (res *Response) add(line string) error {
	name, value, ok := strings.Cut(line, ":")
	if !ok {
		return errors.New("has no colon")
	}
	if !isToken(name) {
		return fmt.Errorf("header name %q is not a token", name)
	}
	value = strings.Trim(value, " \t")
	if i := strings.IndexFunc(value, isControl); i >= 0 {
		return fmt.Errorf("value holds control character %q", value[i])
	}
	key := http.CanonicalHeaderKey(name)
	if key == "Status" {
		if res.Status != 0 {
			return errors.New("a second Status")
		}
		return res.setStatus(value)
	}
	if key == "Content-Type" || key == "Location" {
		if value == "" {
			return fmt.Errorf("empty %s", key)
		}
		if res.Header.Get(key) != "" {
			return fmt.Errorf("a second %s", key)
		}
	}
	res.Header.Add(key, value)
	return nil
}

// setStatus sets res.Status from a Status value "code [reason]".
func (res *Response) setStatus(value string) error {
	code := value
	if i := strings.IndexAny(value, " \t"); i >= 0 {
		code = value[:i]
	}
	n, err := strconv.ParseUint(code, 10, 16)
	switch {
	case err != nil:
		return fmt.Errorf("status %q is not a number", code)
	case n < 200 || n > 599:
		return fmt.Errorf("status %d is not in 200..599", n)
	}
	res.Status = int(n)
	return nil
}

// finish drops the headers the gateway owns and fills in the status and
// Content-Type a block left out.
func finish(res Response) Response {
	for _, h := range gatewayOwned {
		res.Header.Del(h)
	}
	switch {
	case res.Status != 0:
	case res.Header.Get("Location") != "":
		res.Status = http.StatusFound
	default:
		res.Status = http.StatusOK
	}
	if res.Header.Get("Content-Type") == "" {
		res.Header.Set("Content-Type", DefaultContentType)
	}
	return res
}

// isControl reports a control character other than HTAB, which no header
// value may hold (RFC 9110 §5.5).
func isControl(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }

// clip shortens a line for an error message.
func clip(line string) string {
	if len(line) > 80 {
		return line[:80] + "..."
	}
	return line
}

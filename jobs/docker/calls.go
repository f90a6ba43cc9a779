package docker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// The call contract of a warm container: one line of JSON per request on
// the program's stdin, one line of JSON per answer on its stdout (doc.go).
// This file is its pure part: no engine, no goroutines.

// callRequest is one call, as written on the program's stdin.
type callRequest struct {
	ID    uint64            `json:"id"`
	Env   map[string]string `json:"env"`
	Stdin []byte            `json:"stdin"` // standard base64
}

// callAnswer is the program's answer to a call, as read from its stdout.
type callAnswer struct {
	ID       *uint64 `json:"id"`
	Stdout   []byte  `json:"stdout"` // standard base64
	Stderr   []byte  `json:"stderr"`
	ExitCode int     `json:"exit_code"`
}

// Bounds of the stream of answers.
const (
	// lineSlack is what an answer line may hold beyond the base64 of its
	// stdout and stderr: its id, exit code and JSON.
	lineSlack = 64 << 10
	// stderrTail is how much of the container's own stderr an instance
	// keeps, the last of it, for its errors.
	stderrTail = 64 << 10
)

// maxAnswerLine is the longest answer line an instance reads: room for a
// stdout and a stderr of limit bytes each in base64 (4/3 of it each), and
// lineSlack. A longer line breaks the instance.
func maxAnswerLine(limit int64) int { return int(3*limit + lineSlack) }

// encodeRequest returns the line that asks for call id: env and stdin, and
// the newline that ends it.
func encodeRequest(id uint64, env map[string]string, stdin []byte) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if env == nil {
		env = map[string]string{}
	}
	if stdin == nil {
		stdin = []byte{}
	}
	if err := enc.Encode(callRequest{ID: id, Env: env, Stdin: stdin}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil // Encode ends it with "\n"
}

// errBadAnswer marks an answer line the contract does not allow.
var errBadAnswer = errors.New("not an answer")

// decodeAnswer reads one answer line (without its newline).
func decodeAnswer(line []byte) (id uint64, a callAnswer, err error) {
	if err := json.Unmarshal(line, &a); err != nil {
		return 0, a, fmt.Errorf("%w: %q: %w", errBadAnswer, clip(line, 80), err)
	}
	if a.ID == nil {
		return 0, a, fmt.Errorf("%w: %q: no id", errBadAnswer, clip(line, 80))
	}
	return *a.ID, a, nil
}

// clip returns at most n bytes of b, for a message.
func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// lines is the io.Writer the program's stdout is copied into: it splits it
// into lines of at most max bytes and hands each to answer. A longer line,
// or an error of answer, fails the write, which ends the copy.
type lines struct {
	max    int
	answer func(line []byte) error
	buf    []byte
}

func (l *lines) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		end := bytes.IndexByte(p, '\n')
		if end < 0 {
			end = len(p)
		}
		if len(l.buf)+end > l.max {
			return n - len(p), fmt.Errorf("%w: an answer line over %d bytes", errBadAnswer, l.max)
		}
		l.buf = append(l.buf, p[:end]...)
		if end == len(p) {
			break
		}
		p = p[end+1:]
		err := l.answer(l.buf)
		l.buf = l.buf[:0]
		if cap(l.buf) > lineSlack {
			l.buf = nil // a long line's buffer is not kept
		}
		if err != nil {
			return n - len(p), err
		}
	}
	return n, nil
}

// tail keeps the last max bytes written to it. Safe for concurrent use.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = t.buf[:copy(t.buf, t.buf[over:])]
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String returns what is kept.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

package docker

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// These tests need no engine: they check the call contract's lines.

func TestEncodeRequest(t *testing.T) {
	line, err := encodeRequest(7, map[string]string{"B": "<&>", "A": "1"}, []byte("hi\n"))
	want := `{"id":7,"env":{"A":"1","B":"<&>"},"stdin":"aGkK"}` + "\n"
	if err != nil || string(line) != want {
		t.Fatalf("%s, %v\nwant %s", line, err, want)
	}
	if line, _ := encodeRequest(1, nil, nil); string(line) != `{"id":1,"env":{},"stdin":""}`+"\n" {
		t.Fatalf("empty: %s", line)
	}
}

func TestDecodeAnswer(t *testing.T) {
	id, a, err := decodeAnswer([]byte(`{"id":3,"stdout":"aGk=","exit_code":2,"extra":true}`))
	if err != nil || id != 3 || string(a.Stdout) != "hi" || a.Stderr != nil || a.ExitCode != 2 {
		t.Fatalf("%d %+v %v", id, a, err)
	}
	for _, bad := range []string{``, `garbage`, `{"stdout":""}`, `{"id":-1}`, `{"id":1,"stdout":"not base64!"}`, `[1]`} {
		if _, _, err := decodeAnswer([]byte(bad)); !errors.Is(err, errBadAnswer) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// lines splits however the stream is cut, and refuses a line over its
// bound before it holds more.
func TestLines(t *testing.T) {
	stream := "one\ntwo\n\nthree\nfour"
	for cut := 1; cut <= len(stream); cut++ {
		var got []string
		l := &lines{max: 5, answer: func(b []byte) error { got = append(got, string(b)); return nil }}
		for s := stream; s != ""; {
			n := min(cut, len(s))
			if k, err := l.Write([]byte(s[:n])); k != n || err != nil {
				t.Fatalf("cut %d: wrote %d, %v", cut, k, err)
			}
			s = s[n:]
		}
		if strings.Join(got, "|") != "one|two||three" || string(l.buf) != "four" {
			t.Fatalf("cut %d: %q, left %q", cut, got, l.buf)
		}
	}
	l := &lines{max: 5, answer: func([]byte) error { return nil }}
	if _, err := l.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("6")); !errors.Is(err, errBadAnswer) || len(l.buf) > 5 {
		t.Fatalf("a line over the bound: %v, holding %d", err, len(l.buf))
	}
	stop := errors.New("stop")
	l = &lines{max: 5, answer: func([]byte) error { return stop }}
	if n, err := l.Write([]byte("a\nb\n")); n != 2 || err != stop {
		t.Fatalf("an answer's error: %d, %v", n, err)
	}
}

func TestTail(t *testing.T) {
	tl := &tail{max: 4}
	for _, w := range []string{"ab", "cd", "e", "", "fghij", "k"} {
		tl.Write([]byte(w))
	}
	if tl.String() != "hijk" || cap(tl.buf) > 8 {
		t.Fatalf("%q (capacity %d)", tl.String(), cap(tl.buf))
	}
}

// FuzzAnswerLines feeds the reader of answers any stream: it never holds a
// line over its bound, and every line it hands on decodes or is refused.
func FuzzAnswerLines(f *testing.F) {
	f.Add([]byte(`{"id":1,"stdout":"aGk=","stderr":"","exit_code":0}` + "\n" + `{"id":2}` + "\n"))
	f.Add([]byte("garbage\n{\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		const max = 64
		l := &lines{max: max, answer: func(b []byte) error {
			if len(b) > max || bytes.IndexByte(b, '\n') >= 0 {
				t.Fatalf("line %q", b)
			}
			_, _, err := decodeAnswer(b)
			if err != nil && !errors.Is(err, errBadAnswer) {
				t.Fatalf("%q: %v", b, err)
			}
			return nil
		}}
		for len(stream) > 0 {
			n := min(len(stream), 7)
			if _, err := l.Write(stream[:n]); err != nil {
				if !errors.Is(err, errBadAnswer) {
					t.Fatal(err)
				}
				return
			}
			stream = stream[n:]
		}
	})
}

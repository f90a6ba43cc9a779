package types

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCallReplyForwarded: a reply's forwarding fields cross intact, a
// reply without them encodes as before they existed (the committed seed
// of a plain reply), and out-of-bounds ones fail to encode and to decode.
func TestCallReplyForwarded(t *testing.T) {
	r := &CallReply{Seq: 7, Status: CallOK, Stdout: []byte("out"), Node: "12D3KooWNode", Job: "job-1", Code: 503, RetryAfter: 2 * time.Second}
	b, err := r.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var back CallReply
	if err := back.UnmarshalBinary(b); err != nil || !sameReply(r, &back) {
		t.Fatalf("round trip: %v, %+v", err, back)
	}
	seed := readSeed(t, "testdata/fuzz/FuzzCallReply/ok") // committed before the forwarding fields
	var plain CallReply
	if err := plain.UnmarshalBinary(seed); err != nil {
		t.Fatal(err)
	}
	if b, _ := plain.AppendBinary(nil); !bytes.Equal(b, seed) {
		t.Fatalf("a plain reply encodes as %x, not as before: %x", b, seed)
	}
	long := strings.Repeat("n", MaxCallName+1)
	for _, bad := range []CallReply{
		{Status: CallOK, Node: long}, {Status: CallOK, Job: long}, {Status: CallOK, Code: 200}, {Status: CallOK, Code: 600},
		{Status: CallOK, Code: 502, RetryAfter: time.Second}, {Status: CallOK, Code: 429, RetryAfter: -1},
	} {
		if _, err := bad.AppendBinary(nil); !errors.Is(err, ErrBadCallFrame) {
			t.Errorf("%+v encodes: %v", bad, err)
		}
	}
	valid, _ := (&CallReply{Status: CallOK, Node: "n"}).AppendBinary(nil)
	noTail := len(valid) - 5 // node "n" (2 bytes), job (1), code (1), retry (1)
	for name, frame := range map[string][]byte{
		"zero tail":     append(valid[:noTail:noTail], 0, 0, 0, 0),
		"code too big":  append(valid[:noTail:noTail], 0, 0, 0xff, 0xff, 0x04, 0),
		"trailing":      append(valid[:len(valid):len(valid)], 0),
		"half a tail":   append(valid[:noTail:noTail], 1, 'n'),
		"long node":     append(append(valid[:noTail:noTail], 0x81, 0x02), append([]byte(long), 0, 0, 0)...),
		"retry, no 429": append(valid[:noTail:noTail], 1, 'n', 0, 0, 2),
	} {
		var r CallReply
		if err := r.UnmarshalBinary(frame); !errors.Is(err, ErrBadCallFrame) {
			t.Errorf("%s: decoded %+v, %v", name, r, err)
		}
	}
}

// readSeed reads a fuzz corpus file of one []byte.
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, q, _ := strings.Cut(strings.TrimSpace(string(f)), "[]byte(")
	s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// TestCallRequestTrace: a request's trace context crosses intact, a
// request without one encodes as before it existed (the committed seed),
// one too long does not encode, and a peer's too long one decodes as
// none rather than failing the call.
func TestCallRequestTrace(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := &CallRequest{Seq: 7, Allocation: "alloc-1", Stdin: []byte("hi"), Trace: tp}
	b, err := r.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var back CallRequest
	if err := back.UnmarshalBinary(b); err != nil || !sameRequest(r, &back) {
		t.Fatalf("round trip: %v, %+v", err, back)
	}
	seed := readSeed(t, "testdata/fuzz/FuzzCallRequest/full") // committed before the trace context
	var plain CallRequest
	if err := plain.UnmarshalBinary(seed); err != nil || plain.Trace != "" {
		t.Fatalf("%+v, %v", plain, err)
	}
	if b, _ := plain.AppendBinary(nil); !bytes.Equal(b, seed) {
		t.Fatalf("an untraced request encodes as %x, not as before: %x", b, seed)
	}
	long := strings.Repeat("0", MaxCallTrace+1)
	if _, err := (&CallRequest{Trace: long}).AppendBinary(nil); !errors.Is(err, ErrBadCallFrame) {
		t.Fatalf("a %d-byte trace context encodes: %v", len(long), err)
	}
	untraced, _ := (&CallRequest{Seq: 1}).AppendBinary(nil)
	frame := append(append(untraced, 0x81, 0x01), long...)
	var got CallRequest
	if err := got.UnmarshalBinary(frame); err != nil || got.Trace != "" || got.Seq != 1 {
		t.Fatalf("a request with a %d-byte trace context: %+v, %v", len(long), got, err)
	}
	if err := got.UnmarshalBinary(append(untraced, 55, '0')); !errors.Is(err, ErrBadCallFrame) {
		t.Fatalf("a truncated trace context decodes: %+v, %v", got, err)
	}
}

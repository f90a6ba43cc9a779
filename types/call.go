package types

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Warm makes a task a warm instance: instead of running its program once,
// the allocation keeps it ready (compiled, or its container started) and
// serves calls on it, at most Concurrency at a time, each under the
// task's Timeout, until its requester releases it, it has served no call
// for KeepAlive, or its node needs the capability back.
type Warm struct {
	Concurrency int           `json:"concurrency"`
	KeepAlive   time.Duration `json:"keep_alive"`
}

// Bounds of a Warm.
const (
	MaxWarmConcurrency = 1024
	MinKeepAlive       = time.Second
	MaxKeepAlive       = 24 * time.Hour
)

// Check reports what is wrong with w, nil when nothing is.
func (w Warm) Check() error {
	switch {
	case w.Concurrency < 1 || w.Concurrency > MaxWarmConcurrency:
		return fmt.Errorf("warm: concurrency %d is out of 1..%d", w.Concurrency, MaxWarmConcurrency)
	case w.KeepAlive < MinKeepAlive || w.KeepAlive > MaxKeepAlive:
		return fmt.Errorf("warm: keep-alive %s is out of %s..%s", w.KeepAlive, MinKeepAlive, MaxKeepAlive)
	}
	return nil
}

// CallRequest is one call of a warm instance, sent by the instance's
// requester on its long-lived call stream to the provider. It is not a
// signed envelope: the stream's connection authenticates the requester
// (DESIGN.md, what is signed), and Seq, strictly increasing on a stream,
// keeps a frame from being replayed on it.
type CallRequest struct {
	Seq        uint64
	Allocation AllocationID
	// Timeout is what is left of the caller's time; the instance bounds
	// the run by the lesser of it and its task's Timeout. 0: the task's.
	Timeout time.Duration
	Env     map[string]string // added to the task's environment, winning over it
	Stdin   []byte
	// Trace is the W3C traceparent of the requester's span the call runs
	// under, "" for an untraced call (most: docs/observability.md). It is
	// encoded only when set, after Stdin, at most MaxCallTrace bytes; a
	// receiver ignores one it cannot parse, and one too long decodes as "".
	Trace string
}

// CallStatus says how a call on a warm instance went.
type CallStatus uint8

// The call statuses. Unknown, Busy and NodeError mean the program did not
// run to an answer through no fault of its own: the requester may send the
// call to another instance.
const (
	CallOK        CallStatus = iota + 1 // the program ran: ExitCode and outputs
	CallUnknown                         // no such warm instance of the requester's on this node (ended, released, never was)
	CallBusy                            // the instance is at its concurrency limit
	CallFailed                          // the program failed: it trapped, ran out of time or memory; Error says how
	CallNodeError                       // the node could not run it; Error says why
)

var callStatusNames = [...]string{"", "ok", "unknown", "busy", "failed", "node_error"}

func (s CallStatus) String() string {
	if int(s) < len(callStatusNames) && s > 0 {
		return callStatusNames[s]
	}
	return fmt.Sprintf("call_status(%d)", uint8(s))
}

// Retryable reports whether the call may be sent to another instance:
// the program did not run to an answer through no fault of its own.
func (s CallStatus) Retryable() bool {
	return s == CallUnknown || s == CallBusy || s == CallNodeError
}

// CallReply answers the CallRequest with the same Seq on the same stream.
//
// Node, Job, Code and RetryAfter serve calls forwarded between gateways
// (p2p.ForwardProtocol); a provider answering its own call stream leaves
// them zero, and then the reply encodes as it did before they existed.
type CallReply struct {
	Seq                              uint64
	Status                           CallStatus
	Error                            string
	ExitCode                         int
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool
	Duration                         time.Duration // the program's run

	Node string // the provider (PeerID) whose instance ran the call, when one did
	Job  string // the job of that warm instance
	// Code, when not 0, is the HTTP status (429, 502, 503, 504: any of
	// 400..599 decodes) the forwarding gateway must answer with instead of
	// the reply.
	Code uint16
	// RetryAfter goes with Code 429 or 503 (never with another).
	RetryAfter time.Duration
}

// forwarded reports whether r carries any of the fields of a forwarded
// call's reply, which are encoded only then.
func (r *CallReply) forwarded() bool {
	return r.Node != "" || r.Job != "" || r.Code != 0 || r.RetryAfter != 0
}

// Call frames on a call stream: one type byte, then the message.
const (
	FrameCallRequest byte = 1
	FrameCallReply   byte = 2
)

// Limits of a decoded call frame.
const (
	// MaxCallFrame bounds an encoded call request or reply: a body or an
	// output up to 16 MiB, with room for the environment, or for a reply's
	// error and forwarding fields (at most maxForwardTail bytes).
	MaxCallFrame   = 16<<20 + 1<<20
	maxCallEnvVars = 4096
	// MaxCallName bounds a reply's Node and Job.
	MaxCallName = 256
	// MaxCallTrace bounds a request's Trace: version 00's traceparent is
	// 55 bytes, and a later version may add a little.
	MaxCallTrace = 128
	// maxForwardTail bounds the encoding of Node, Job, Code and
	// RetryAfter: two names with their lengths, a uint16 and a varint.
	maxForwardTail = 2*(MaxCallName+binary.MaxVarintLen16) + binary.MaxVarintLen32 + binary.MaxVarintLen64
)

// ErrBadCallFrame means a call frame could not be decoded.
var ErrBadCallFrame = errors.New("types: bad call frame")

// AppendBinary appends r's encoding, its type byte first.
func (r *CallRequest) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, FrameCallRequest)
	b = binary.AppendUvarint(b, r.Seq)
	b = appendBytes(b, []byte(r.Allocation))
	b = binary.AppendVarint(b, int64(r.Timeout))
	b = binary.AppendUvarint(b, uint64(len(r.Env)))
	if len(r.Env) > 0 { // sorting allocates: not for a call without variables
		for _, k := range slices.Sorted(maps.Keys(r.Env)) {
			b = appendBytes(b, []byte(k))
			b = appendBytes(b, []byte(r.Env[k]))
		}
	}
	b = appendBytes(b, r.Stdin)
	if r.Trace == "" {
		return b, nil
	}
	if len(r.Trace) > MaxCallTrace {
		return nil, fmt.Errorf("%w: trace context of %d bytes, at most %d", ErrBadCallFrame, len(r.Trace), MaxCallTrace)
	}
	return appendBytes(b, []byte(r.Trace)), nil
}

// AppendBinary appends r's encoding, its type byte first.
func (r *CallReply) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, FrameCallReply)
	b = binary.AppendUvarint(b, r.Seq)
	b = append(b, byte(r.Status), flags(r.StdoutTruncated, r.StderrTruncated))
	b = appendBytes(b, []byte(r.Error))
	b = binary.AppendVarint(b, int64(r.ExitCode))
	b = binary.AppendVarint(b, int64(r.Duration))
	b = appendBytes(b, r.Stdout)
	b = appendBytes(b, r.Stderr)
	if !r.forwarded() {
		return b, nil
	}
	if err := r.checkForwarded(); err != nil {
		return nil, err
	}
	b = appendBytes(b, []byte(r.Node))
	b = appendBytes(b, []byte(r.Job))
	b = binary.AppendUvarint(b, uint64(r.Code))
	return binary.AppendVarint(b, int64(r.RetryAfter)), nil
}

// checkForwarded reports what is wrong with r's forwarding fields.
func (r *CallReply) checkForwarded() error {
	switch {
	case len(r.Node) > MaxCallName || len(r.Job) > MaxCallName:
		return fmt.Errorf("%w: node or job name over %d bytes", ErrBadCallFrame, MaxCallName)
	case r.Code != 0 && (r.Code < 400 || r.Code > 599):
		return fmt.Errorf("%w: code %d is not an HTTP error status", ErrBadCallFrame, r.Code)
	case r.RetryAfter < 0:
		return fmt.Errorf("%w: negative retry-after %s", ErrBadCallFrame, r.RetryAfter)
	case r.RetryAfter != 0 && r.Code != 429 && r.Code != 503:
		return fmt.Errorf("%w: retry-after with code %d", ErrBadCallFrame, r.Code)
	}
	return nil
}

func flags(a, b bool) byte {
	var f byte
	if a {
		f |= 1
	}
	if b {
		f |= 2
	}
	return f
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// UnmarshalBinary decodes a call request, type byte included. Stdin
// aliases b.
func (r *CallRequest) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	if d.byte() != FrameCallRequest {
		return fmt.Errorf("%w: not a call request", ErrBadCallFrame)
	}
	r.Seq = d.uvarint()
	r.Allocation = AllocationID(d.bytes())
	r.Timeout = time.Duration(d.varint())
	n := d.uvarint()
	if n > maxCallEnvVars {
		return fmt.Errorf("%w: %d environment variables, at most %d", ErrBadCallFrame, n, maxCallEnvVars)
	}
	r.Env = nil
	if n > 0 {
		r.Env = make(map[string]string, n)
	}
	for range n {
		k := string(d.bytes())
		r.Env[k] = string(d.bytes())
	}
	r.Stdin = d.bytes()
	r.Trace = ""
	if d.err == nil && len(d.b) > 0 {
		// A trace context is never a reason to refuse a call: one too
		// long is dropped (its bytes still have to be all there).
		if t := d.bytes(); len(t) <= MaxCallTrace {
			r.Trace = string(t)
		}
	}
	return d.done()
}

// UnmarshalBinary decodes a call reply, type byte included. Stdout and
// Stderr alias b.
func (r *CallReply) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	if d.byte() != FrameCallReply {
		return fmt.Errorf("%w: not a call reply", ErrBadCallFrame)
	}
	r.Seq = d.uvarint()
	r.Status = CallStatus(d.byte())
	f := d.byte()
	r.StdoutTruncated, r.StderrTruncated = f&1 != 0, f&2 != 0
	r.Error = string(d.bytes())
	r.ExitCode = int(d.varint())
	r.Duration = time.Duration(d.varint())
	r.Stdout = d.bytes()
	r.Stderr = d.bytes()
	if err := r.decodeForwarded(&d); err != nil {
		return err
	}
	if r.Status < CallOK || r.Status > CallNodeError || f > 3 {
		return fmt.Errorf("%w: status %d, flags %d", ErrBadCallFrame, r.Status, f)
	}
	return nil
}

// decodeForwarded decodes the forwarding fields that end a reply, if
// any: absent, they are zero; present, at least one must be set (zero
// ones are not encoded), and valid.
func (r *CallReply) decodeForwarded(d *decoder) error {
	r.Node, r.Job, r.Code, r.RetryAfter = "", "", 0, 0
	if d.err != nil || len(d.b) == 0 {
		return d.done()
	}
	r.Node = string(d.bytes())
	r.Job = string(d.bytes())
	code := d.uvarint()
	r.RetryAfter = time.Duration(d.varint())
	if err := d.done(); err != nil {
		return err
	}
	if code > 0xffff {
		return fmt.Errorf("%w: code %d", ErrBadCallFrame, code)
	}
	r.Code = uint16(code)
	if !r.forwarded() {
		return fmt.Errorf("%w: forwarding fields all zero", ErrBadCallFrame)
	}
	return r.checkForwarded()
}

// decoder reads a call frame; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or malformed %s", ErrBadCallFrame, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) > 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadCallFrame, len(d.b))
	}
	return d.err
}

package types

import "time"

// Trace context travels in the bodies of BidRequest, Accept and
// Invocation, and in a traced CallRequest, as a W3C traceparent
// ("00-<trace id>-<span id>-<flags>"): the span of the requester the
// receiving node's spans are children of. It is optional, and covered by
// the envelope's signature like the rest of the body (a call frame is no
// envelope: its connection authenticates it). A receiver that cannot
// parse it ignores it: it is never a reason to refuse a message.

// TraceQuery asks a node for the spans it keeps of one trace: it answers
// with a TraceSpans holding only the spans that the asking peer's own
// messages started (docs/observability.md).
type TraceQuery struct {
	TraceID string `json:"trace_id"` // 32 hex digits
}

// MaxTraceSpans bounds the spans of one TraceSpans: a node keeps at most
// this many of one trace, and a requester reads no more from one peer.
const MaxTraceSpans = 128

// Span is one finished span, as a node kept it.
type Span struct {
	TraceID string            `json:"trace_id"`
	ID      string            `json:"id"`
	Parent  string            `json:"parent,omitempty"` // "" for the trace's root
	Name    string            `json:"name"`
	Start   time.Time         `json:"start"`
	End     time.Time         `json:"end"`
	Error   string            `json:"error,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// TraceSpans answers a TraceQuery: the spans the node kept, oldest first;
// Truncated when it had more than it sent.
type TraceSpans struct {
	Spans     []Span `json:"spans"`
	Truncated bool   `json:"truncated,omitempty"`
}

package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/opendms/dms/types"
)

// TraceService is the part of a Service that reads traces
// (docs/observability.md).
type TraceService interface {
	// JobTrace gathers the spans of one of this node's jobs: its own, and
	// those of the nodes the job touched (that bid, declined or ran it),
	// each of which answers only the node that started the trace. A node
	// that does not answer is listed in Missing. ErrNotFound for a job
	// this node does not know, or whose spans it no longer keeps.
	JobTrace(ctx context.Context, id string) (Trace, error)
	// CallTrace gathers the spans of a trace of calls through this node's
	// gateway (the trace ID a traced call's traceparent answer header
	// names): its own, and those of the providers the calls were sent
	// to, each of which answers only this node. ErrBadRequest for an ID
	// that is not 32 hex digits, ErrNotFound for a trace of which nothing
	// is kept here.
	CallTrace(ctx context.Context, traceID string) (Trace, error)
}

// Trace is the spans of one trace, from every node that answered.
type Trace struct {
	Job     string `json:"job,omitempty"` // the job traced; "" for calls`
	TraceID string `json:"trace_id"`
	// Spans are sorted by start. A span whose parent is not among them
	// (the job's root while it runs, a span a node no longer keeps) is a
	// root of its own.
	Spans []Span `json:"spans"`
	// Nodes are the nodes asked, this one first.
	Nodes []TraceNode `json:"nodes"`
}

// Span is a span and the node (PeerID) that recorded it.
type Span struct {
	types.Span
	Node string `json:"node"`
}

// TraceNode is one node asked for its spans of a trace: how many it gave,
// or why none.
type TraceNode struct {
	Node      string `json:"node"`
	Spans     int    `json:"spans"`
	Truncated bool   `json:"truncated,omitempty"` // it keeps more of the trace than it sent
	Error     string `json:"error,omitempty"`     // it did not answer: its spans are missing
}

// JobTrace gathers a job's spans through the daemon.
func (c *Client) JobTrace(ctx context.Context, id string) (Trace, error) {
	return get[Trace](ctx, c, http.MethodGet, jobPath(id)+"/trace")
}

// CallTrace gathers a trace of gateway calls through the daemon.
func (c *Client) CallTrace(ctx context.Context, traceID string) (Trace, error) {
	return get[Trace](ctx, c, http.MethodGet, "/v1/traces/"+url.PathEscape(traceID))
}

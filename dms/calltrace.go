package dms

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/tracing"
	"github.com/opendms/dms/types"
)

// CheckCallSample returns an error saying what is wrong with a share of
// gateway calls to trace (traces.call_sample, WithCallSample).
func CheckCallSample(share float64) error {
	if !(share >= 0 && share <= 1) { // NaN too
		return fmt.Errorf("dms: call sample %v is out of 0..1", share)
	}
	return nil
}

// maxCallTraces bounds the traced calls whose providers a gateway
// remembers: as many as the traces it keeps.
const maxCallTraces = tracing.MaxTraces

// callTraces remembers, per trace of calls through this node's gateway,
// the providers the calls were sent to: CallTrace asks them for their
// spans. A caller may send one traceparent with many calls, so a trace
// keeps at most maxJobPeers providers. Its methods are safe for
// concurrent use.
type callTraces struct {
	sample float64 // the share of calls without a traceparent traced anyway

	mu    sync.Mutex
	peers map[trace.TraceID][]string
	order []trace.TraceID // peers' traces, oldest first
}

func newCallTraces(sample float64) *callTraces {
	return &callTraces{sample: sample, peers: make(map[trace.TraceID][]string)}
}

// touched notes that a call of trace id was sent to peer.
func (c *callTraces) touched(id trace.TraceID, peer string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	peers, ok := c.peers[id]
	if !ok {
		c.order = append(c.order, id)
		for len(c.order) > maxCallTraces {
			delete(c.peers, c.order[0])
			c.order = c.order[1:]
		}
	}
	if len(peers) < maxJobPeers && !slices.Contains(peers, peer) {
		peers = append(peers, peer)
	}
	c.peers[id] = peers
}

// of returns the providers the calls of trace id were sent to.
func (c *callTraces) of(id trace.TraceID) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.peers[id]...)
}

// isCall reports whether path is one of the gateway's call routes:
// /e/NAME... or /v1/functions/NAME/invoke....
func isCall(path string) bool {
	if strings.HasPrefix(path, "/e/") {
		return true
	}
	rest, ok := strings.CutPrefix(path, "/v1/functions/")
	if !ok {
		return false
	}
	_, rest, ok = strings.Cut(rest, "/")
	return ok && (rest == "invoke" || strings.HasPrefix(rest, "invoke/"))
}

// traceCalls traces the calls through the gateway's listener that the
// caller asks to be traced, with a valid W3C traceparent header (their
// span continues the caller's trace), and the share that callTraces'
// sample picks of the others. It answers a traced call with a
// traceparent header naming its span. An untraced call costs a header
// lookup and, with a sample, a random number: no span, no allocation.
func (x *traces) traceCalls(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if tp := r.Header["Traceparent"]; len(tp) == 1 { // two or more: invalid (W3C), ignored
			ctx = tracing.Parent(ctx, tp[0])
		}
		asked := trace.SpanContextFromContext(ctx).IsValid()
		if !isCall(r.URL.Path) || !asked && (x.calls.sample == 0 || rand.Float64() >= x.calls.sample) {
			next.ServeHTTP(w, r)
			return
		}
		ctx, span := x.t.Start(ctx, "call", trace.WithSpanKind(trace.SpanKindServer))
		w.Header().Set("Traceparent", tracing.Traceparent(ctx))
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		r = r.WithContext(ctx)
		next.ServeHTTP(rec, r)
		span.SetAttributes(attribute.String("route", r.Pattern), attribute.Int("status", rec.code))
		if rec.code >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(rec.code))
		}
		span.End()
	})
}

// callFunc sends a call to a warm instance on peer.
type callFunc func(ctx context.Context, peer string, req *types.CallRequest) (*types.CallReply, error)

// hop sends a traced call (ctx's span records) to the instance on peer
// with send, timed by a hop span whose trace context req carries to the
// provider, and remembers peer as a node the call's trace touched.
func (x *traces) hop(ctx context.Context, peer string, req *types.CallRequest, send callFunc) (*types.CallReply, error) {
	ctx, span := x.t.Start(ctx, "hop", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("peer", peer), attribute.String("allocation", string(req.Allocation))))
	req.Trace = tracing.Traceparent(ctx)
	x.calls.touched(span.SpanContext().TraceID(), peer)
	reply, err := send(ctx, peer, req)
	if err == nil {
		span.SetAttributes(attribute.String("status", reply.Status.String()))
		if reply.Status != types.CallOK {
			span.SetStatus(codes.Error, reply.Error)
		}
	}
	fail(span, err)
	return reply, err
}

// served runs a call that a requester's frame traced (req.Trace) with
// run, timed by a call span under the requester's hop, which only that
// requester may read.
func (x *traces) served(ctx context.Context, from string, req *types.CallRequest, run func(context.Context, string, *types.CallRequest) *types.CallReply) *types.CallReply {
	ctx, span := x.t.Start(tracing.Remote(ctx, req.Trace, from), "call", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("allocation", string(req.Allocation))))
	reply := run(ctx, from, req)
	span.SetAttributes(attribute.String("status", reply.Status.String()), attribute.String("run", reply.Duration.String()))
	switch {
	case reply.Status == types.CallOK:
		span.SetAttributes(attribute.Int("exit_code", reply.ExitCode))
	default:
		span.SetStatus(codes.Error, reply.Error)
	}
	span.End()
	return reply
}

// CallTrace gathers the spans of a trace of calls through this node's
// gateway: its own, and those of the providers the calls were sent to,
// asked at once over TraceProtocol (each answers only with the spans this
// node's frames started). The trace ID is the one the traceparent header
// of the call's answer names.
func (d *DMS) CallTrace(ctx context.Context, id string) (api.Trace, error) {
	if err := d.running(); err != nil {
		return api.Trace{}, err
	}
	tid, err := trace.TraceIDFromHex(id)
	if err != nil {
		return api.Trace{}, fmt.Errorf("%w: trace ID %q: want 32 hex digits, not all zero", api.ErrBadRequest, id)
	}
	self := d.host.ID()
	peers := slices.DeleteFunc(d.traces.calls.of(tid), func(p string) bool { return p == self })
	out := d.gatherTrace(ctx, tid, peers)
	if len(out.Spans) == 0 && len(peers) == 0 {
		return api.Trace{}, fmt.Errorf("%w: no spans of trace %s are kept here (no traced call of it came through this gateway, or its spans made room for newer ones)", api.ErrNotFound, id)
	}
	return out, nil
}

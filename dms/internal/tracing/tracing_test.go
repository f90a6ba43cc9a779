package tracing

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/opendms/dms/types"
)

func newTracer(t *testing.T) *Tracer {
	t.Helper()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := New(context.Background(), Config{Node: "12D3KooWSelf"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	if tr.Exported() {
		t.Fatal("exported without an endpoint")
	}
	return tr
}

// A provider's span is the child of the requester's span its message
// named, and only the requester reads it.
func TestRemoteParentAndOrigin(t *testing.T) {
	req, prov := newTracer(t), newTracer(t)
	ctx, auction := req.Start(context.Background(), "auction", trace.WithAttributes(attribute.String(JobKey, "job-1")))
	tp := Traceparent(ctx)
	if !strings.HasPrefix(tp, "00-"+auction.SpanContext().TraceID().String()) {
		t.Fatalf("traceparent %q", tp)
	}
	pctx, bid := prov.Start(Remote(context.Background(), tp, "12D3KooWReq"), "bid")
	_, child := prov.Start(pctx, "reserve")
	child.End()
	bid.End()
	auction.End()

	id := auction.SpanContext().TraceID()
	got := prov.Spans(id, "12D3KooWReq").Spans
	if len(got) != 2 || got[1].Name != "bid" || got[1].Parent != auction.SpanContext().SpanID().String() || got[0].Parent != got[1].ID {
		t.Fatalf("requester reads %+v", got)
	}
	if got := prov.Spans(id, "12D3KooWStranger").Spans; len(got) != 0 {
		t.Fatalf("a stranger reads %+v", got)
	}
	if got, ok := req.JobTrace("job-1"); !ok || got != id {
		t.Fatalf("job trace %v %v", got, ok)
	}
	if got := req.Spans(id, "").Spans; len(got) != 1 || got[0].Attrs[JobKey] != "" {
		t.Fatalf("own spans %+v", got)
	}
}

// A malformed or forged trace context is ignored: the span starts a trace
// of its own, still owned by the peer that sent it.
func TestMalformedTraceparentIgnored(t *testing.T) {
	tr := newTracer(t)
	for _, tp := range []string{
		"garbage", "00-", "00-00000000000000000000000000000000-0000000000000000-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + strings.Repeat("x", 1<<20),
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
	} {
		ctx, span := tr.Start(Remote(context.Background(), tp, "12D3KooWMallory"), "bid")
		span.End()
		sc := trace.SpanContextFromContext(ctx)
		got := tr.Spans(sc.TraceID(), "12D3KooWMallory").Spans
		if len(got) != 1 || got[0].Parent != "" {
			t.Errorf("traceparent %.60q: spans %+v", tp, got)
		}
	}
}

// The store keeps at most its bounds; a trace's spans beyond
// types.MaxTraceSpans are dropped and the answer says so, and every
// answer fits in an envelope however long the names and attributes.
func TestKeptBounds(t *testing.T) {
	tr := newTracer(t)
	long := strings.Repeat("é", 1000)
	var first, last trace.TraceID
	for i := range MaxTraces + 10 {
		ctx, root := tr.Start(context.Background(), long, trace.WithAttributes(attribute.String(JobKey, "job")))
		for j := range 20 {
			_, s := tr.Start(ctx, long, trace.WithAttributes(attribute.Int("j", j), attribute.String(long, long),
				attribute.String("a", long), attribute.String("b", long), attribute.String("c", long),
				attribute.String("d", long), attribute.String("e", long), attribute.String("f", long), attribute.String("g", long)))
			s.End()
		}
		root.End()
		if i == 0 {
			first = root.SpanContext().TraceID()
		}
		last = root.SpanContext().TraceID()
	}
	tr.kept.mu.Lock()
	traces, spans := len(tr.kept.traces), tr.kept.spans
	tr.kept.mu.Unlock()
	if traces > MaxTraces || spans > MaxSpans {
		t.Fatalf("kept %d traces, %d spans", traces, spans)
	}
	if got := tr.Spans(first, "").Spans; len(got) != 0 {
		t.Fatalf("the oldest trace is still kept: %d spans", len(got))
	}
	if got := tr.Spans(last, "").Spans; len(got) != 21 {
		t.Fatalf("the newest trace has %d spans", len(got))
	}

	ctx, root := tr.Start(context.Background(), "big")
	for range types.MaxTraceSpans + 5 {
		_, s := tr.Start(ctx, long, trace.WithAttributes(attribute.String("a", long), attribute.String(long, long)))
		s.SetStatus(2, long)
		s.End()
	}
	root.End()
	got := tr.Spans(root.SpanContext().TraceID(), "")
	if len(got.Spans) != types.MaxTraceSpans || !got.Truncated {
		t.Fatalf("%d spans, truncated %v", len(got.Spans), got.Truncated)
	}
	env, err := json.Marshal(got)
	if err != nil || len(env) > types.MaxEnvelopeSize/2 {
		t.Fatalf("a full answer is %d bytes (%v)", len(env), err)
	}
}

// Fit cuts an answer whose text escapes badly to the limit.
func TestFit(t *testing.T) {
	nul := strings.Repeat("\x00", 200)
	attrs := map[string]string{}
	for i := range maxAttrs {
		attrs[strings.Repeat(string(rune('a'+i)), maxAttrKey)] = cut(nul, maxAttrValue)
	}
	ts := types.TraceSpans{}
	for range types.MaxTraceSpans {
		ts.Spans = append(ts.Spans, types.Span{Name: cut(nul, maxName), Error: cut(nul, maxError), Attrs: attrs})
	}
	b, _ := json.Marshal(ts)
	got := Fit(ts, types.MaxEnvelopeSize/2)
	g, _ := json.Marshal(got)
	if len(b) <= types.MaxEnvelopeSize/2 || len(g) > types.MaxEnvelopeSize/2 || !got.Truncated || len(got.Spans) == 0 {
		t.Fatalf("%d bytes cut to %d (%d spans, truncated %v)", len(b), len(g), len(got.Spans), got.Truncated)
	}
	if small := Fit(types.TraceSpans{Spans: ts.Spans[:1]}, types.MaxEnvelopeSize/2); small.Truncated || len(small.Spans) != 1 {
		t.Fatalf("a small answer was cut: %+v", small)
	}
}

func TestCheckEndpoint(t *testing.T) {
	for _, ok := range []string{"", "http://localhost:4318", "https://collector.example:4318/v1/traces"} {
		if err := CheckEndpoint(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"localhost:4318", "ftp://x", "http://", "::"} {
		if err := CheckEndpoint(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// With an endpoint, spans go to the collector over OTLP/HTTP, at the
// traces path; Close flushes them.
func TestExportOTLP(t *testing.T) {
	var posts atomic.Int32
	var path atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path.Store(r.URL.Path)
		posts.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := New(context.Background(), Config{Node: "12D3KooWSelf", Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Start(context.Background(), "job")
	span.End()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 || path.Load() != "/v1/traces" || !tr.Exported() {
		t.Fatalf("%d posts, to %v", posts.Load(), path.Load())
	}
}

// Without an endpoint, OTEL_EXPORTER_OTLP_ENDPOINT names the collector.
func TestExportToEnvEndpoint(t *testing.T) {
	var path atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { path.Store(r.URL.Path) }))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	tr, err := New(context.Background(), Config{Node: "12D3KooWSelf"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Start(context.Background(), "job")
	span.End()
	if err := tr.Close(); err != nil || !tr.Exported() || path.Load() != "/v1/traces" {
		t.Fatalf("exported %v to %v (%v)", tr.Exported(), path.Load(), err)
	}
}

// BenchmarkSpan is the cost of one span kept, started and ended with two
// attributes as a job's steps are, in traces of 13 spans, the oldest
// evicted as new ones come.
func BenchmarkSpan(b *testing.B) {
	tr, err := New(context.Background(), Config{Node: "12D3KooWSelf"})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	ctx, root := tr.Start(context.Background(), "job")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i++; i%13 == 0 {
			root.End()
			ctx, root = tr.Start(context.Background(), "job")
		}
		_, s := tr.Start(ctx, "bid", trace.WithAttributes(attribute.String(JobKey, "job-1"), attribute.String("outcome", "bid")))
		s.End()
	}
	root.End()
}

package tracing

import (
	"context"
	"encoding/json"
	"sync"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/opendms/dms/types"
)

// JobKey names the attribute that ties a span to a job: Kept finds a job's
// trace by it.
const JobKey = "dms.job"

// Bounds of one kept span: about 1 KiB as JSON, so the spans of a trace
// (types.MaxTraceSpans) fit in an envelope (Fit makes sure of it).
const (
	maxAttrs     = 6
	maxAttrKey   = 32
	maxAttrValue = 96
	maxName      = 48
	maxError     = 160
)

// Kept is a span processor that keeps a node's recent finished spans in
// memory, by trace, within its bounds: the oldest trace goes first. Its
// methods are safe for concurrent use.
type Kept struct {
	maxTraces, maxSpans int

	mu     sync.Mutex
	traces map[trace.TraceID]*keptTrace
	ring   []trace.TraceID // the kept traces, oldest at head
	head   int
	spans  int                      // spans kept, over every trace
	jobs   map[string]trace.TraceID // a job's trace, while it is kept
}

type keptTrace struct {
	spans   []keptSpan
	jobs    []string // the jobs that name this trace, to forget with it
	dropped bool     // spans over types.MaxTraceSpans were not kept
}

type keptSpan struct {
	origin string
	span   types.Span
}

var _ sdktrace.SpanProcessor = (*Kept)(nil)

// NewKept returns an empty store of at most maxTraces traces and maxSpans
// spans.
func NewKept(maxTraces, maxSpans int) *Kept {
	return &Kept{
		maxTraces: maxTraces, maxSpans: maxSpans,
		traces: make(map[trace.TraceID]*keptTrace), jobs: make(map[string]trace.TraceID),
		ring: make([]trace.TraceID, 0, maxTraces),
	}
}

// OnStart does nothing: only finished spans are kept.
func (k *Kept) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd keeps a finished span.
func (k *Kept) OnEnd(s sdktrace.ReadOnlySpan) {
	sp, origin, job := convert(s)
	id := s.SpanContext().TraceID()
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.traces[id]
	if t == nil {
		for len(k.ring) >= k.maxTraces {
			k.evict()
		}
		t = &keptTrace{}
		k.traces[id] = t
		k.ring = append(k.ring, id)
	}
	if job != "" {
		if _, ok := k.jobs[job]; !ok {
			k.jobs[job] = id
			t.jobs = append(t.jobs, job)
		}
	}
	if len(t.spans) >= types.MaxTraceSpans {
		t.dropped = true
		return
	}
	t.spans = append(t.spans, keptSpan{origin: origin, span: sp})
	k.spans++
	for k.spans > k.maxSpans && len(k.ring) > 1 {
		k.evict()
	}
}

// evict forgets the oldest trace. The ring is a slice whose head moves:
// it is compacted once half of it is behind the head.
func (k *Kept) evict() {
	id := k.ring[0]
	k.ring = k.ring[1:]
	if cap(k.ring) < k.maxTraces/2 {
		k.ring = append(make([]trace.TraceID, 0, k.maxTraces), k.ring...)
	}
	t := k.traces[id]
	delete(k.traces, id)
	k.spans -= len(t.spans)
	for _, j := range t.jobs {
		if k.jobs[j] == id {
			delete(k.jobs, j)
		}
	}
}

// Spans returns the kept spans of trace id that origin may read: every
// one for "", else those with that origin. Truncated says some were not
// kept, or not given.
func (k *Kept) Spans(id trace.TraceID, origin string) types.TraceSpans {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := types.TraceSpans{Spans: []types.Span{}}
	t := k.traces[id]
	if t == nil {
		return out
	}
	for _, s := range t.spans {
		if origin == "" || s.origin == origin {
			out.Spans = append(out.Spans, s.span)
		}
	}
	out.Truncated = t.dropped
	return out
}

// Job returns the trace of a job's kept spans.
func (k *Kept) Job(job string) (trace.TraceID, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id, ok := k.jobs[job]
	return id, ok
}

// Shutdown does nothing: the spans stay readable.
func (k *Kept) Shutdown(context.Context) error { return nil }

// ForceFlush does nothing: nothing is buffered.
func (k *Kept) ForceFlush(context.Context) error { return nil }

// convert copies what is kept of a span, cut to its bounds, and its
// origin and job attributes.
func convert(s sdktrace.ReadOnlySpan) (sp types.Span, origin, job string) {
	sp = types.Span{
		TraceID: s.SpanContext().TraceID().String(), ID: s.SpanContext().SpanID().String(),
		Name: cut(s.Name(), maxName), Start: s.StartTime(), End: s.EndTime(),
	}
	if p := s.Parent(); p.IsValid() {
		sp.Parent = p.SpanID().String()
	}
	if st := s.Status(); st.Code == codes.Error {
		sp.Error = cut(st.Description, maxError)
		if sp.Error == "" {
			sp.Error = "error"
		}
	}
	for _, a := range s.Attributes() {
		switch key := string(a.Key); key {
		case OriginKey:
			origin = a.Value.AsString()
		case JobKey:
			job = a.Value.AsString()
		default:
			if len(sp.Attrs) >= maxAttrs {
				continue
			}
			if sp.Attrs == nil {
				sp.Attrs = make(map[string]string, min(len(s.Attributes()), maxAttrs))
			}
			sp.Attrs[cut(key, maxAttrKey)] = cut(a.Value.Emit(), maxAttrValue)
		}
	}
	return sp, origin, job
}

// Fit drops the newest spans of ts until its encoding is at most limit
// bytes, and marks it Truncated if it dropped any: the kept bounds make
// it rare, but a peer's text (a reject reason) may encode six times its
// length.
func Fit(ts types.TraceSpans, limit int) types.TraceSpans {
	for len(ts.Spans) > 0 {
		b, err := json.Marshal(ts)
		if err == nil && len(b) <= limit {
			return ts
		}
		ts.Spans, ts.Truncated = ts.Spans[:len(ts.Spans)/2], true
	}
	return ts
}

// cut shortens s to at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

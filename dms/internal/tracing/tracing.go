package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/opendms/dms/types"
)

// The bounds of the spans a node keeps in memory (docs/observability.md).
const (
	MaxTraces = 256
	MaxSpans  = 4096
)

// OriginKey names the attribute that says which peer's message started a
// span: its origin (see the package's doc). The node's own spans have none.
const OriginKey = "dms.origin"

// envEndpoints are the variables of the OpenTelemetry specification that
// name an OTLP endpoint; the exporter reads them itself.
var envEndpoints = []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"}

// ErrBadEndpoint is an OTLP endpoint that is not an http or https URL.
var ErrBadEndpoint = errors.New("tracing: OTLP endpoint")

// Config configures a Tracer.
type Config struct {
	// Node names the node in exported spans (service.instance.id): its PeerID.
	Node string
	// Endpoint is the OTLP/HTTP endpoint spans are exported to, as a URL
	// (http://localhost:4318); "" exports to the one the environment
	// names, if any, else nowhere.
	Endpoint string
}

// CheckEndpoint returns an error naming what is wrong with an OTLP
// endpoint; "" is none, and valid.
func CheckEndpoint(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w %q: want an http:// or https:// URL, such as http://localhost:4318", ErrBadEndpoint, endpoint)
	}
	return nil
}

// Tracer is one node's tracer. Its methods are safe for concurrent use.
type Tracer struct {
	tp       *sdktrace.TracerProvider
	tr       trace.Tracer
	kept     *Kept
	exported bool
}

// New starts a node's tracer.
func New(ctx context.Context, cfg Config) (*Tracer, error) {
	if err := CheckEndpoint(cfg.Endpoint); err != nil {
		return nil, err
	}
	kept := NewKept(MaxTraces, MaxSpans)
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSpanProcessor(kept),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "dms"), attribute.String("service.instance.id", cfg.Node))),
	}
	exported := cfg.Endpoint != "" || fromEnv()
	if exported {
		var eo []otlptracehttp.Option
		if cfg.Endpoint != "" {
			eo = append(eo, otlptracehttp.WithEndpointURL(tracesURL(cfg.Endpoint)))
		}
		exp, err := otlptracehttp.New(ctx, eo...)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &Tracer{tp: tp, tr: tp.Tracer("github.com/opendms/dms"), kept: kept, exported: exported}, nil
}

// tracesURL adds the traces path to a collector's URL that names none,
// as the exporter does to OTEL_EXPORTER_OTLP_ENDPOINT.
func tracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}

func fromEnv() bool {
	for _, v := range envEndpoints {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}

// Exported reports whether spans leave the node over OTLP.
func (t *Tracer) Exported() bool { return t.exported }

// closeWait bounds how long Close waits for the exporter to flush.
const closeWait = 2 * time.Second

// Close ends the tracer, flushing what the exporter still holds.
func (t *Tracer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	return t.tp.Shutdown(ctx)
}

type originKey struct{}

// Start starts a span, the child of ctx's span if any. In a context from
// Remote it carries its origin.
func (t *Tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if o, ok := ctx.Value(originKey{}).(string); ok {
		opts = append(opts, trace.WithAttributes(attribute.String(OriginKey, o)))
	}
	return t.tr.Start(ctx, name, opts...)
}

// maxTraceparent bounds the trace context a peer may send: version 00's
// is 55 characters; anything much longer is not worth parsing.
const maxTraceparent = 128

// Remote returns ctx with the span context that traceparent (a W3C
// traceparent from peer's message) names, and peer as the origin of the
// spans started in it. A traceparent that does not parse is ignored.
func Remote(ctx context.Context, traceparent, peer string) context.Context {
	return Parent(context.WithValue(ctx, originKey{}, peer), traceparent)
}

// Parent returns ctx with the span context that traceparent (a W3C
// traceparent from a client, not a peer: the spans started in it are the
// node's own) names. A traceparent that does not parse is ignored.
func Parent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" || len(traceparent) > maxTraceparent {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// Traceparent returns the W3C traceparent of ctx's span, "" if none.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// Spans returns the spans kept of trace id that origin may read: all of
// them for "" (the node itself), else those its messages started.
func (t *Tracer) Spans(id trace.TraceID, origin string) types.TraceSpans {
	return t.kept.Spans(id, origin)
}

// JobTrace returns the trace a job's spans on this node belong to, if
// some are kept (those with a JobKey attribute).
func (t *Tracer) JobTrace(job string) (trace.TraceID, bool) { return t.kept.Job(job) }

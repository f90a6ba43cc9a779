// Package tracing gives one DMS node its own OpenTelemetry tracer: a
// TracerProvider of its own (never the global one: many nodes run in one
// process), which keeps the node's recent finished spans in memory
// (Kept) and, when an OTLP endpoint is configured, exports them too.
//
// Invariants:
//   - Nothing leaves the node unless an OTLP endpoint is configured (by
//     Config.Endpoint or OTEL_EXPORTER_OTLP_ENDPOINT).
//   - The spans kept are bounded: at most MaxTraces traces and MaxSpans
//     spans together, the oldest trace going first, and at most
//     types.MaxTraceSpans of one trace.
//   - A span started in a context from Remote belongs to the peer whose
//     message carried that context (its origin), and so do its children:
//     Spans hands a peer only the spans its own messages started, so a
//     stranger that learnt a trace ID reads nothing of it.
//   - A malformed trace context is ignored: the spans start a trace of
//     their own, still owned by the peer that sent it.
//
// What a caller must do: Close the Tracer, which flushes the exporter.
package tracing

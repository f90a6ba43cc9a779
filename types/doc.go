// Package types holds only what crosses the wire or is shared by three or more
// packages: identities (NodeID, did:key), resource quantities and their
// arithmetic, money (Credits), metered usage, the signed capability record,
// content IDs, the signed Envelope and the closed set of protocol messages.
//
// Invariants:
//   - Resources arithmetic never goes negative silently: Sub reports whether the
//     subtrahend fit, and Fits is the only admission test.
//   - Every Message is carried in an Envelope signed by the Ed25519 key named by
//     its From did:key; Open verifies signature, expiry and size before decoding,
//     and decoding rejects unknown fields.
//   - Money is exact: Credits counts integer micro-credits, reads and writes
//     as a decimal of at most six places (never through a float), and its
//     arithmetic and Cost return ErrCreditsOverflow rather than wrap around.
//   - The set of messages is closed: Message has an unexported marker method.
//   - An envelope is at most MaxEnvelopeSize, an Invocation or a Status
//     MaxTaskEnvelopeSize (EnvelopeLimit): a task's input files are bounded
//     (InputFileProblems: MaxInputFiles, MaxInputFilesSize as JSON) so that
//     an Invocation naming them always fits.
//   - A Usage is integers only (nanoseconds, bytes, MiB × ms, calls), so
//     metered use adds up exactly.
//
// Nothing here does I/O, starts goroutines or reads the clock: callers pass time in.
package types

// Package types holds only what crosses the wire or is shared by three or more
// packages: identities (NodeID, did:key), resource quantities and their
// arithmetic, money (Credits), metered usage, the signed capability record,
// content IDs, the signed Envelope and the closed set of protocol messages.
//
// Invariants:
//   - Resources arithmetic never goes negative silently: Sub reports whether the
//     subtrahend fit, and Fits is the only admission test.
//   - A Message that Signed says must be signed is carried in an Envelope
//     signed by the Ed25519 key named by its From did:key; Open verifies
//     signature, expiry and size before decoding. Envelopes and bodies are
//     CBOR (codec.go): written deterministically, so a message encodes to
//     the same bytes each time, and read strictly (unknown fields,
//     duplicate keys, trailing data, a negative size or CPU are errors).
//   - Money is exact: Credits counts integer micro-credits, reads and writes
//     as a decimal of at most six places (never through a float), and its
//     arithmetic and Cost return ErrCreditsOverflow rather than wrap around.
//   - The set of messages is closed: Message has an unexported marker method.
//   - An envelope is at most MaxEnvelopeSize, an Invocation or a Status
//     MaxTaskEnvelopeSize (EnvelopeLimit): a task's input files are bounded
//     (InputFileProblems: MaxInputFiles, MaxInputFilesSize encoded) so that
//     an Invocation naming them always fits.
//   - A Usage is integers only (nanoseconds, bytes, MiB × ms, calls), so
//     metered use adds up exactly.
//
// Nothing here does I/O, starts goroutines or reads the clock: callers pass time in.
package types

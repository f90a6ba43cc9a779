// Package store is a node's embedded database: one badger directory per node
// home, holding JSON records under string keys (capability, locks,
// allocations, jobs) and content-addressed blobs.
//
// Invariants:
//   - A blob is stored under its own CID and is verified on the way in: Get
//     never returns bytes that do not hash to the CID asked for.
//   - Writes are durable against a process crash (SIGKILL): badger's write-ahead
//     log is in the page cache when Put returns. They are not synced for power
//     loss; that trade-off is documented in docs/architecture.md.
//   - Every method is safe for concurrent use.
package store

// Package store is a node's embedded database: JSON records under string
// keys (capability, locks, allocations, jobs, pins) in one badger directory
// per node home, and content-addressed blobs, one file each, kept under a
// budget by a collector whose choice (PlanCollection) is pure.
//
// Invariants:
//   - A blob is stored under its own CID and is verified on the way out:
//     Get never returns bytes that do not hash to the CID asked for.
//   - A blob's file appears whole or not at all (written aside, renamed into
//     place), and the index in memory changes with the files, under one
//     lock: Has says yes only for a blob whose file is there (a collection
//     may still remove it before a Get that follows; Get then says
//     ErrNotFound).
//   - Recency is in memory: Put, Get and Has mark a use without writing.
//   - A blob used after a collection was planned is not removed by it.
//   - Writes are durable against a process crash (SIGKILL): badger's write-ahead
//     log is in the page cache when Put returns, and so is a blob's file. They
//     are not synced for power loss; that trade-off is documented in
//     docs/architecture.md.
//   - Every method is safe for concurrent use.
package store

// Package flow plans workflows (docs/workflows.md): given a parsed
// jobs.Flow, a Plan says which step instances may start, with what inputs,
// as earlier instances finish. It is the pure core of the requester's
// workflow engine; the dms package is its shell (submitting jobs, making
// calls, persisting instances, serving the cache).
//
// Invariants:
//   - A step starts only when every step it needs has finished every
//     instance; its instances are expanded then (a for_each over another
//     step's outputs knows its items only then), in a deterministic order.
//   - An instance's inputs name blobs by CID with the peers that hold
//     them: outputs never pass through the requester.
//   - Equal CacheKeys mean the same program on the same bytes: a step's
//     result may be reused for any instance with its key.
//   - A Plan does no I/O, reads no clock and starts no goroutine; a shell
//     restarted after a crash rebuilds it by replaying the outcomes it
//     persisted, in the order Start offers the instances.
package flow

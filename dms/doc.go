// Package dms is DMS as a library: one call builds a whole node of the
// network, so a researcher can embed it, run hundreds in one process, or
// build a scheduler on top.
//
//	d, err := dms.New(dms.WithHome(home))   // a home made by dms.Init
//	err = d.Start(ctx)                       // libp2p host, DHT, gossipsub, Node, orchestrator, API
//	h, err := d.Submit(ctx, spec)            // auction, placement, run
//	job, err := h.Wait(ctx)
//	out, err := h.Stdout(ctx)
//	d.Close()
//
// A DMS wires a libp2p host (TCP and QUIC, Noise/TLS), a Kademlia DHT for
// discovery and provider records, a gossipsub topic for bid requests, the
// protoactor actor system running the Node actor (when the node offers
// compute), the orchestrator that auctions this node's jobs, a badger store,
// and the local HTTP API (package api). It runs workflows too (flows.go):
// SubmitFlow hands a jobs.Flow to a loop that follows the pure planner of
// package orchestrator/flow, running each step instance as a job (or a
// function call on the node's gateway) and recording it.
//
// Invariants:
//   - node and orchestrator never see libp2p: they talk through the narrow
//     Network interfaces that network.go implements, and a message to the
//     node's own PeerID is delivered in process.
//   - Every goroutine started here is owned by the DMS: Close cancels and
//     waits for all of them, then closes the database.
//   - Everything a node accepted is in its database before it answers:
//     locks and allocations (package node), jobs (every change), blobs.
//   - A flow's instances are recorded as they start and end (flowi/), so a
//     restarted node resumes the flow: it never reruns a completed
//     instance and follows the jobs of running ones; a completed job's
//     result is kept under its cache key (flowcache/) only once it ended
//     with exit code 0.
//   - An idle-only node (offer.idle, idle.go) offers no docker executor:
//     it counts only its own process's CPU as its own (the wasm units run
//     there), and a container's CPU would look like its owner's. It
//     refuses to start where the host's CPU use cannot be read (not
//     Linux), and with docker.mode on.
//   - The shared flow cache (sharedcache.go, flows.cache): a node that
//     shares publishes a signed record of a result only for an instance it
//     ran itself (never one it took from another node), without ever
//     holding up the flow, and again when a hit of its own cache finds the
//     last publication (flowshared/) missing or a day old. A node takes a
//     shared result only when its own cache misses, only from the nodes it
//     trusts (never itself), and only a completed one whose outputs are
//     CIDs, which it then keeps in its own cache with the node it came
//     from (CachedFrom). A step that is not cached (no cache key) is never
//     looked up nor shared.
//   - Receipts (receipts.go, docs/accounting.md): a receipt counts once on
//     each side. A requester keeps a receipt it countersigned and posts its
//     charge in one transaction of its database (or, for one of its
//     gateway's accounts, charges the gateway's ledger first, idempotently
//     under the receipt's digest); a provider keeps the countersignature
//     and posts its earning in one transaction. The same receipt again gets
//     the same answer and posts nothing; no receipt is judged before Start
//     has set every part it reads.
//   - The collector (collector.go) never removes a blob that an unfinished
//     job, a live allocation or a pin names, nor one used within
//     store.min_blob_age; it compacts old records and never deletes one.
//   - Traces (trace.go, calltrace.go, tracequery.go,
//     docs/observability.md): each node has a tracer of its own, and a
//     trace context from a peer or a caller is advisory: one that does not
//     parse is ignored, never a refusal. An untraced gateway call makes no
//     span and allocates nothing for tracing. A node answers a
//     trace query with the spans that the asking peer's own messages
//     started, nothing else; the spans it keeps are bounded.
package dms

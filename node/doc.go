// Package node is the provider's side of DMS on one machine: what the
// machine can do (hardware detection and micro-benchmarks), what its
// provider offers and at which price and conditions (the offer, energy), the
// ledger of registered, held, locked and running capability, the bid
// decision pipeline, the provider's protocol (Machine), and the Node actor
// that runs it: allocations, their executors, the node's records.
//
// The cores are pure: the Ledger, the bid Checks and the Machine do no I/O,
// start no goroutines and never read the clock; every method that needs
// time takes `now`. Machine is the whole protocol (bid requests, holds,
// accept -> lock -> confirm, invoke, cancel, expiry, the end of runs,
// restore after a restart) as a state machine: events in, and out first the
// records to write (Ready), then, given how the write went, the effects
// (Advance). The Node actor is its only shell: it writes the records to the
// Store, then sends, replies, notifies, starts and stops runs.
//
// Invariants:
//
//   - The ledger: in every dimension (cpu, memory, disk, gpus),
//     held + locked + running <= registered, at any time and under any
//     interleaving of concurrent auctions. A Hold backs a bid, a Lock is the
//     commit point after an Accept (re-checked, fenced by a fresh epoch, with
//     an expiry), and Start turns a lock into a running allocation. When the
//     provider lowers its offer below what is already committed, existing
//     locks stay but no new hold or lock is granted until usage fits again.
//   - Persist before send: no effect leaves before the records of its step
//     are durable; a lock whose record cannot be written is undone and its
//     accept rejected.
//   - Every allocation ID is used once: its record is kept for good, and
//     jobs.Transition judges each change of its state.
//   - Epochs are never issued twice: a restarted node takes the highest of
//     its records'.
//   - Every request the Node receives gets exactly one answer; a panic in
//     a step or in an allocation's run is contained (the run fails, the
//     node's fault) and the node goes on.
package node

// Package quorum decides the results of replicated work (docs/batches.md):
// each unit of a batch, or a job that asks for replication, runs on
// several distinct providers, and its canonical result is the one a quorum
// of them returned. It is BOINC's validator, as a pure state machine: a
// Batch says which replicas to issue next and with which nodes to avoid,
// and turns the replicas' returns, failures and missed deadlines into a
// verdict per unit. The dms package is its shell: it auctions the
// replicas as jobs, persists the events, and keeps the providers'
// reputation from the verdicts.
//
// Invariants:
//   - A unit's replicas run on distinct nodes: Ticket.Avoid names every
//     node that holds or held one of them, and a replica placed on one of
//     those anyway is refused (Placed).
//   - A verdict needs Quorum returned replicas, on distinct nodes, with
//     equal digests; a late replica (past its deadline) still counts. A
//     unit is decided once: later returns only add to the record of who
//     agreed and who did not.
//   - A unit issues at most MaxReplicas replicas; when those ran out
//     without a quorum, it fails saying why (quarantined), and the batch
//     goes on.
//   - With Adaptive, a unit starts with one replica; a trusted node's
//     result stands alone unless the shell spot-checks it (the coin is
//     tossed by the shell and comes with the event, so replaying the
//     events rebuilds the same state).
//   - Batch does no I/O, reads no clock and draws no random number.
package quorum

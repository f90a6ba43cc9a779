// Package node is the Node actor of one machine: what the machine can do
// (hardware detection and micro-benchmarks), what its provider offers and at
// which price and conditions (the offer, energy), the ledger of registered,
// available, held, locked and running capability, the bid decision pipeline,
// the allocations that run jobs, and the node's local database.
//
// The cores are pure: the Ledger and the bid Checks do no I/O, start no
// goroutines and never read the clock; every method that needs time takes
// `now`. The actor that owns them is the only shell that talks to the network,
// the store and the executors.
//
// The ledger invariant: in every dimension (cpu, memory, disk, gpus),
//
//	held + locked + running <= registered
//
// at any time and under any interleaving of concurrent auctions. A Hold backs a
// bid, a Lock is the commit point after an Accept (re-checked, fenced by a fresh
// epoch, with an expiry), and Start turns a lock into a running allocation. When
// the provider lowers its offer below what is already committed, existing locks
// stay but no new hold or lock is granted until usage fits again.
package node

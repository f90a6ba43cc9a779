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
// and the local HTTP API (package api).
//
// Invariants:
//   - node and orchestrator never see libp2p: they talk through the narrow
//     Network interfaces that network.go implements, and a message to the
//     node's own PeerID is delivered in process.
//   - Every goroutine started here is owned by the DMS: Close cancels and
//     waits for all of them, then closes the database.
//   - Everything a node accepted is in its database before it answers:
//     locks and allocations (package node), jobs (every change), blobs.
//   - The collector (collector.go) never removes a blob that an unfinished
//     job, a live allocation or a pin names, nor one used within
//     store.min_blob_age; it compacts old records and never deletes one.
package dms

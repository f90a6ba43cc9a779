// Package node is the provider's side of DMS on one machine: what the
// machine can do (hardware detection and micro-benchmarks), what its
// provider offers and at which price and conditions (the offer, energy,
// idle CPU only), the
// ledger of registered, held, locked and running capability, the bid
// decision pipeline, the provider's protocol (Machine), and the Node actor
// that runs it: allocations, their executors, the node's records, and the
// warm instances that serve calls (Node.Call).
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
//     an expiry), and Start turns a lock into a running allocation.
//   - Holds belong to bids: a hold is keyed by the allocation ID its bid
//     names (fresh, unguessable), and remembers requester, job, resources
//     and end. A requester has at most one hold per job; no other
//     requester can replace, drop or lock it. There is no lock without a
//     hold: an Accept is honoured only from the bid's requester, for its
//     job, before the hold's end, for exactly the resources bid. A refused
//     Accept changes nothing: no record, no lock.
//   - Fair share (HoldPolicy): a hold that fits in free capacity is
//     granted whatever its size; otherwise a requester whose claims (holds
//     and unstarted locks) stay within Share x registered evicts holds of
//     requesters beyond their share, newest first. Locks are never
//     evicted. A requester whose locks expire unused loses the room beyond
//     its share for a while (Penalty, at most MaxPenaltyFactor times). When the
//     provider lowers its offer below what is already committed, existing
//     locks stay but no new hold or lock is granted until usage fits again.
//   - Late binding (latebind.go): a bid request declined only as busy is
//     remembered (at most lateBindSize, lateBindPerRequester of one
//     requester, for lateBindFor after its last decline, never persisted),
//     and when capacity frees (a run ends, a cancel, an expiry, the host
//     idle again) the node bids on those that now fit, oldest first, each
//     as BidRequest would (checks, then a hold that counts against the
//     next). A bid, another decline, an accept or a withdrawal of the job
//     forgets it: a late bid goes only to a request declined as busy
//     within lateBindFor, once.
//   - Persist before send: no effect leaves before the records of its step
//     are durable; a lock whose record cannot be written is undone and its
//     accept rejected.
//   - Every allocation ID is used once (NewID), the record of an
//     allocation that started is kept for good, and jobs.Transition judges
//     each change of its state. A lock that ends without starting
//     (expired, cancelled, found at a restart) leaves no record: the shell
//     deletes it and appends it to the audit log (AuditPrefix), which
//     keeps the last AuditSize entries.
//   - Epochs are never issued twice: before a record is deleted node/epoch
//     is raised to the ledger's epoch, and a restarted node takes the
//     highest of node/epoch, its records' and its audit entries'.
//   - Warm instances (warm.go): an allocation whose task has Warm keeps
//     its program warm (jobs.Warmer) and serves Node.Call, at most
//     Warm.Concurrency calls at once (more are answered CallBusy, never
//     queued), each bounded by the lesser of the call's and the task's
//     timeout. Calls go through a registry of the Node keyed by
//     allocation, never through the actor: no round trip, no disk write,
//     one reply allocated. A call is answered CallUnknown unless the
//     instance is registered and its requester is the caller: another
//     peer cannot tell someone else's instance from none.
//   - A warm instance is a running allocation: its capability counts in
//     full in the ledger until its run returns, after the instance is
//     closed. It ends cancelled when its requester cancels it, failed
//     ("node shutting down") when the node closes or (the node's fault,
//     "stopped for the host's owner") when an idle-only node's host stops
//     being idle, and completed when
//     released: no call for Warm.KeepAlive ("released: idle for ..."),
//     its requester not connected for Config.OrphanGrace ("released:
//     requester gone"), or the provider lowered its offer below what is
//     locked and running ("released: the provider reclaimed its
//     capability": instances with no call in flight first, then the
//     longest idle, until it fits; instances already ending count as
//     freed). Its Result's DurationMillis is the instance's lifetime,
//     its Usage what the instance used in all (jobs.Instance.Usage, read
//     once it is closed).
//   - A warm instance ends in this order: out of the registry (new calls
//     get CallUnknown), its calls in flight waited for (at most their
//     timeout and a second; not at all when the node closes or the host's
//     owner needs it), Close
//     (which stops what still runs), then its final receipt.
//   - Inputs (run.go, inputs.go): an allocation fetches its module,
//     stdin and input archive from its requester, and each of its input
//     files (Task.Files; 16 at a time) from the first that has it of the
//     node's store, the file's From peers, the requester and the DHT's
//     providers (Network.FindProviders), verified by CID and kept in the
//     store. The input archive is unpacked under /inputs first, then the
//     files are placed there, read-only, through an os.Root. Input files
//     are checked again here (types.CheckInputFiles): a bad list, a file
//     over MaxBlob, files over MaxInputBytes together, or a file in the
//     archive's way fails the run as the program's fault (ErrBadInputs);
//     a file no source has, as the node's (ErrInputUnavailable), naming
//     its CID and path. A result names the size of each output (Sizes),
//     and carries what the run used (Usage: its executor's measure, with
//     its output files added to its output), also when it failed after
//     starting (a timeout, the memory limit); a cancelled or stopped run
//     has no result.
//   - Receipts (receipts.go): the node bills every allocation that ran
//     with a signed types.Receipt to its requester: the bid's price (the
//     hold, lock and record carry it) for the locked CPU over the
//     receipt's span (types.Cost), with what it used. A run ends with one
//     receipt (ID allocation/1, Final), written as pending in the same
//     write as the record of its end; a run with no result (cancelled,
//     stopped, lost in a restart) has none. A warm instance takes one of
//     the calls served since the last, and of what it used meanwhile
//     (types.Usage.Since the last receipt's), every Config.ReceiptCalls
//     calls or Config.ReceiptEvery, whichever comes first, and a Final
//     one when it ends, each only if it served a call since the last: the
//     time an instance idles after its last receipt is not billed. Seq
//     counts an instance's receipts from 1; From is the last receipt's
//     To (the instance's start for the first). Pending receipts
//     (PendingReceiptPrefix) are delivered by a goroutine of the Node
//     (Network.SendReceipt), tried again after a failure (1s, doubling,
//     at most 5 min; from the start after a restart) until the requester
//     countersigns or refuses one (ErrReceiptRefused), never from a call:
//     one at a time, a requester a round failed to reach skipped for the
//     rest of the round. A final receipt taken as the node closes stays
//     pending until it starts again.
//     A node that restarts fails its warm allocations like any running
//     one, without a final receipt.
//   - Idle-only nodes (idle.go, Config.Idle): a goroutine of the Node
//     reads the host's CPU times (CPUSampler) every Idle.SampleEvery(),
//     and the actor judges them with a pure watch: the node is idle once
//     the host's other processes (all but the node's own process, where
//     its wasm units run) have used at most Threshold of all its cores in
//     every sample of the last Period. It starts not idle, and a reading
//     that fails counts as not idle. While not idle, bid requests are
//     declined with the reason (Busy: only for now) and Accepts rejected.
//     When the host stops being idle, every live allocation ends failed,
//     the node's fault, saying why: a lock at once, a run when it stops
//     (Stop with ByNode), so that its requester places it elsewhere.
//
// Bounds on what one peer can make the node keep (the defaults):
//
//   - mailbox: 4,096 messages from the network queued in all; a bid
//     request finding it full is dropped, a request waits.
//   - holds: 64 per requester, 4,096 in all (when full, the requester
//     with the most gives its newest up to one with fewer); each has cpu
//     and memory (bid requests for none are declined) and ends at most
//     BidHold after its bid window.
//   - locks: each consumed a hold, so it holds capability: they are
//     bounded by the registered capability, and end at LockTTL unless
//     invoked.
//   - pending accepts: only within one step, at most the mailbox's.
//   - records: alloc/ records only of allocations that started (each ran
//     under a lock); audit/ entries: AuditSize in all; bid/ records
//     (bidlog.go), one per bid request answered, kept off the actor's
//     path (in memory until a goroutine of the Node writes them,
//     bidBatch a write, at most bidPending waiting: more are counted
//     lost, not kept) and dropped by their owner's retention
//     (ExpireBids); idx/ keys (index.go): two per record, derived from
//     the records, written and deleted in the same write as theirs, and
//     rebuilt (RebuildIndex) at a start that finds IndexVersionKey
//     missing or older.
//   - memory of evicted bids and unused locks (for their requester's
//     answers): 1,024 in all; penalties: one per requester whose lock
//     expired within the last MaxPenaltyFactor Penalties.
//   - warm instances: each is a running allocation, bounded by the
//     registered capability; calls in flight: Warm.Concurrency (at most
//     types.MaxWarmConcurrency) per instance; receipts: one instance's in
//     flight at a time, its counts held in a few integers.
//   - Every request the Node receives gets exactly one answer; a panic in
//     a step or in an allocation's run is contained (the run fails, the
//     node's fault) and the node goes on.
package node

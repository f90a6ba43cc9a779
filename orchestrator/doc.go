// Package orchestrator is the requester's side of DMS: it auctions a job to
// the nodes, invokes it on the winner, follows its status, and retries it on
// another node when an attempt fails.
//
// It is built as pure state machines inside a thin shell, in the manner of
// etcd's raft:
//
//   - Ranking (rank.go) orders bids: filters (malformed, over the max price,
//     duplicate peer), then weighted scorers that each normalise to 0..1
//     across the candidates (price, capability score, load: PackScorer in
//     BinpackRanking, the default, or LoadScorer in SpreadRanking). A job whose
//     task names input files adds a LocalityScorer of them to its own
//     Ranking (the share of the input bytes a bidder holds, absolute,
//     weighted JobConfig.LocalityWeight: DefaultLocalityWeight, 2).
//   - Reputation (reputation.go) is the requester's memory of peers: a
//     penalty per peer that decays with a half-life, read by every auction
//     through Standing.
//   - Auction (auction.go) is one placement attempt: it collects bids, closes
//     the window as soon as it can (enough bids, every expected node answered,
//     or the deadline), ranks, and offers the job to one candidate at a time
//     until one confirms. With enough bids in, it waits a short grace
//     (AuctionConfig.HolderGrace, 50ms) for the nodes holding the job's
//     input files that have not answered yet, and no longer.
//   - Job (job.go, jobrun.go) is a job's whole life across attempts:
//     pending -> bidding -> placed -> running -> completed | failed | cancelled,
//     with two budgets of attempts (Retries for the program's failures,
//     Reschedule for the nodes'), a backoff between attempts (100ms
//     doubling, at most 5s) and an optional overall deadline. A job that
//     found only busy nodes waits for capacity (QueueTimeout) and takes a
//     node's late bid, unasked, at once: an attempt opened on that bid
//     alone, charged to no budget if it does not place the job (lateBid).
//   - Orchestrator (orchestrator.go) is the shell: it owns the jobs, does the
//     network I/O through the Network interface, persists the jobs through
//     Store (saver.go: off the loop, so a slow disk never holds up an
//     auction), and serves Watch.
//
// Auction and Job do no I/O, start no goroutine and read no clock: every
// event carries the time, outputs accumulate as Actions until drained, and
// NextDeadline tells the caller when to call Tick. That makes them
// deterministic to test and replay.
//
// # Invariants
//
//   - At most one placed allocation per attempt: an auction emits Placed at
//     most once, and only for the one offer it is waiting on.
//   - Two nodes never both hold a job for long: every offer given up on
//     (rejected, unanswered, or pending when the job ends), every late
//     confirm, every lost node and every allocation that reports running
//     after its attempt ended gets a Release.
//   - Exactly one result per job: only the current attempt's allocation can
//     complete the job; statuses from earlier allocations (a node declared
//     lost that finished after all) are noted in their attempt and ignored;
//     terminal states are final.
//   - A node is lost when its status stream breaks, or stays silent for a
//     lease (Config.Lease, 1s by default): nodes repeat their status every
//     quarter of the lease named in the Invocation. The job then releases
//     the node and is auctioned again within its Reschedule budget and
//     deadline.
//   - Every failed attempt is charged to one budget (Attempt.Charge), and
//     the job fails once one is overdrawn: its reason says which.
//   - Persist before send: an Invoke is sent only once the Store holds a
//     record of the job at or after its placement, so a requester killed
//     at any moment never auctions again a job that may be running; if the
//     record cannot be saved, the invocation is not sent, the node is
//     released and the attempt fails (Job.NotSaved). A Release that ends a
//     job (a cancel, a passed deadline) is sent only once the terminal
//     record is saved, so a restart never resumes a job whose node was
//     told to stop. The waiting is done by the action's goroutine, never
//     by the loop.
//   - A job is in the Store before Submit returns, with its spec (Record),
//     and a restarted requester hands the records to Restore: placed and
//     running jobs are invoked again with their lock's epoch (the node
//     re-attaches, or answers with the final status), an interrupted
//     auction is dropped, charged to no budget, and the job bids again.
//   - An offer names the allocation ID its bid chose (Bid.Allocation): the
//     requester never makes one up. A bid with no ID, or one already bid
//     in the job, is dropped; a bid whose hold expired is not offered.
//   - A node that failed a job (did not confirm an Accept of it, or lost
//     it) is not offered that job again while another node bids.
//   - Peers are remembered in a Reputation (reputation.go): misbehaviour
//     is observed by the machines (Observe) and recorded by the shell,
//     which saves it through a PeerStore. Peers in poor standing are
//     offered jobs after the others; no auction waits for an Unheard peer
//     (silent or lost, and no answer since): a node cut off still looks
//     subscribed, and waiting for it held auctions open for their whole
//     window.
//   - Every terminal state has a human Reason, for example
//     "no node bid: 5 nodes declined: memory: need 900 TiB, offered 8 GiB (5 nodes)".
//
// # Decisions
//
// A failed attempt is charged to Retries when the job itself is why: its
// program failed (types.FaultProgram, or no fault named: a job never runs
// again on a guess) or exited non-zero, or no node bid for it. It is
// charged to Reschedule when a node or the network is why: the node lost,
// unable to run the program (types.FaultNode), refusing or not receiving
// its invocation, cancelling on its own, or every bidder failing to
// confirm; so is a placement the requester could not save. A lost node is
// not the job's fault, so by default (3 reschedules) it costs the job
// nothing but time; a job that must never run twice sets RescheduleNever,
// and a lost node then fails it. A non-zero exit is a failed run while a
// retry is left and completes the job when none is, with its code and the
// number of attempts in the reason.
//
// An auction that finds no bidder counts as an attempt and is retried while
// the budget and deadline allow: nodes free up, and the backoff spaces the
// retries. A spec with Retries 0 fails at once with the auction's reason.
//
// The shell runs one loop goroutine that owns every job. A job event takes
// microseconds, so one owner is no bottleneck; it needs no locks in the core,
// orders all events of a job, lets a finished job still release a late
// confirm, and makes Close simple. Network calls run in short-lived
// goroutines (one per publish, accept, release and invocation) that report
// back to the loop; an invocation's goroutine has a helper that reads the
// status stream, so that it can watch the lease while a read blocks, and
// waits for it before returning. Each Watch has a goroutine that forwards
// snapshots, so a slow reader never blocks the loop. A lost stream is read
// on until its job ends, so a late status from the node is recorded. A
// finished job stays in memory for Config.Retain (10s), long enough to
// release a late confirm, then only the Store has it: memory is bounded by
// the jobs of the last seconds. The loop keeps the active jobs in a heap
// by next deadline, refiled after each of a job's events, so an event
// costs O(log n) in the jobs in flight, not a scan of them. Every
// goroutine is started by the loop and waited for by Close.
//
// # What the Network must do
//
// Deliver bids and declines for our requests to HandleBid and
// HandleDecline, after checking that the envelope's signer is the node the
// message names (the orchestrator trusts Bid.Node.PeerID). Honour ctx in
// every call and in StatusStream.Recv. Treat Cancel as idempotent: it is
// also sent to nodes that rejected an accept or never locked, because a
// reject may be a lost answer to an accept the node did lock for, and to
// nodes whose bid came after the auction closed (without an allocation ID:
// withdraw the bid). Return the node's answer to a Cancel when it is a
// Status: a completed or failed one, from a node thought lost, is recorded.
package orchestrator

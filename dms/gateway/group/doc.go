// Package group replicates a small state machine over a group of gateways,
// on hashicorp/raft: every member applies the same commands in the same
// order, so the gateways of a group share their state (function queues'
// leases, quotas, anything that must be decided once) and one of them,
// the leader, can act for all.
//
// The parts:
//   - Group (group.go) runs raft for one member: Open starts it (it does
//     not wait for a leader), Apply commits a command, Add and Remove
//     change membership, Members, Leader, Healthy and Watch say how the
//     group stands, Close stops it.
//   - The caller's FSM is wrapped (fsm.go) to keep the index applied on
//     this member, which Apply and WaitApplied wait on.
//   - Raft's log and stable store live in the node's badger
//     (store.RaftLog, under "raft/<Name>/"); its snapshots in Config.Dir.
//   - Transport (transport.go) carries two channels between members,
//     addressed by member ID: "raft", raft's own RPCs through its network
//     transport, and "rpc" (rpc.go), this package's: a follower forwards
//     applies and membership changes to the leader, all of them on one
//     connection, multiplexed by request ID.
//   - The monitor (monitor.go) turns raft's observations (leader, peers,
//     failed and resumed heartbeats) into Members' Alive and Watch's
//     signals.
//
// Invariants:
//   - Apply returns only once this member's FSM applied the command: a
//     read right after, on any member, sees it (read-your-writes).
//   - A command is retried at a new leader only if it was surely not
//     appended (nothing sent, or raft refused it as not leader before
//     appending). Any other failure after it may have reached the leader
//     wraps ErrNoQuorum and is ambiguous: it may still commit. Commands
//     must therefore be idempotent (carry an ID, or set rather than add).
//   - A connection on either channel is accepted only from a member of
//     raft's latest configuration or, before this member has one, from
//     Config.Peers; any other is closed at once.
//   - On Open with existing state, raft restores the latest snapshot into
//     the FSM, then replays the log after it: FSM.Restore must replace the
//     whole state, and FSM.Apply must be deterministic.
//   - After a forwarded command commits, the leader appends a barrier (at
//     most one in flight), so the follower learns of the commit at once
//     rather than after raft's CommitTimeout.
//
// What a caller must do: give every founder the same Peers; open a new
// member with Join and the current members as Peers, then Add it from any
// member; Close the group before closing its DB.
package group

package group

import "errors"

var (
	// ErrNoQuorum: no leader could be reached, or the leader could not
	// commit. An error that wraps it after the command may have reached the
	// leader is ambiguous: the command may still be committed. The caller
	// answers 503 and makes its commands idempotent.
	ErrNoQuorum = errors.New("group: no quorum")
	// ErrNotMember: the ID is not in the group's configuration.
	ErrNotMember = errors.New("group: not a member")
	// ErrClosed: the group was closed.
	ErrClosed = errors.New("group: closed")
	// ErrTooLarge: a command, result or request is over MaxMessage.
	ErrTooLarge = errors.New("group: message too large")
)

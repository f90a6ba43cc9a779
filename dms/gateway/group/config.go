package group

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"time"

	"github.com/opendms/dms/dms/internal/store"
)

// FSM is the replicated state machine. Its methods are called from one
// goroutine at a time, in log order.
type FSM interface {
	// Apply applies the command committed at index and returns the result
	// that goes back to the proposer. It must be deterministic: the same
	// commands in the same order give the same state and results on every
	// member.
	Apply(index uint64, cmd []byte) []byte
	// Snapshot takes a consistent view of the state; applies are paused
	// during the call (not during Persist).
	Snapshot() (Snapshot, error)
	// Restore replaces the whole state with a snapshot's: nothing of the
	// state before may survive it (on Open, raft restores the latest
	// snapshot, then replays the log after it).
	Restore(r io.Reader) error
}

// Snapshot is a view taken by FSM.Snapshot.
type Snapshot interface {
	// Persist writes the view; it may run while applies go on.
	Persist(w io.Writer) error
	// Release is called once the snapshot is written, or given up.
	Release()
}

// Config says which group this member is in and how it runs.
type Config struct {
	// Name is the group's name ([a-z0-9][a-z0-9-]{0,62}); it is part of
	// nothing on disk but the raft prefix in DB.
	Name string
	// Self is this member's ID (a libp2p peer ID in production).
	Self string
	// Dir holds raft's snapshots (the two latest).
	Dir string
	// DB holds raft's log and stable store, under "raft/<Name>/".
	DB *store.DB
	// Transport carries the group's connections.
	Transport Transport
	// FSM is the replicated state.
	FSM FSM
	// Peers are the founders' IDs (Self may be among them). With no raft
	// state yet and !Join, the member bootstraps the group {Self}+Peers:
	// every founder must be given the same set. Until this member has a
	// configuration, only Peers may connect to it, so a joining member
	// lists the members that may add it.
	Peers []string
	// Join: never bootstrap; wait to be added by a member (Add) and
	// replicated to.
	Join bool
	// Logger receives raft's warnings and errors and this package's
	// debug lines; nil discards them.
	Logger *slog.Logger

	// Timing; 0 takes the default, chosen so that a leader lost is
	// replaced within about 1 to 1.5 s on loopback: HeartbeatTimeout
	// 500ms, ElectionTimeout 500ms, LeaderLeaseTimeout 250ms, DownAfter
	// 600ms (see Member.Alive). LeaderLeaseTimeout must not exceed
	// HeartbeatTimeout, nor HeartbeatTimeout ElectionTimeout.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout, DownAfter time.Duration
	// SnapshotThreshold: entries between snapshots (0: 4096). As many
	// entries are kept behind a snapshot (raft's TrailingLogs), so a
	// member that lags by fewer catches up from the log.
	SnapshotThreshold uint64
}

const commitTimeout = 5 * time.Millisecond

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (c *Config) validate() error {
	var errs []error
	if !namePattern.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("name %q is not of the pattern [a-z0-9][a-z0-9-]{0,62}", c.Name))
	}
	if c.Self == "" {
		errs = append(errs, errors.New("no Self"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("no Dir"))
	}
	if c.DB == nil {
		errs = append(errs, errors.New("no DB"))
	}
	if c.Transport == nil {
		errs = append(errs, errors.New("no Transport"))
	}
	if c.FSM == nil {
		errs = append(errs, errors.New("no FSM"))
	}
	for _, p := range c.Peers {
		if p == "" {
			errs = append(errs, errors.New("an empty peer ID"))
		}
	}
	c.withDefaults()
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout || c.HeartbeatTimeout > c.ElectionTimeout {
		errs = append(errs, fmt.Errorf("timeouts: need LeaderLeaseTimeout %s <= HeartbeatTimeout %s <= ElectionTimeout %s",
			c.LeaderLeaseTimeout, c.HeartbeatTimeout, c.ElectionTimeout))
	}
	for _, d := range []time.Duration{c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.DownAfter} {
		if d < 5*time.Millisecond {
			errs = append(errs, fmt.Errorf("timeout %s: below raft's 5ms", d))
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("group: config: %w", err)
	}
	return nil
}

func (c *Config) withDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, 500*time.Millisecond)
	def(&c.ElectionTimeout, max(500*time.Millisecond, c.HeartbeatTimeout))
	def(&c.LeaderLeaseTimeout, min(250*time.Millisecond, c.HeartbeatTimeout))
	def(&c.DownAfter, 600*time.Millisecond)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 4096
	}
}

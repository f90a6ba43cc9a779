package orchestrator

import (
	"fmt"
	"time"

	"github.com/opendms/dms/types"
)

// JobSpec is everything a job needs to be auctioned and run. The task's
// Executor and Resources are what nodes bid on.
type JobSpec struct {
	ID          types.JobID       `json:"id"` // optional for Submit, which then generates one; required by NewJob
	Name        string            `json:"name,omitempty"`
	Task        types.Task        `json:"task"`
	Constraints types.Constraints `json:"constraints"`
	Retries     int               `json:"retries,omitempty"`     // attempts after those whose program failed or exited non-zero, or that found no bidder; 0 = none
	BidWindow   time.Duration     `json:"bid_window,omitempty"`  // how long each auction waits for bids; 0 = default (2s)
	EnoughBids  int               `json:"enough_bids,omitempty"` // close an auction as soon as this many bids are in; 0 = default (3)
	Deadline    time.Duration     `json:"deadline,omitempty"`    // the whole job must end within this long of its creation; 0 = no limit
	// QueueTimeout bounds how long the job waits for busy nodes to free
	// capacity: an auction with no bid in which some node declined only
	// because it was busy runs again after a backoff, without spending a
	// retry. 0 = no waiting: such an auction fails the attempt.
	QueueTimeout time.Duration `json:"queue_timeout,omitempty"`
	// Reschedule is how many attempts the job gets after those that failed
	// through no fault of its program: the node lost, unable to run the
	// program (types.FaultNode) or refusing its invocation, an auction in
	// which no bidder confirmed, the placement not saved. They are not
	// charged to Retries. 0 = DefaultReschedule; RescheduleNever = none:
	// such a fault fails the job, which never runs twice.
	Reschedule int `json:"reschedule,omitempty"`
	// Avoid names nodes that must not run the job, whoever else bids:
	// those that hold other replicas of its unit (docs/batches.md).
	Avoid []string `json:"avoid,omitempty"`
	// Spread names a group of jobs that run on distinct nodes: an auction
	// drops the bids of the nodes that hold, are offered or ran another
	// job of the group (a unit's replicas, submitted at once).
	Spread string `json:"spread,omitempty"`
}

// Reschedule settings of a JobSpec.
const (
	DefaultReschedule = 3
	RescheduleNever   = -1
)

// reschedules is how many attempts the spec allows after node faults.
func (s JobSpec) reschedules() int {
	switch s.Reschedule {
	case 0:
		return DefaultReschedule
	case RescheduleNever:
		return 0
	}
	return s.Reschedule
}

func (s JobSpec) validate() error {
	switch {
	case s.ID == "":
		return fmt.Errorf("%w: no job ID", ErrInvalidSpec)
	case s.Task.Executor == "":
		return fmt.Errorf("%w: job %s names no executor", ErrInvalidSpec, s.ID)
	case s.Task.Resources.Negative():
		return fmt.Errorf("%w: job %s asks for negative resources (%s)", ErrInvalidSpec, s.ID, s.Task.Resources)
	case s.Retries < 0 || s.BidWindow < 0 || s.EnoughBids < 0 || s.Deadline < 0 || s.QueueTimeout < 0:
		return fmt.Errorf("%w: job %s has a negative retries, bid window, enough bids, deadline or queue timeout", ErrInvalidSpec, s.ID)
	case s.Reschedule < RescheduleNever:
		return fmt.Errorf("%w: job %s has reschedule %d (want a count, 0 for the default %d, or RescheduleNever)", ErrInvalidSpec, s.ID, s.Reschedule, DefaultReschedule)
	case s.Constraints.MaxPrice < 0:
		return fmt.Errorf("%w: job %s has max price %s", ErrInvalidSpec, s.ID, s.Constraints.MaxPrice)
	}
	return nil
}

// JobConfig is what a job takes from its orchestrator rather than its spec.
type JobConfig struct {
	Requester      string        // our PeerID, named in every bid request
	ConfirmTimeout time.Duration // how long each auction winner has to confirm; 0 = default (2s)
	Ranking        Ranking       // no scorers = DefaultRanking()
	Standing       Standing      // the requester's memory of peers, read by every auction; nil = none
	// LocalityWeight weighs the LocalityScorer a job whose task names
	// input files adds to Ranking: 0 = DefaultLocalityWeight, NoLocality
	// = none.
	LocalityWeight float64
	// Taken lists the nodes that hold, are offered or ran the jobs of a
	// Spread group other than self; nil = none. The orchestrator reads it
	// from its loop, as every auction closes.
	Taken func(spread string, self types.JobID) []string
}

// Locality weights (JobConfig.LocalityWeight, Config.LocalityWeight).
// DefaultLocalityWeight is twice price's and capability's weight in
// DefaultRanking, four times load's: a bidder holding all of a job's input
// bytes beats one that holds none unless the other is better by more than
// 2 in price, capability and load together (each scores 0 to 1 among the
// bids): locality settles what price and load leave close. A node that
// cannot run the job never bids, whatever it holds.
const (
	DefaultLocalityWeight = 2
	NoLocality            = -1
)

func (c JobConfig) withDefaults() JobConfig {
	if len(c.Ranking.Scorers) == 0 {
		c.Ranking.Scorers = DefaultRanking().Scorers
	}
	if c.LocalityWeight == 0 {
		c.LocalityWeight = DefaultLocalityWeight
	}
	return c
}

func (c JobConfig) validate() error {
	if c.ConfirmTimeout < 0 {
		return fmt.Errorf("%w: negative confirm timeout %s", ErrInvalidConfig, c.ConfirmTimeout)
	}
	if err := checkLocalityWeight(c.LocalityWeight); err != nil {
		return err
	}
	return c.Ranking.validate()
}

// checkLocalityWeight accepts a finite weight of 0 or more, or NoLocality.
func checkLocalityWeight(w float64) error {
	if w != NoLocality && !finiteNonNegative(w) {
		return fmt.Errorf("%w: locality weight %v (want 0 or more, or NoLocality)", ErrInvalidConfig, w)
	}
	return nil
}

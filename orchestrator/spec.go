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
	Retries     int               `json:"retries,omitempty"`     // attempts allowed after the first one fails; 0 = a single attempt
	BidWindow   time.Duration     `json:"bid_window,omitempty"`  // how long each auction waits for bids; 0 = default (2s)
	EnoughBids  int               `json:"enough_bids,omitempty"` // close an auction as soon as this many bids are in; 0 = default (3)
	Deadline    time.Duration     `json:"deadline,omitempty"`    // the whole job must end within this long of its creation; 0 = no limit
	// QueueTimeout bounds how long the job waits for busy nodes to free
	// capacity: an auction with no bid in which some node declined only
	// because it was busy runs again after a backoff, without spending a
	// retry. 0 = no waiting: such an auction fails the attempt.
	QueueTimeout time.Duration `json:"queue_timeout,omitempty"`
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
		return fmt.Errorf("%w: job %s has a negative retries, bid window, enough bids or deadline", ErrInvalidSpec, s.ID)
	case !finiteNonNegative(s.Constraints.MaxPrice):
		return fmt.Errorf("%w: job %s has max price %v", ErrInvalidSpec, s.ID, s.Constraints.MaxPrice)
	}
	return nil
}

// JobConfig is what a job takes from its orchestrator rather than its spec.
type JobConfig struct {
	Requester      string        // our PeerID, named in every bid request
	ConfirmTimeout time.Duration // how long each auction winner has to confirm; 0 = default (2s)
	Ranking        Ranking       // no scorers = DefaultRanking()
}

func (c JobConfig) withDefaults() JobConfig {
	if len(c.Ranking.Scorers) == 0 {
		c.Ranking.Scorers = DefaultRanking().Scorers
	}
	return c
}

func (c JobConfig) validate() error {
	if c.ConfirmTimeout < 0 {
		return fmt.Errorf("%w: negative confirm timeout %s", ErrInvalidConfig, c.ConfirmTimeout)
	}
	return c.Ranking.validate()
}

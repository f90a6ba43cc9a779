package orchestrator

import (
	"fmt"
	"maps"
	"time"

	"github.com/opendms/dms/types"
)

// Status handles a status report from a node. Only the current attempt's
// allocation moves the job; a status from an earlier allocation is noted in
// its attempt and ignored, and if that node still holds or runs the job it
// is told to stop, so that two nodes never both hold it.
func (j *Job) Status(s types.Status, now time.Time) {
	j.advance(now)
	if s.JobID != j.info.ID {
		return
	}
	if s.AllocationID != "" && s.AllocationID == j.alloc {
		j.currentStatus(s, now)
		return
	}
	j.staleStatus(s, now)
}

// NodeLost reports that the shell lost the node running allocation alloc
// (its status stream died before a final status). The node is told to stop,
// in case it is alive, and the attempt fails.
func (j *Job) NodeLost(alloc types.AllocationID, reason string, now time.Time) {
	j.advance(now)
	if alloc == "" || alloc != j.alloc {
		return
	}
	peer := j.holders[alloc].Node.PeerID
	j.release(alloc, "the requester lost contact: "+reason)
	j.attemptFailed(fmt.Sprintf("lost node %s: %s", peer, reason), now)
}

// Cancel stops the job for its submitter: whatever node holds the job, or is
// being offered it, is released. It returns ErrJobDone if the job already
// ended.
func (j *Job) Cancel(reason string, now time.Time) error {
	j.advance(now)
	if j.info.State.Terminal() {
		return fmt.Errorf("%w: job %s is %s", ErrJobDone, j.info.ID, j.info.State)
	}
	why := "cancelled by its submitter"
	if reason != "" {
		why = "cancelled: " + reason
	}
	j.stop(why, now)
	j.finish(types.JobCancelled, why, now)
	return nil
}

func (j *Job) currentStatus(s types.Status, now time.Time) {
	peer := j.holders[j.alloc].Node.PeerID
	switch s.State {
	case types.AllocRunning:
		if j.info.State == types.JobPlaced {
			j.setState(types.JobRunning, "", now)
		}
	case types.AllocCompleted:
		if s.Result == nil {
			j.attemptFailed(fmt.Sprintf("node %s reported completion without a result", peer), now)
			return
		}
		j.complete(*s.Result, peer, now)
	case types.AllocFailed:
		j.attemptFailed(fmt.Sprintf("failed on node %s: %s", peer, orUnknown(s.Reason)), now)
	case types.AllocCancelled:
		j.attemptFailed(fmt.Sprintf("cancelled on node %s: %s", peer, orUnknown(s.Reason)), now)
	}
}

func (j *Job) complete(r types.Result, peer string, now time.Time) {
	r.Files = maps.Clone(r.Files)
	j.info.Result = &r
	j.finish(types.JobCompleted, fmt.Sprintf("completed on node %s with exit code %d", peer, r.ExitCode), now)
}

func (j *Job) staleStatus(s types.Status, now time.Time) {
	att := j.attemptOf(s.AllocationID)
	if att == nil {
		return
	}
	if s.State.Terminal() {
		j.note(att, fmt.Sprintf("ignored a %s status from node %s after the attempt ended", s.State, att.Node), now)
		return
	}
	if !j.released[s.AllocationID] {
		j.release(s.AllocationID, "the job no longer runs on this node")
		j.note(att, fmt.Sprintf("node %s still reported %s after the attempt ended: told it to stop", att.Node, s.State), now)
	}
}

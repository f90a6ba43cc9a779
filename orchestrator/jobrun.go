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
// (its status stream died before a final status, or stayed silent for a
// lease, or the invocation could not be delivered). The node is told to
// stop, in case it is alive, is observed lost, and the attempt fails,
// charged to Reschedule.
func (j *Job) NodeLost(alloc types.AllocationID, reason string, now time.Time) {
	j.advance(now)
	if alloc == "" || alloc != j.alloc {
		return
	}
	peer := j.holders[alloc].Node.PeerID
	j.release(alloc, "the requester lost contact: "+reason)
	j.emit(Observe{Peer: peer, Event: EventLost})
	j.attemptFailed(fmt.Sprintf("lost node %s: %s", peer, reason), ChargeReschedule, now)
}

// NotSaved reports that no record of the placement of alloc could be saved,
// so the shell did not send its invocation: a requester that restarted
// would not know the job was placed, and would run it a second time. The
// node is told to drop its lock, and the attempt fails, charged to
// Reschedule: the requester's disk is not the program's fault.
func (j *Job) NotSaved(alloc types.AllocationID, reason string, now time.Time) {
	j.advance(now)
	if alloc == "" || alloc != j.alloc {
		return
	}
	peer := j.holders[alloc].Node.PeerID
	j.release(alloc, "the requester could not record the placement")
	j.attemptFailed(fmt.Sprintf("placed on node %s, not invoked: the job could not be saved: %s", peer, reason), ChargeReschedule, now)
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

// currentStatus moves the job on a status of its current allocation, and
// keeps in its attempt what the allocation used, when a final status says.
// A failure is charged to Retries when the program is to blame (its Fault,
// or none named: a job never runs again on a guess) and to Reschedule when
// the node is. A non-zero exit is a failed run of the program while a retry
// and the time for it are left; after that it completes the job.
func (j *Job) currentStatus(s types.Status, now time.Time) {
	peer := j.holders[j.alloc].Node.PeerID
	if s.State.Terminal() && s.Result != nil && s.Result.Usage != nil {
		u := *s.Result.Usage
		j.attempt().Usage = &u
	}
	switch s.State {
	case types.AllocRunning:
		if j.info.State == types.JobPlaced {
			j.setState(types.JobRunning, "", now)
		}
	case types.AllocCompleted:
		switch {
		case s.Result == nil:
			j.attemptFailed(fmt.Sprintf("node %s reported completion without a result", peer), ChargeReschedule, now)
		case s.Result.ExitCode != 0 && j.mayRetry(now):
			j.attemptFailed(fmt.Sprintf("the program exited with code %d on node %s", s.Result.ExitCode, peer), ChargeRetry, now)
		default:
			j.complete(*s.Result, peer, now)
		}
	case types.AllocFailed:
		c := ChargeRetry
		if s.Fault == types.FaultNode {
			c = ChargeReschedule
		}
		j.attemptFailed(fmt.Sprintf("failed on node %s: %s", peer, orUnknown(s.Reason)), c, now)
	case types.AllocCancelled:
		j.attemptFailed(fmt.Sprintf("cancelled on node %s: %s", peer, orUnknown(s.Reason)), ChargeReschedule, now)
	}
}

// mayRetry reports whether a retry is left, and the time to start it.
func (j *Job) mayRetry(now time.Time) bool {
	return j.left(ChargeRetry) > 0 && j.timeFor(backoff(j.spent()+1), now)
}

// complete ends the job with the result of its current allocation. A
// non-zero exit code completes it only once retries or time ran out, which
// the reason says.
func (j *Job) complete(r types.Result, peer string, now time.Time) {
	r.Files = maps.Clone(r.Files)
	r.Sizes = maps.Clone(r.Sizes)
	if r.Usage != nil {
		u := *r.Usage
		r.Usage = &u
	}
	j.info.Result = &r
	why := fmt.Sprintf("completed on node %s with exit code %d", peer, r.ExitCode)
	if n := j.spent() + 1; r.ExitCode != 0 && n > 1 {
		why += fmt.Sprintf(" after %d attempts", n)
	}
	if r.ExitCode != 0 && j.left(ChargeRetry) > 0 {
		why += "; no time left to retry before the job deadline"
	}
	j.finish(types.JobCompleted, why, now)
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

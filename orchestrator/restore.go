package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opendms/dms/types"
)

// Record is what a Store keeps of a job: its latest snapshot, and the spec
// that RestoreJob needs to go on with it after a restart. Its JSON is the
// snapshot's with a "spec" field added, so a reader that wants only the
// snapshot decodes a Record as a JobInfo.
type Record struct {
	JobInfo
	Spec JobSpec `json:"spec"`
}

// RestoreJob rebuilds a job from its record, as a restarted requester does.
// Nothing happens until Resume. Auctions in progress when the record was
// saved are gone: their bids and offers were for a process that no longer
// exists.
func RestoreJob(rec Record, cfg JobConfig) (*Job, error) {
	cfg = cfg.withDefaults()
	switch {
	case rec.Spec.ID == "":
		return nil, fmt.Errorf("%w: job %s: the record holds no spec", ErrInvalidSpec, rec.ID)
	case rec.Spec.ID != rec.ID:
		return nil, fmt.Errorf("%w: job %s: the record holds the spec of job %s", ErrInvalidSpec, rec.ID, rec.Spec.ID)
	}
	if err := rec.Spec.validate(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	j := &Job{
		spec: rec.Spec, cfg: cfg, info: rec.JobInfo.clone(),
		auctions: make([]*Auction, len(rec.Attempts)),
		holders:  make(map[types.AllocationID]types.Bid),
		released: make(map[types.AllocationID]bool),
	}
	if j.info.Attempts == nil {
		j.info.Attempts = []Attempt{}
	}
	if rec.Spec.Deadline > 0 {
		j.deadline = rec.CreatedAt.Add(rec.Spec.Deadline)
	}
	for _, a := range j.info.Attempts {
		if a.AllocationID == "" {
			continue
		}
		j.holders[a.AllocationID] = types.Bid{JobID: rec.ID, Node: types.NodeID{PeerID: a.Node}, Addrs: a.Addrs}
		if a.Outcome != OutcomeActive {
			j.released[a.AllocationID] = true
		}
	}
	return j, nil
}

// Resume goes on with a restored job at now. A job placed or running on a
// node is invoked there again with its lock's epoch: the node re-attaches
// the requester to the running allocation, starts it if it was only
// locked, answers with its final status if it ended meanwhile, and refuses
// it if the lock expired (the attempt then fails and the job is auctioned
// again). A job that was bidding loses that auction, charged to no budget,
// and bids again at once, as does a job waiting to retry. A job
// whose deadline passed meanwhile fails with that reason.
func (j *Job) Resume(now time.Time) {
	if j.info.State.Terminal() {
		return
	}
	att := j.active()
	switch {
	case j.info.placedAttempt() != nil:
		j.alloc, j.info.Node = att.AllocationID, att.Node
		j.note(att, "the requester restarted and invoked the allocation again", now)
		j.emit(Invoke{Peer: att.Node, Addrs: att.Addrs, Invocation: types.Invocation{
			JobID: j.info.ID, AllocationID: att.AllocationID, Epoch: att.Epoch, Task: j.spec.Task,
		}})
	case att != nil:
		att.Outcome, att.Reason, att.EndedAt, att.Interrupted = OutcomeFailed, "interrupted: the requester restarted during the auction", now, true
		fallthrough
	default:
		j.info.Node = ""
		j.retryAt = now
		j.setState(types.JobPending, "the requester restarted: bidding again", now)
	}
	j.advance(now)
}

// Returning reports whether a restored job goes back to the node it was
// placed on (Resume invokes its allocation there again) rather than to a
// new auction, which needs the requester to have found its peers.
func (r Record) Returning() bool { return r.placedAttempt() != nil }

// placedAttempt is the attempt in progress of a job placed or running,
// when it names its allocation; nil otherwise.
func (i *JobInfo) placedAttempt() *Attempt {
	if (i.State != types.JobPlaced && i.State != types.JobRunning) || len(i.Attempts) == 0 {
		return nil
	}
	a := &i.Attempts[len(i.Attempts)-1]
	if a.Outcome != OutcomeActive || a.AllocationID == "" {
		return nil
	}
	return a
}

// active returns the attempt in progress, if any.
func (j *Job) active() *Attempt {
	if len(j.info.Attempts) == 0 || j.attempt().Outcome != OutcomeActive {
		return nil
	}
	return j.attempt()
}

// Restore takes back the jobs of a restarted requester from their records
// and resumes each (see Job.Resume). Records of terminal jobs and of jobs
// already known are skipped. A record that cannot be resumed (no spec, an
// invalid one) fails its job with the reason, so that no job stays pending
// forever; the error names each such record. It returns how many jobs it
// resumed.
func (o *Orchestrator) Restore(ctx context.Context, recs []Record) (int, error) {
	var resumed int
	var errs []error
	err := o.call(ctx, func(now time.Time) error {
		for _, rec := range recs {
			if _, known := o.jobs[rec.ID]; known || rec.State.Terminal() || rec.ID == "" {
				continue
			}
			j, err := RestoreJob(rec, o.jobCfg)
			if err != nil {
				errs = append(errs, err)
				j = &Job{info: rec.JobInfo.clone()}
				j.finish(types.JobFailed, "cannot resume after a restart of the requester: "+err.Error(), now)
			}
			e := o.add(j)
			o.mu.Lock()
			o.infos[rec.ID] = rec.JobInfo.clone() // the Observer is told only what changes from the record
			o.mu.Unlock()
			j.Resume(now)
			o.flush(e)
			if !j.Done() {
				resumed++
			}
		}
		return nil
	})
	return resumed, errors.Join(append(errs, err)...)
}

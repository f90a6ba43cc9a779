package dms

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator/quorum"
	"github.com/opendms/dms/types"
)

// A replicated job (jobs.Spec.Replication > 1) runs as a batch of one
// unit: its replicas on distinct nodes, its result the one a quorum of
// them returned. Its job ID is the batch's ("b-..."); GetJob, WatchJob
// and CancelJob show and stop it as a job.

// replicatedBatch is the one-unit batch a replicated job runs as.
func replicatedBatch(spec *jobs.Spec) *jobs.Batch {
	t := *spec
	t.Replication, t.Quorum = 0, 0
	return &jobs.Batch{Name: spec.Name, Template: t, Units: jobs.Units{Params: []jobs.Param{{}}},
		Replication: spec.Replication, Quorum: spec.Quorum, Parallel: spec.Replication}
}

// submitReplicated submits a replicated job as batch id ("": a new one).
func (d *DMS) submitReplicated(ctx context.Context, spec *jobs.Spec, id string) (api.Job, error) {
	if id == "" {
		id = newID("b-")
	}
	if _, err := d.submitBatch(ctx, replicatedBatch(spec), id); err != nil {
		return api.Job{}, err
	}
	return d.batchJob(ctx, id)
}

// isBatchJob reports whether id may name a replicated job: one that is
// no job of the orchestrator's.
func isBatchJob(id string, err error) bool {
	return errors.Is(err, api.ErrNotFound) && strings.HasPrefix(id, "b-")
}

// batchJob shows the one-unit batch id as a job: running until its unit
// is decided, completed with the verdict's result and a node that
// returned it, failed with why no quorum formed.
func (d *DMS) batchJob(ctx context.Context, id string) (api.Job, error) {
	b, err := d.GetBatch(ctx, id)
	if err != nil {
		return api.Job{}, err
	}
	if b.Spec.Len() != 1 || b.Spec.Replication < 2 {
		return api.Job{}, fmt.Errorf("%w: job %q (%s is a batch of %d units: see dms batch)", api.ErrNotFound, id, id, b.Spec.Len())
	}
	units, err := d.BatchUnits(ctx, id, 0, 1)
	if err != nil {
		return api.Job{}, err
	}
	u := units[0]
	j := api.Job{ID: id, Name: b.Name, State: types.JobPending, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt}
	switch {
	case u.State == api.BatchCompleted:
		j.State, j.Result, j.Node = types.JobCompleted, u.Result, u.Node
		j.Reason = fmt.Sprintf("completed: %d of %d replicas agreed", agreeing(u), len(u.Replicas))
	case u.State == api.BatchFailed:
		j.State, j.Reason = types.JobFailed, u.Failure
	case b.State == api.BatchCancelled:
		j.State, j.Reason = types.JobCancelled, b.Reason
	case u.State == api.BatchRunning:
		j.State = types.JobRunning
	}
	for i, r := range u.Replicas {
		j.Attempts = append(j.Attempts, api.Attempt{AllocationID: fmt.Sprintf("%s-0-%d", id, i), Node: r.Node, State: r.State.String(), Reason: r.Reason})
	}
	return j, nil
}

// agreeing counts the replicas that returned the unit's verdict.
func agreeing(u api.BatchUnit) int {
	n := 0
	for _, r := range u.Replicas {
		if r.State == quorum.Returned && r.Digest == u.Digest {
			n++
		}
	}
	return n
}

// watchBatchJob streams a replicated job as its batch changes.
func (d *DMS) watchBatchJob(ctx context.Context, id string) (<-chan api.Job, error) {
	src, err := d.WatchBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan api.Job)
	d.goDo(func(dctx context.Context) {
		defer close(out)
		for range src {
			j, err := d.batchJob(ctx, id)
			if err != nil {
				return
			}
			select {
			case out <- j:
			case <-ctx.Done():
				return
			case <-dctx.Done():
				return
			}
		}
	})
	return out, nil
}

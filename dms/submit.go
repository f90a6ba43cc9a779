package dms

import (
	"context"
	"fmt"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

// Handle follows one job submitted with Submit.
type Handle struct {
	ID     string
	d      *DMS
	events <-chan api.Job
}

// Submit uploads the spec's local module, input directory and stdin into
// this node's store and submits the job. The handle streams the job's
// states; Wait returns the final one.
func (d *DMS) Submit(ctx context.Context, spec *jobs.Spec) (*Handle, error) {
	if err := api.Upload(ctx, d, spec); err != nil {
		return nil, err
	}
	job, err := d.SubmitJob(ctx, spec)
	if err != nil {
		return nil, err
	}
	events, err := d.WatchJob(ctx, job.ID)
	if err != nil {
		return nil, err
	}
	return &Handle{ID: job.ID, d: d, events: events}, nil
}

// Events delivers every state of the job until it ends, then closes. It is
// shared with Wait: a state read here is not seen there.
func (h *Handle) Events() <-chan api.Job { return h.events }

// Wait returns the job once it has ended (completed, failed or cancelled).
func (h *Handle) Wait(ctx context.Context) (api.Job, error) {
	var last api.Job
	for {
		select {
		case j, ok := <-h.events:
			if !ok {
				if last.ID == "" {
					return h.d.GetJob(ctx, h.ID)
				}
				return last, nil
			}
			last = j
		case <-ctx.Done():
			return last, ctx.Err()
		}
	}
}

// Stdout returns the standard output of a completed job, fetched from the
// node that ran it and verified against its CID.
func (h *Handle) Stdout(ctx context.Context) ([]byte, error) {
	j, err := h.d.GetJob(ctx, h.ID)
	if err != nil {
		return nil, err
	}
	if j.Result == nil {
		return nil, fmt.Errorf("%w: job %s is %s and has no result", api.ErrConflict, h.ID, j.State)
	}
	return h.d.GetBlob(ctx, j.Result.Stdout)
}

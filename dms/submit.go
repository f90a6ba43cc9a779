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

// RunFlow uploads what a flow names on the local disk (modules, input
// directories, for_each directories) into this node's store and submits
// the flow; follow it with WaitFlow or WatchFlow.
func (d *DMS) RunFlow(ctx context.Context, f *jobs.Flow) (api.Flow, error) {
	if err := api.UploadFlow(ctx, d, f); err != nil {
		return api.Flow{}, err
	}
	return d.SubmitFlow(ctx, f)
}

// WaitFlow follows a flow to its end and returns it, with its instances
// and outputs.
func (d *DMS) WaitFlow(ctx context.Context, id string) (api.Flow, error) {
	for {
		events, err := d.WatchFlow(ctx, id)
		if err != nil {
			return api.Flow{}, err
		}
		for ev := range events {
			if ev.Flow != nil && api.FlowEnded(ev.Flow.State) {
				return *ev.Flow, nil
			}
		}
		// The watch ended early: a slow watcher is dropped, or the node
		// is closing. Read the flow again.
		if err := ctx.Err(); err != nil {
			return api.Flow{}, err
		}
		if err := d.running(); err != nil {
			return api.Flow{}, err
		}
	}
}

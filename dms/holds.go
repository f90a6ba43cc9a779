package dms

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// A job submitted to this node that bills an account of its gateway, and
// bounds what it may cost (max_price x CPU x timeout), holds that much of
// the account's credits from its admission (reserve) until the first of:
//   - a receipt of it is charged: the charge's entry releases the hold
//     (receipts.go), in the same change of the gateway's state;
//   - it ends: jobEnded releases what is still held (a job that failed
//     before running, or was cancelled, is billed nothing; a receipt that
//     comes after is charged without a hold).
//
// The hold is named after the job (holdID) in the gateway's book, which
// the gateway's group replicates; held lists this node's jobs that took
// one. A node that stops before it could release a hold finds it at its
// next start (sweepHolds).

func holdID(job types.JobID) string { return "job/" + string(job) }

// releaseWait bounds the release of a hold: a change of the gateway's
// group state.
const releaseWait = 30 * time.Second

// jobEnded is the orchestrator's Ended: it ends the job's trace, and
// releases the hold of a job that took one, off the orchestrator's loop.
func (d *DMS) jobEnded(info orchestrator.JobInfo) {
	d.traces.jobEnded(info)
	if _, ok := d.held.LoadAndDelete(info.ID); ok {
		d.goDo(func(context.Context) { d.releaseHold(info.ID) })
	}
}

// releaseHold frees the hold of job id, if it has one; a failure is
// logged, and the next start tries again.
func (d *DMS) releaseHold(id types.JobID) {
	d.held.Delete(id)
	if !d.up.Load() {
		return // sweepHolds will
	}
	ctx, cancel := context.WithTimeout(d.ctx, releaseWait)
	defer cancel()
	if err := d.gw.ReleaseHold(ctx, holdID(id)); err != nil && d.ctx.Err() == nil {
		d.log.Warn("releasing a job's hold on its account's credits", "job", id, "err", err)
	}
}

// sweepHolds, as the node starts, releases the holds of its jobs that
// ended while it was not there to, and follows those that still run. A
// hold of a job this node does not know was taken by another member of
// its gateway's group: that member releases it.
func (d *DMS) sweepHolds(ctx context.Context) {
	holds, err := d.gw.Holds(holdID(""))
	if err != nil {
		d.log.Warn("listing the holds of jobs", "err", err)
		return
	}
	for _, h := range holds {
		id := types.JobID(strings.TrimPrefix(h.ID, holdID("")))
		info, err := d.jobInfo(string(id))
		switch {
		case errors.Is(err, api.ErrNotFound):
			continue
		case err != nil:
			d.log.Warn("reading a held job", "job", id, "err", err)
			continue
		case !info.State.Terminal():
			d.held.Store(id, struct{}{})
			// It may have ended since it was read, before jobEnded could
			// find it held.
			if info, err = d.jobInfo(string(id)); err != nil || !info.State.Terminal() {
				continue
			}
			if _, ok := d.held.LoadAndDelete(id); !ok {
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		d.releaseHold(id)
	}
}

package node

import (
	"slices"
	"time"

	"github.com/opendms/dms/types"
)

// Late binding (Sparrow's, turned around for an auction): a node that
// declines a bid request only because its capacity is in use (a Busy
// decline) remembers the request for lateBindFor, and when capacity frees
// (a run ends, a lock or hold is released or expires, the host is idle
// again) it bids on the requests that now fit, oldest first, each backed
// by a hold as any bid is. The requester's job, waiting to auction again,
// takes such a bid at once (orchestrator.Job.Bid) instead of finding the
// room at its next poll.
//
// The list is bounded: lateBindSize requests in all, lateBindPerRequester
// of one requester (a requester that floods the node with jobs cannot
// crowd the others out); a request past those is not remembered, and its
// requester finds the room by asking again, as before. A request of the
// same job replaces the earlier one; a bid, a decline for another reason,
// an accept or a withdrawal for the job drops it.
const (
	lateBindSize         = 256
	lateBindPerRequester = 32
	// lateBindFor is how long a busy decline is remembered: longer than a
	// waiting job's longest pause between auctions (a second), whose next
	// busy decline remembers it again; a job placed elsewhere or given up
	// is forgotten soon after.
	lateBindFor = 3 * time.Second
)

// lateRequest is a bid request declined as busy, remembered until until.
type lateRequest struct {
	req   types.BidRequest
	until time.Time
}

// remember keeps req, just declined as busy, for late binding.
func (m *Machine) remember(req *types.BidRequest, now time.Time) {
	m.forget(req.Requester, req.JobID)
	if len(m.waiting) >= lateBindSize {
		return
	}
	n := 0
	for _, w := range m.waiting {
		if w.req.Requester == req.Requester {
			n++
		}
	}
	if n >= lateBindPerRequester {
		return
	}
	m.waiting = append(m.waiting, lateRequest{req: *req, until: now.Add(lateBindFor)})
}

// forget drops the requester's remembered request for job, if any.
func (m *Machine) forget(requester string, job types.JobID) {
	m.waiting = slices.DeleteFunc(m.waiting, func(w lateRequest) bool {
		return w.req.JobID == job && w.req.Requester == requester
	})
}

// bindLate bids on the remembered requests that fit the capacity free at
// now, oldest first, each as BidRequest would (the check pipeline, then a
// hold, which counts against the next), with a hold of BidHold from now:
// their bid windows closed long ago. Expired requests are dropped; those
// that still do not fit wait.
func (m *Machine) bindLate(now time.Time) {
	if len(m.waiting) == 0 || m.host != "" {
		return
	}
	avail := m.ledger.Available(now)
	kept := m.waiting[:0]
	for _, w := range m.waiting {
		switch {
		case !now.Before(w.until):
			continue
		case !w.req.Resources.Fits(avail):
			kept = append(kept, w)
			continue
		}
		h, reasons := m.hold(&w.req, now.Add(m.cfg.BidHold), now)
		if len(reasons) > 0 {
			kept = append(kept, w)
			continue
		}
		req := w.req
		m.emit(Send{To: req.Requester, Addrs: req.ReplyAddrs, Deadline: h.Until, Request: &req, Msg: m.bid(&req, h, now)})
		avail = m.ledger.Available(now)
	}
	clear(m.waiting[len(kept):])
	m.waiting = kept
}

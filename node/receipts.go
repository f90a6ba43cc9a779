package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opendms/dms/types"
)

// PendingReceiptPrefix keys the receipts the node issued and their
// requesters have not answered yet, each under PendingReceiptPrefix + its
// ID: a run's is written in the same write as the record of its end, a
// warm instance's as it is taken, so that a restart delivers them still.
const PendingReceiptPrefix = "receipt-out/"

// Delivering receipts: each attempt gets receiptTimeout; after a failure
// a receipt waits receiptRetry, doubling up to receiptRetryCap, and is
// tried again until its requester countersigns or refuses it. A restart
// starts the waits again.
const (
	receiptTimeout  = 5 * time.Second
	receiptRetry    = time.Second
	receiptRetryCap = 5 * time.Minute
)

func pendingKey(rc *types.Receipt) string { return PendingReceiptPrefix + rc.ID }

// receipt returns the receipt of a run that ended with a result (it ran:
// completed, or failed after it started, as a timeout), or nil: a warm
// instance's receipts are taken as it serves (goReceipts), and a run that
// was cancelled, stopped or lost in a restart has no result and is not
// billed. It spans the run, StartedAt to EndedAt.
func (r *Allocation) receipt() (*types.Receipt, error) {
	if r.Result == nil || r.Task == nil || r.Task.Warm != nil || r.StartedAt.IsZero() || !r.State.Terminal() {
		return nil, nil
	}
	rc := &types.Receipt{
		ID: types.ReceiptID(r.AllocationID, 1), JobID: r.JobID, AllocationID: r.AllocationID,
		Requester: r.Requester, Account: r.Task.Account, Seq: 1, From: r.StartedAt, To: r.EndedAt, Final: true,
		Resources: r.Resources, Price: r.Price, Usage: r.Result.Usage,
	}
	var err error
	rc.Amount, err = rc.Bill()
	return rc, err
}

// outbox delivers the node's pending receipts, one at a time, from a
// goroutine of the Node (goOutbox). Its methods are safe for concurrent use.
type outbox struct {
	n     *Node
	store Store
	kick  chan struct{} // a receipt was queued
}

// retry is when a receipt that failed is tried again, and the wait after that.
type retry struct {
	at   time.Time
	wait time.Duration
}

// queue writes a receipt as pending and wakes the delivery.
func (o *outbox) queue(rc *types.Receipt) error {
	if err := o.store.Put(pendingKey(rc), rc); err != nil {
		return err
	}
	o.wake()
	return nil
}

func (o *outbox) wake() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// goOutbox delivers pending receipts until the node closes: at once, when
// one is queued, and when a failed one is due again.
func (n *Node) goOutbox(o *outbox) {
	n.goDo(func(ctx context.Context) {
		retries := map[string]retry{}
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			next := o.deliver(ctx, retries)
			t.Stop()
			var due <-chan time.Time
			if !next.IsZero() {
				t.Reset(time.Until(next))
				due = t.C
			}
			select {
			case <-ctx.Done():
				return
			case <-o.kick:
			case <-due:
			}
		}
	})
}

// deliver sends every pending receipt that is due, and returns when the
// first of those that failed is due again (zero: none).
func (o *outbox) deliver(ctx context.Context, retries map[string]retry) time.Time {
	var pending []*types.Receipt
	err := o.store.Scan(PendingReceiptPrefix, func(key string, v []byte) error {
		var rc types.Receipt
		if err := json.Unmarshal(v, &rc); err != nil {
			return fmt.Errorf("node: decoding %s: %w", key, err)
		}
		pending = append(pending, &rc)
		return nil
	})
	if err != nil {
		o.n.cfg.Logger.Error("reading pending receipts", "err", err)
	}
	var next time.Time
	down := map[string]bool{} // requesters a delivery of this round failed to reach
	for _, rc := range pending {
		if ctx.Err() != nil {
			return time.Time{}
		}
		r, failed := retries[rc.ID]
		if failed && time.Now().Before(r.at) {
			next = earliest(next, r.at)
			continue
		}
		if !down[rc.Requester] {
			if o.send(ctx, rc) {
				delete(retries, rc.ID)
				continue
			}
			down[rc.Requester] = true // its other receipts wait too, rather than time out each
		}
		r.wait = min(max(2*r.wait, receiptRetry), receiptRetryCap)
		r.at = time.Now().Add(r.wait)
		retries[rc.ID] = r
		next = earliest(next, r.at)
	}
	return next
}

// send delivers one receipt and reports whether it is done with: its
// requester countersigned or refused it (then it is no longer pending).
func (o *outbox) send(ctx context.Context, rc *types.Receipt) bool {
	log := o.n.cfg.Logger
	actx, cancel := context.WithTimeout(ctx, receiptTimeout)
	err := o.n.net.SendReceipt(actx, rc.Requester, rc)
	cancel()
	switch {
	case errors.Is(err, ErrReceiptRefused):
		log.Warn("receipt refused", "receipt", rc.ID, "requester", rc.Requester, "amount", rc.Amount, "err", err)
	case err != nil:
		log.Debug("receipt not delivered yet", "receipt", rc.ID, "requester", rc.Requester, "err", err)
		return false
	}
	if err := o.store.Write(nil, []string{pendingKey(rc)}); err != nil {
		log.Error("dropping a delivered receipt", "receipt", rc.ID, "err", err)
		return false // sent again: its requester answers as before
	}
	return true
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// receipts is the account of one instance's receipts: what the last one
// covered, and when it ended.
type receipts struct {
	n    *Node
	w    *instance
	seq  uint64
	last tally
	used types.Usage // the instance's usage at the last receipt
	from time.Time
}

// goReceipts takes w's receipts, in a goroutine owned by the node, until
// w ends: one every ReceiptCalls calls or ReceiptEvery, whichever comes
// first, when it served calls since the last, and a final one when it
// ends, if it served any since. Each is queued in the outbox.
func (n *Node) goReceipts(w *instance) {
	n.goDo(func(ctx context.Context) {
		r := &receipts{n: n, w: w, from: w.started}
		t := time.NewTicker(n.cfg.ReceiptEvery)
		defer t.Stop()
		for {
			select {
			case <-w.kick:
			case <-t.C:
			case <-w.ended: // retire closes it, even when the node closes
				r.take(true)
				return
			}
			if ctx.Err() == nil { // closing: the final receipt takes these calls
				r.take(false)
			}
		}
	})
}

// take turns the calls served since the last receipt, and what the
// instance used meanwhile, into a new one and queues it; with no call, it
// takes nothing (the next receipt's span covers the time). The receipt
// bills the instance's locked CPU for its span, From to To.
func (r *receipts) take(final bool) {
	now := r.n.cfg.Clock()
	r.w.mu.Lock()
	t := r.w.tally
	r.w.sent = t.calls
	r.w.mu.Unlock()
	if t.calls == r.last.calls {
		return
	}
	used := r.w.usage()
	period := used.Since(r.used)
	r.seq++
	rc := &types.Receipt{
		ID: types.ReceiptID(r.w.alloc, r.seq), JobID: r.w.job, AllocationID: r.w.alloc,
		Requester: r.w.requester, Account: r.w.account, Seq: r.seq,
		Calls: t.calls - r.last.calls, Failed: t.failed - r.last.failed,
		BusyMillis: t.busy.Milliseconds() - r.last.busy.Milliseconds(),
		From:       r.from, To: now, Final: final, Resources: r.w.res, Price: r.w.price, Usage: &period,
	}
	r.last, r.used, r.from = t, used, now
	var err error
	if rc.Amount, err = rc.Bill(); err == nil {
		err = r.n.outbox.queue(rc)
	}
	if err != nil {
		r.n.cfg.Logger.Error("warm instance: receipt lost", "receipt", rc.ID, "calls", rc.Calls, "err", err)
	}
}

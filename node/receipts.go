package node

import (
	"context"
	"time"

	"github.com/opendms/dms/types"
)

// Delivering a receipt: each attempt gets receiptTimeout; a failed one is
// tried again receiptAttempts times in all, receiptRetry apart (doubling),
// then the receipt is logged and dropped.
const (
	receiptTimeout  = 5 * time.Second
	receiptAttempts = 3
	receiptRetry    = 200 * time.Millisecond
)

// receipts is the account of one instance's receipts: what the last one
// covered, and when it ended.
type receipts struct {
	n    *Node
	w    *instance
	seq  uint64
	last tally
	from time.Time
}

// goReceipts sends w's receipts to its requester, in a goroutine owned by
// the node, until w ends: one every ReceiptCalls calls or ReceiptEvery,
// whichever comes first, when it served calls since the last, and a final
// one when it ends, if it served any since.
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
				r.send(context.WithoutCancel(ctx), true)
				return
			}
			if ctx.Err() == nil { // closing: the final receipt takes these calls
				r.send(ctx, false)
			}
		}
	})
}

// send takes the calls served since the last receipt into a new one and
// delivers it; with none, it sends nothing.
func (r *receipts) send(ctx context.Context, final bool) {
	now := r.n.cfg.Clock()
	r.w.mu.Lock()
	t := r.w.tally
	r.w.sent = t.calls
	r.w.mu.Unlock()
	if t.calls == r.last.calls {
		return
	}
	r.seq++
	rc := &types.Receipt{
		JobID: r.w.job, AllocationID: r.w.alloc, Requester: r.w.requester, Seq: r.seq,
		Calls: t.calls - r.last.calls, Failed: t.failed - r.last.failed,
		BusyMillis: t.busy.Milliseconds() - r.last.busy.Milliseconds(),
		From:       r.from, To: now, Final: final,
	}
	r.last, r.from = t, now
	r.n.deliverReceipt(ctx, rc)
}

// deliverReceipt sends a receipt, trying again after a failure; a receipt
// that cannot be delivered is logged and dropped (its requester sees a gap
// in the sequence).
func (n *Node) deliverReceipt(ctx context.Context, rc *types.Receipt) {
	wait := receiptRetry
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, receiptTimeout)
		err := n.net.SendReceipt(actx, rc.Requester, rc)
		cancel()
		if err == nil {
			return
		}
		if attempt == receiptAttempts {
			n.cfg.Logger.Warn("warm instance: receipt dropped", "allocation", rc.AllocationID, "seq", rc.Seq, "calls", rc.Calls, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			n.cfg.Logger.Warn("warm instance: receipt dropped", "allocation", rc.AllocationID, "seq", rc.Seq, "err", ctx.Err())
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

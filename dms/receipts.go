package dms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/types"
)

// Receipts of warm instances, kept by their requester: each is the signed
// envelope its provider sent (evidence: DESIGN.md, what is signed), under
// receipt/<job>/<allocation>/<seq>. A receipt counts once: one already
// kept under its sequence is acknowledged again and not stored twice.
const receiptPrefix = "receipt/"

// receiptSkew is how far in the future a receipt's end may lie: the
// provider's clock against ours.
const receiptSkew = 30 * time.Second

// ErrBadReceipt means a receipt was refused; the error says why.
var ErrBadReceipt = errors.New("dms: receipt refused")

// Receipt is a kept receipt and the envelope that carried it.
type Receipt struct {
	types.Receipt
	Provider string `json:"provider"` // the PeerID that signed it
	Envelope []byte `json:"envelope"` // the signed envelope, as received
}

func receiptKey(r *types.Receipt) string {
	return fmt.Sprintf("%s%s/%s/%020d", receiptPrefix, r.JobID, r.AllocationID, r.Seq)
}

// keepReceipt checks a receipt from peer against the job it names (ours,
// with an attempt on peer under that allocation), and keeps it. env is
// the envelope it came in, nil for one of our own node's.
func (d *DMS) keepReceipt(from string, env *types.Envelope, r *types.Receipt) error {
	if err := d.checkReceipt(from, r); err != nil {
		d.receiptsRefused.Add(1)
		return err
	}
	var raw []byte
	if env != nil {
		var err error
		if raw, err = env.Marshal(); err != nil {
			return err
		}
	}
	d.receiptMu.Lock()
	defer d.receiptMu.Unlock()
	key := receiptKey(r)
	if found, err := d.db.Lookup(key, &Receipt{}); err != nil || found {
		return err
	}
	return d.db.Put(key, Receipt{Receipt: *r, Provider: from, Envelope: raw})
}

// checkReceipt says why a receipt cannot be ours to keep.
func (d *DMS) checkReceipt(from string, r *types.Receipt) error {
	switch {
	case r.Requester != d.host.ID():
		return fmt.Errorf("%w: it names requester %s", ErrBadReceipt, r.Requester)
	case r.Seq == 0:
		return fmt.Errorf("%w: sequence 0", ErrBadReceipt)
	case r.To.Before(r.From):
		return fmt.Errorf("%w: it ends (%s) before it begins (%s)", ErrBadReceipt, r.To, r.From)
	case r.To.After(d.opts.clock().Add(receiptSkew)):
		return fmt.Errorf("%w: it ends in the future (%s)", ErrBadReceipt, r.To)
	case r.Failed > r.Calls || r.BusyMillis < 0:
		return fmt.Errorf("%w: %d failed of %d calls, %d ms busy", ErrBadReceipt, r.Failed, r.Calls, r.BusyMillis)
	}
	info, ok := d.orch.Job(r.JobID)
	if !ok {
		return fmt.Errorf("%w: no job %s here", ErrBadReceipt, r.JobID)
	}
	for _, a := range info.Attempts {
		if a.AllocationID == r.AllocationID && a.Node == from {
			return nil
		}
	}
	return fmt.Errorf("%w: job %s has no allocation %s on %s", ErrBadReceipt, r.JobID, r.AllocationID, from)
}

// Receipts returns the receipts kept for a job's warm instances, oldest
// first within each allocation.
func (d *DMS) Receipts(ctx context.Context, job string) ([]Receipt, error) {
	if err := d.running(); err != nil {
		return nil, err
	}
	var out []Receipt
	err := d.db.Scan(receiptPrefix+job+"/", func(_ string, v []byte) error {
		var r Receipt
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = append(out, r)
		return ctx.Err()
	})
	return out, err
}

// handleReceipts serves ReceiptProtocol: providers' receipts of our warm
// instances.
func (d *DMS) handleReceipts() {
	d.host.Handle(p2p.ReceiptProtocol, func(_ context.Context, from string, env *types.Envelope, msg types.Message) (types.Message, error) {
		r, ok := msg.(*types.Receipt)
		if !ok {
			return nil, fmt.Errorf("dms: %s is not a receipt", msg.Kind())
		}
		return nil, d.keepReceipt(from, env, r)
	})
}

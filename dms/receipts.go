package dms

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/dms/ledger"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// Receipts (docs/accounting.md). A requester keeps every receipt it
// countersigned, with the signed envelope its provider sent (evidence:
// DESIGN.md, what is signed), under receipt/<job>/<allocation>/<seq>, and
// posts its charge to the node's books in the same transaction, or, for
// a receipt naming one of the node's gateway's accounts, to the gateway's
// ledger (countReceipt says how that counts once). A
// provider keeps every receipt its requester countersigned, with the
// signed countersignature, under earned/<receipt ID>, and posts its
// earning in the same transaction. A receipt counts once on each side: the
// same receipt again gets the same answer and posts nothing; another under
// its ID is refused.
const (
	receiptPrefix = "receipt/"
	earnedPrefix  = "earned/"
)

// books is the node's own ledger.
const books ledger.Book = "ledger/"

// The accounts of receipts in the node's books. A requester charges the
// account a task names (account/<name>), or, for a task that names none,
// the node operator's own (operator/self), and owes its provider
// (provider/<peer>). A provider earns from a requester's account
// (earned/<requester>/<account>, "-" for none) against its earnings.
const (
	ownSpending = "operator/self"
	earnings    = "earnings"
)

func chargedAccount(acct string) string {
	if acct == "" {
		return ownSpending
	}
	return "account/" + acct
}

func earnedAccount(requester, acct string) string {
	if acct == "" {
		acct = "-"
	}
	return "earned/" + requester + "/" + acct
}

// receiptSkew is how far in the future a receipt's end may lie: the
// provider's clock against ours.
const receiptSkew = 30 * time.Second

// Tolerance of a receipt's span against the requester's view of the run
// (from placing it to its final status): the larger of receiptSlack and
// receiptShare of the run.
const (
	receiptSlack = 2 * time.Second
	receiptShare = 10 // percent
)

func receiptTolerance(run time.Duration) time.Duration {
	return max(receiptSlack, run*receiptShare/100)
}

// receiptTTL is how long a receipt or countersignature this node seals
// for itself (its own jobs) is valid: it is opened at once.
const receiptTTL = time.Minute

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadReceipt, fmt.Sprintf(format, args...))
}

// Receipt is a receipt a requester countersigned, and the envelope that
// carried it.
type Receipt struct {
	types.Receipt
	Provider string `json:"provider"` // the PeerID that signed it
	Envelope []byte `json:"envelope"` // the signed envelope, as received
	// Digest is what the countersignature names: the SHA-256 of the
	// envelope's body (types.ReceiptDigest).
	Digest string `json:"digest"`
}

// Earned is a receipt a provider issued and its requester countersigned.
type Earned struct {
	types.Receipt
	Ack types.ReceiptAck `json:"ack"`
	// AckEnvelope is the requester's signed countersignature.
	AckEnvelope []byte `json:"ack_envelope"`
}

func receiptKey(r *types.Receipt) string {
	return fmt.Sprintf("%s%s/%s/%020d", receiptPrefix, r.JobID, r.AllocationID, r.Seq)
}

// keepReceipt checks a receipt from the provider from, which came in env,
// against the job it names, and counts it: the receipt kept and its charge
// posted, in one transaction. It returns the countersignature, or an
// error wrapping ErrBadReceipt saying why it was refused (counted); any
// other error is the requester's and may pass.
func (d *DMS) keepReceipt(ctx context.Context, from string, env *types.Envelope, r *types.Receipt) (*types.ReceiptAck, error) {
	ack, err := d.countReceipt(ctx, from, env, r)
	if errors.Is(err, ErrBadReceipt) {
		d.receiptsRefused.Add(1)
		d.log.Warn("receipt refused", "provider", from, "receipt", r.ID, "amount", r.Amount, "err", err)
	}
	return ack, err
}

// countReceipt counts a receipt once. Its charge goes to the gateway's
// ledger when it names one of the gateway's accounts (Gateway.Charge, a
// change of the group's state, in which the entry and the receipt's
// digest commit together), else to the node's books in the transaction
// that keeps the receipt. A crash between the gateway's change and the
// node's is mended by the provider's retry: the charge, already there
// under the same digest, is not posted again.
func (d *DMS) countReceipt(ctx context.Context, from string, env *types.Envelope, r *types.Receipt) (*types.ReceiptAck, error) {
	if !d.up.Load() {
		return nil, ErrNotStarted // the provider tries again
	}
	raw, err := env.Marshal()
	if err != nil {
		return nil, err
	}
	kept := Receipt{Receipt: *r, Provider: from, Envelope: raw, Digest: types.ReceiptDigest(env.Body)}
	ack := &types.ReceiptAck{ReceiptID: r.ID, Digest: kept.Digest, Amount: r.Amount}
	if err := checkFigures(r, d.host.ID(), d.opts.clock()); err != nil {
		return nil, err
	}
	// Counted already: the same answer, whatever the view is now.
	if counted, err := d.viewKept(&kept, false); err != nil || counted {
		return orNil(ack, err), err
	}
	rec, err := d.receiptView(r.JobID)
	if err != nil {
		return nil, err
	}
	if err := checkAgainst(rec, from, r, d.opts.clock()); err != nil {
		return nil, err
	}
	warm := rec.Spec.Task.Warm != nil
	if warm { // before any charge
		if _, err := d.viewKept(&kept, true); err != nil {
			return nil, err
		}
	}
	charged, err := d.chargeGateway(ctx, &kept, rec.Spec.Name)
	if err != nil {
		return nil, err
	}
	err = d.db.Update(func(tx *store.Tx) error {
		if counted, err := checkKept(tx, &kept, warm); err != nil || counted {
			return err
		}
		if !charged {
			if err := postCharge(tx, r.Amount, chargeEntry(from, rec.Spec.Name, r)); err != nil {
				return err
			}
		}
		return tx.Put(receiptKey(r), kept)
	})
	return orNil(ack, err), err
}

// viewKept is checkKept in a read-only transaction.
func (d *DMS) viewKept(k *Receipt, warm bool) (counted bool, err error) {
	err = d.db.View(func(tx *store.Tx) error {
		counted, err = checkKept(tx, k, warm)
		return err
	})
	return counted, err
}

// orNil is ack, or nil with an error.
func orNil(ack *types.ReceiptAck, err error) *types.ReceiptAck {
	if err != nil {
		return nil
	}
	return ack
}

// checkKept reports whether a receipt was counted already (the same
// receipt, from the same provider), or says why it cannot be: another
// under its ID, or, for a warm instance's, a span overlapping another's.
func checkKept(tx *store.Tx, k *Receipt, warm bool) (bool, error) {
	var prior Receipt
	found, err := tx.Lookup(receiptKey(&k.Receipt), &prior)
	switch {
	case err != nil:
		return false, err
	case found && (prior.Digest != k.Digest || prior.Provider != k.Provider):
		return false, refuse("receipt %s was countersigned with other figures", k.ID)
	case found:
		return true, nil
	case warm:
		return false, checkOverlap(tx, &k.Receipt)
	}
	return false, nil
}

// chargeGateway charges a receipt to the gateway's ledger when it names
// one of the gateway's accounts, and reports whether it did; name is the
// job's.
func (d *DMS) chargeGateway(ctx context.Context, k *Receipt, name string) (bool, error) {
	if d.gw == nil || k.Account == "" || k.Amount == 0 {
		return false, nil
	}
	err := d.gw.Charge(ctx, k.Account, chargeEntry(k.Provider, name, &k.Receipt), k.Digest)
	switch {
	case errors.Is(err, api.ErrNotFound):
		return false, nil // not the gateway's: the node's books
	case errors.Is(err, api.ErrConflict):
		return false, fmt.Errorf("%w: %w", ErrBadReceipt, err)
	}
	return err == nil, err
}

// checkFigures says why a receipt cannot be right, whoever it came from:
// its ID, its span, its counts, its usage, its amount.
func checkFigures(r *types.Receipt, self string, now time.Time) error {
	switch {
	case r.Requester != self:
		return refuse("it names requester %s", r.Requester)
	case r.Seq == 0:
		return refuse("sequence 0")
	case r.ID != types.ReceiptID(r.AllocationID, r.Seq):
		return refuse("its ID %q is not %s", r.ID, types.ReceiptID(r.AllocationID, r.Seq))
	case r.To.Before(r.From):
		return refuse("it ends (%s) before it begins (%s)", r.To, r.From)
	case r.To.After(now.Add(receiptSkew)):
		return refuse("it ends in the future (%s)", r.To)
	case r.Failed > r.Calls || r.BusyMillis < 0:
		return refuse("%d failed of %d calls, %d ms busy", r.Failed, r.Calls, r.BusyMillis)
	}
	if r.Usage != nil {
		if err := r.Usage.Check(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadReceipt, err)
		}
	}
	want, err := r.Bill()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadReceipt, err)
	}
	if r.Amount != want {
		return refuse("amount %s, but %s per core-hour for %d millicores over %s is %s", r.Amount, r.Price, r.Resources.CPU, r.Span(), want)
	}
	return nil
}

// receiptView returns the job a receipt names as this requester knows it:
// its spec from its record, its attempts as the orchestrator has them
// now. A job it does not know is a refusal; a record it cannot read is not.
func (d *DMS) receiptView(job types.JobID) (orchestrator.Record, error) {
	var rec orchestrator.Record
	found, err := d.db.Lookup(jobPrefix+string(job), &rec)
	if err != nil {
		return rec, err
	}
	if !found {
		return rec, refuse("no job %s here", job)
	}
	if info, ok := d.orch.Job(job); ok {
		rec.JobInfo = info
	}
	return rec, nil
}

// checkAgainst says why a receipt from the provider from does not match
// the requester's view of the job: the allocation must be the job's on
// that node, the account, resources and price those of the task and the
// accepted bid, and its span within the allocation's life as seen here
// (from placing it to its final status, or now), give or take
// receiptTolerance; a run's span no longer than that life and the
// tolerance. The requester's view bounds the span from above only: it
// sees a run from before it starts to after it ends, longer still when
// it restarted meanwhile, and a provider that bills less harms no one.
func checkAgainst(rec orchestrator.Record, from string, r *types.Receipt, now time.Time) error {
	var att *orchestrator.Attempt
	for i := range rec.Attempts {
		if a := &rec.Attempts[i]; a.AllocationID == r.AllocationID && a.Node == from {
			att = a
		}
	}
	task := rec.Spec.Task
	switch {
	case att == nil:
		return refuse("job %s has no allocation %s on %s", r.JobID, r.AllocationID, from)
	case r.Account != task.Account:
		return refuse("it bills account %q, the job names %q", r.Account, task.Account)
	case r.Resources != task.Resources:
		return refuse("it bills %s, the job locked %s", r.Resources, task.Resources)
	case r.Price != att.Price:
		return refuse("price %s per core-hour, the accepted bid's was %s", r.Price, att.Price)
	case att.PlacedAt.IsZero():
		return refuse("allocation %s was not placed by this requester's view", r.AllocationID)
	}
	end := att.EndedAt
	if end.IsZero() {
		end = now
	}
	seen := end.Sub(att.PlacedAt)
	tol := receiptTolerance(seen)
	if r.From.Before(att.PlacedAt.Add(-tol)) || r.To.After(end.Add(tol)) {
		return refuse("its span %s to %s lies outside the allocation's life as seen here, %s to %s (tolerance %s)",
			r.From.Format(time.RFC3339Nano), r.To.Format(time.RFC3339Nano), att.PlacedAt.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano), tol)
	}
	if task.Warm != nil {
		return nil
	}
	if r.Seq != 1 || !r.Final {
		return refuse("a run has one receipt, sequence 1 and final, not %s", r.ID)
	}
	if wall := r.Span(); wall > seen+tol {
		return refuse("it bills %s, the run took at most %s as seen here (tolerance %s)", wall, seen, tol)
	}
	return nil
}

// checkOverlap refuses a warm instance's receipt whose span overlaps one
// already counted for the allocation: the same time billed twice.
func checkOverlap(tx *store.Tx, r *types.Receipt) error {
	prefix := fmt.Sprintf("%s%s/%s/", receiptPrefix, r.JobID, r.AllocationID)
	return tx.Scan(prefix, "", func(_ string, v []byte) error {
		var k Receipt
		if err := json.Unmarshal(v, &k); err != nil {
			return err
		}
		if k.ID != r.ID && r.From.Before(k.To) && k.From.Before(r.To) {
			return refuse("its span overlaps receipt %s's, already counted", k.ID)
		}
		return nil
	})
}

// chargeEntry is what a countersigned receipt from the provider from, of
// the job named name, bills: the task's account (or the operator's own)
// pays the provider, releasing the hold named after the job, if any. Its
// Refs carry what an invoice shows of it without the job's records: the
// job's name (a warm instance's names its function), the price, the
// calls, and the core-milliseconds (CPU locked x span, rounded down).
func chargeEntry(from, name string, r *types.Receipt) ledger.Entry {
	return ledger.Entry{
		ID: "receipt/" + from + "/" + r.ID, At: r.To, Kind: "receipt",
		Postings: []ledger.Posting{{Account: chargedAccount(r.Account), Amount: -r.Amount}, {Account: "provider/" + from, Amount: r.Amount}},
		Refs: map[string]string{"job": string(r.JobID), "allocation": string(r.AllocationID), "receipt": r.ID, "provider": from,
			"name": name, "price": r.Price.String(), "calls": strconv.FormatUint(r.Calls, 10),
			"core_ms": strconv.FormatInt(int64(r.Resources.CPU)*r.Span().Microseconds()/1_000_000, 10)},
		Release: "job/" + string(r.JobID),
	}
}

// postCharge posts e, a receipt's charge of amount, to the node's books
// in tx; an amount of zero moves nothing.
func postCharge(tx *store.Tx, amount types.Credits, e ledger.Entry) error {
	if amount == 0 {
		return nil
	}
	_, err := books.Post(tx, e)
	if errors.Is(err, ledger.ErrMismatch) {
		return refuse("entry %s was posted with other figures", e.ID)
	}
	return err
}

// sendReceipt delivers one of the node's receipts to its requester (this
// node itself, for its own jobs: sealed and counted here) and, once it is
// countersigned, keeps the countersignature and posts the earning, in one
// transaction. A refusal wraps node.ErrReceiptRefused.
func (d *DMS) sendReceipt(ctx context.Context, peer string, r *types.Receipt) error {
	var (
		env   *types.Envelope
		reply types.Message
		err   error
	)
	if peer == d.host.ID() {
		env, reply, err = d.countOwnReceipt(ctx, r)
	} else {
		env, reply, err = d.host.RequestSigned(ctx, peer, nil, p2p.ReceiptProtocol, r)
	}
	if err != nil {
		return err
	}
	switch m := reply.(type) {
	case *types.Reject:
		return fmt.Errorf("%w: %s", node.ErrReceiptRefused, m.Reason)
	case *types.ReceiptAck:
		return d.keepEarned(peer, r, env, m)
	}
	return fmt.Errorf("dms: %s answered receipt %s with no countersignature", peer, r.ID)
}

// countOwnReceipt is the requester's side of a receipt of this node's own
// job: both envelopes are sealed with the node's key.
func (d *DMS) countOwnReceipt(ctx context.Context, r *types.Receipt) (*types.Envelope, types.Message, error) {
	now := d.opts.clock()
	env, err := types.Seal(d.key, r, now, receiptTTL)
	if err != nil {
		return nil, nil, err
	}
	ack, err := d.keepReceipt(ctx, d.host.ID(), env, r)
	if errors.Is(err, ErrBadReceipt) {
		return nil, &types.Reject{JobID: r.JobID, AllocationID: r.AllocationID, Reason: err.Error()}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	ackEnv, err := types.Seal(d.key, ack, now, receiptTTL)
	return ackEnv, ack, err
}

// keepEarned checks a countersignature of receipt r and keeps it, posting
// the earning, in one transaction; again, it posts nothing.
func (d *DMS) keepEarned(requester string, r *types.Receipt, env *types.Envelope, ack *types.ReceiptAck) error {
	body, err := types.EncodeBody(r)
	if err != nil {
		return err
	}
	if want := types.ReceiptDigest(body); ack.ReceiptID != r.ID || ack.Digest != want || ack.Amount != r.Amount {
		return fmt.Errorf("dms: %s countersigned %s (digest %s, amount %s), not receipt %s (digest %s, amount %s)",
			requester, ack.ReceiptID, ack.Digest, ack.Amount, r.ID, want, r.Amount)
	}
	raw, err := env.Marshal()
	if err != nil {
		return err
	}
	return d.db.Update(func(tx *store.Tx) error {
		if r.Amount > 0 {
			_, err := books.Post(tx, ledger.Entry{
				ID: "earned/" + r.ID, At: r.To, Kind: "earning",
				Postings: []ledger.Posting{{Account: earnedAccount(requester, r.Account), Amount: r.Amount}, {Account: earnings, Amount: -r.Amount}},
				Refs:     map[string]string{"job": string(r.JobID), "allocation": string(r.AllocationID), "receipt": r.ID, "requester": requester},
			})
			if err != nil {
				return err
			}
		}
		return tx.Put(earnedPrefix+r.ID, Earned{Receipt: *r, Ack: *ack, AckEnvelope: raw})
	})
}

// Receipts returns the receipts countersigned for a job, by allocation,
// oldest first within each.
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

// handleReceipts serves ReceiptProtocol: providers' receipts of our jobs,
// answered with a countersignature or a Reject saying why.
func (d *DMS) handleReceipts() {
	d.host.Handle(p2p.ReceiptProtocol, func(ctx context.Context, from string, env *types.Envelope, msg types.Message) (types.Message, error) {
		r, ok := msg.(*types.Receipt)
		if !ok {
			return nil, fmt.Errorf("dms: %s is not a receipt", msg.Kind())
		}
		ack, err := d.keepReceipt(ctx, from, env, r)
		switch {
		case errors.Is(err, ErrBadReceipt):
			return &types.Reject{JobID: r.JobID, AllocationID: r.AllocationID, Reason: err.Error()}, nil
		case err != nil:
			return nil, err // not the receipt's fault: the provider tries again
		}
		return ack, nil
	})
}

// JobReceipts returns the receipts countersigned for one of this node's
// jobs (api.ReceiptService).
func (d *DMS) JobReceipts(ctx context.Context, id string) ([]api.Receipt, error) {
	if _, err := d.jobInfo(id); err != nil {
		return nil, err
	}
	kept, err := d.Receipts(ctx, id)
	out := make([]api.Receipt, 0, len(kept))
	for _, r := range kept {
		out = append(out, api.Receipt{Receipt: r.Receipt, Provider: r.Provider, Digest: r.Digest})
	}
	return out, err
}

// Earnings sums the receipts this node issued and their requesters
// countersigned, per requester and account, over period
// (api.ReceiptService).
func (d *DMS) Earnings(ctx context.Context, period string) (api.Earnings, error) {
	from, to, err := api.ParsePeriod(period)
	if err != nil {
		return api.Earnings{}, err
	}
	if err := d.running(); err != nil {
		return api.Earnings{}, err
	}
	e := api.Earnings{Period: period, From: from, To: to}
	lines := map[[2]string]*api.EarningLine{}
	err = d.db.Scan(earnedPrefix, func(_ string, v []byte) error {
		var r Earned
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if (!from.IsZero() && r.To.Before(from)) || (!to.IsZero() && !r.To.Before(to)) {
			return ctx.Err()
		}
		k := [2]string{r.Requester, r.Account}
		l := lines[k]
		if l == nil {
			l = &api.EarningLine{Requester: r.Requester, Account: r.Account}
			lines[k] = l
		}
		var err error
		if l.Amount, err = l.Amount.Add(r.Amount); err != nil {
			return err
		}
		if e.Total, err = e.Total.Add(r.Amount); err != nil {
			return err
		}
		l.Receipts++
		e.Receipts++
		return ctx.Err()
	})
	for _, k := range slices.SortedFunc(maps.Keys(lines), func(a, b [2]string) int { return cmp.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) }) {
		e.Lines = append(e.Lines, *lines[k])
	}
	return e, err
}

package dms

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/dms/ledger"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
)

// countEntries counts the entries of a node's books.
func countEntries(t *testing.T, d *DMS) int {
	t.Helper()
	n := 0
	err := d.db.View(func(tx *store.Tx) error {
		return books.Entries(tx, time.Time{}, time.Time{}, func(ledger.Entry) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// balance returns an account's balance in a node's books.
func balance(t *testing.T, d *DMS, account string) types.Credits {
	t.Helper()
	var a ledger.Account
	err := d.db.View(func(tx *store.Tx) error {
		var err error
		a, err = books.Get(tx, account)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

// pricedPair starts a requester that does not compute and a provider that
// asks price per core-hour.
func pricedPair(t *testing.T, price types.Credits) (req, provider *DMS) {
	t.Helper()
	reqHome, _ := newHome(t)
	provHome, _ := newHome(t)
	rewriteConfig(t, provHome, func(c *Config) { c.Offer.Price = price })
	req = startNode(t, reqHome, WithCompute(false), WithLease(10*time.Second))
	provider = startNode(t, provHome, WithLease(10*time.Second), WithBootstrap(req.host.Addrs()...))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return req.host.TopicPeers() >= 1 })
	return req, provider
}

// TestJobReceiptCountedOnce: a job runs; its provider's receipt bills the
// bid's price for the locked CPU over the run; the requester countersigns
// it and both books hold one entry of that amount, charged to the job's
// account and earned from it. A provider that restarts with the receipt
// still pending sends it again: the requester answers as before and
// nothing is posted twice.
func TestJobReceiptCountedOnce(t *testing.T) {
	price := 1000 * types.Credit
	req, provider := pricedPair(t, price)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := tinySpec(t, 300*time.Millisecond, "billed\n")
	spec.Account = "acme"
	if _, err := req.Submit(ctx, spec); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), `account "acme"`) {
		t.Fatalf("a job billing an account the gateway does not have: %v", err)
	}
	if _, _, err := req.gw.CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	h, err := req.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if job, err := h.Wait(ctx); err != nil || job.State != types.JobCompleted {
		t.Fatalf("job %+v, %v", job, err)
	}
	var kept []Receipt
	waitFor(t, 20*time.Second, "the receipt countersigned", func() bool {
		kept, err = req.Receipts(ctx, h.ID)
		return err == nil && len(kept) == 1
	})
	r := kept[0]
	want, _ := types.Cost(price, spec.Resources.CPU, r.To.Sub(r.From))
	if r.Price != price || r.Resources != spec.Resources || r.Account != "acme" || r.Amount != want || want == 0 ||
		r.Provider != provider.host.ID() || r.To.Sub(r.From) < 300*time.Millisecond || r.Usage == nil {
		t.Fatalf("receipt %+v, want amount %s", r.Receipt, want)
	}
	var earned Earned
	waitFor(t, 10*time.Second, "the countersignature kept by the provider", func() bool {
		ok, _ := provider.db.Lookup(earnedPrefix+r.ID, &earned)
		return ok
	})
	check := func(when string, provider *DMS) {
		t.Helper()
		// The requester charges the gateway's account, in the gateway's
		// books; the provider earns in its own.
		if n, m := countEntries(t, req), countEntries(t, provider); n != 0 || m != 1 {
			t.Fatalf("%s: %d entries in the requester's own books, %d in the provider's; want 0 and 1", when, n, m)
		}
		if a, err := req.gw.GetAccount(ctx, "acme"); err != nil || a.Credits.Balance != -want {
			t.Fatalf("%s: acme's credits %+v, %v; want a balance of %s", when, a.Credits, err, -want)
		}
		for _, c := range []struct {
			d       *DMS
			account string
			want    types.Credits
		}{
			{provider, "earned/" + req.host.ID() + "/acme", want}, {provider, earnings, -want},
		} {
			if got := balance(t, c.d, c.account); got != c.want {
				t.Fatalf("%s: %s holds %s, want %s", when, c.account, got, c.want)
			}
		}
	}
	check("countersigned", provider)
	month := r.To.UTC().Format("2006-01")
	e, err := provider.Earnings(ctx, month)
	if err != nil || e.Total != want || e.Receipts != 1 || len(e.Lines) != 1 ||
		e.Lines[0] != (api.EarningLine{Requester: req.host.ID(), Account: "acme", Receipts: 1, Amount: want}) {
		t.Fatalf("earnings of %s: %+v, %v", month, e, err)
	}
	if e, err := provider.Earnings(ctx, "2001-01"); err != nil || e.Total != 0 || len(e.Lines) != 0 {
		t.Fatalf("earnings of another month: %+v, %v", e, err)
	}
	if got, err := req.JobReceipts(ctx, h.ID); err != nil || len(got) != 1 || got[0].ID != r.ID || got[0].Digest != r.Digest {
		t.Fatalf("the job's receipts: %+v, %v", got, err)
	}
	if job, err := req.GetJob(ctx, h.ID); err != nil || job.Attempts[len(job.Attempts)-1].Price != price {
		t.Fatalf("the job's attempts do not show the bid's price %s: %+v, %v", price, job.Attempts, err)
	}
	if earned.Ack.Digest != r.Digest || earned.Ack.Amount != want {
		t.Fatalf("countersignature %+v, receipt digest %s", earned.Ack, r.Digest)
	}

	// As after a crash between the countersignature and dropping the
	// pending receipt: the restarted provider sends it again.
	if err := provider.db.Put(node.PendingReceiptPrefix+r.ID, r.Receipt); err != nil {
		t.Fatal(err)
	}
	provider.Close()
	back := reopen(t, provider, WithBootstrap(req.host.Addrs()...))
	waitFor(t, 30*time.Second, "the receipt sent again and answered", func() bool {
		ok, _ := back.db.Lookup(node.PendingReceiptPrefix+r.ID, &types.Receipt{})
		return !ok
	})
	check("sent again", back)
	if n := req.receiptsRefused.Load(); n != 0 {
		t.Fatalf("%d receipts refused", n)
	}

	// A payout settles the receipt once: a statement for the provider of
	// what acme was charged, what the provider earned.
	list, err := req.gw.Payout(ctx)
	if err != nil || len(list) != 1 || list[0].Provider != provider.host.ID() || list[0].Total != want ||
		len(list[0].Lines) != 1 || list[0].Lines[0].Receipt != r.ID || list[0].Lines[0].Job != h.ID {
		t.Fatalf("payout: %+v, %v; want one statement of %s for receipt %s", list, err, want, r.ID)
	}
	if again, err := req.gw.Payout(ctx); err != nil || len(again) != 0 {
		t.Fatalf("a second payout: %+v, %v", again, err)
	}
}

// TestForgedReceiptsRefused: receipts of a run that are forged or altered
// are refused with the reason, counted, and post nothing: another amount,
// another price (under the ID of the receipt counted: other figures; a
// price not the bid's on its own is dms.TestReceiptChecksProperty's),
// someone else's allocation, the run billed again under another ID, and a
// bad signature (refused before it reaches the requester's handler).
func TestForgedReceiptsRefused(t *testing.T) {
	req, provider := pricedPair(t, 1000*types.Credit)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := req.Submit(ctx, tinySpec(t, 0, "x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	var kept []Receipt
	waitFor(t, 20*time.Second, "the receipt countersigned", func() bool {
		kept, err = req.Receipts(ctx, h.ID)
		return err == nil && len(kept) == 1
	})
	good := kept[0].Receipt
	if good.Account != "" || balance(t, req, ownSpending) != -good.Amount {
		t.Fatalf("a job with no account: receipt %+v, %s charged %s", good, ownSpending, balance(t, req, ownSpending))
	}
	entries := countEntries(t, req)
	cost := func(r *types.Receipt) { r.Amount, _ = types.Cost(r.Price, r.Resources.CPU, r.To.Sub(r.From)) }
	for name, c := range map[string]struct {
		edit   func(r *types.Receipt)
		reason string
	}{
		"altered amount": {func(r *types.Receipt) { r.Amount++ }, "amount"},
		"another price":  {func(r *types.Receipt) { r.Price *= 2; cost(r) }, "other figures"},
		"someone else's": {func(r *types.Receipt) { r.AllocationID, r.ID = "theirs", "theirs/1" }, "has no allocation theirs"},
		"billed again": {func(r *types.Receipt) {
			r.Seq, r.ID, r.From = 2, string(r.AllocationID)+"/2", r.From.Add(time.Millisecond)
			cost(r)
		}, "a run has one receipt"},
		"other figures under its ID": {func(r *types.Receipt) { r.To = r.To.Add(time.Millisecond); cost(r) }, "other figures"},
	} {
		r := good
		c.edit(&r)
		err := provider.sendReceipt(ctx, req.host.ID(), &r)
		if !errors.Is(err, node.ErrReceiptRefused) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: %v, want a refusal saying %q", name, err, c.reason)
		}
	}
	if n := req.receiptsRefused.Load(); n != 5 {
		t.Errorf("%d receipts refused, want 5", n)
	}

	// A bad signature: the envelope of the good receipt, its body altered.
	env, err := types.Seal(provider.key, &good, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env.Body), "calls\x00") { // the key, then 0 in CBOR
		t.Fatal("no calls to forge")
	}
	env.Body = []byte(strings.Replace(string(env.Body), "calls\x00", "calls\x01", 1))
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := provider.host.Dial(ctx, req.host.ID(), nil, p2p.ReceiptProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := p2p.WriteFrame(conn, raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the forgery refused", func() bool {
		return req.host.Stats().Streams[p2p.ReasonBadSignature] == 1
	})
	if n := countEntries(t, req); n != entries {
		t.Fatalf("%d entries after forgeries, want %d", n, entries)
	}
}

// TestReceiptAfterRequesterRestart: a requester that is away when its
// job's run ends gets the run's receipt once it is back (the provider
// kept it pending and tries again), judges it by the job's record (the
// bid's price and the placement kept with the attempt), and countersigns
// it: one entry on each side.
func TestReceiptAfterRequesterRestart(t *testing.T) {
	req, provider := pricedPair(t, 1000*types.Credit)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := req.Submit(ctx, tinySpec(t, time.Second, "x\n"))
	if err != nil {
		t.Fatal(err)
	}
	nextState(t, h.Events(), types.JobRunning)
	waitFor(t, 20*time.Second, "the provider to hold the module (the run under way)", func() bool {
		held := false
		_ = provider.db.Scan(node.AllocationPrefix, func(_ string, v []byte) error {
			var rec node.Allocation
			if json.Unmarshal(v, &rec) == nil && rec.Task != nil {
				held = provider.blobs.Has(rec.Task.Module)
			}
			return nil
		})
		return held
	})
	req.Close()
	pending := func() int {
		n := 0
		_ = provider.db.Scan(node.PendingReceiptPrefix, func(string, []byte) error { n++; return nil })
		return n
	}
	waitFor(t, 20*time.Second, "the run's receipt pending on the provider", func() bool { return pending() == 1 })

	back := reopen(t, req, WithBootstrap(provider.host.Addrs()...))
	var kept []Receipt
	waitFor(t, 30*time.Second, "the receipt countersigned by the restarted requester", func() bool {
		kept, err = back.Receipts(ctx, h.ID)
		return err == nil && len(kept) == 1
	})
	waitFor(t, 10*time.Second, "the receipt no longer pending", func() bool { return pending() == 0 })
	if n, m := countEntries(t, back), countEntries(t, provider); n != 1 || m != 1 || back.receiptsRefused.Load() != 0 {
		t.Fatalf("%d entries in the requester's books, %d in the provider's, %d refused; want 1, 1, 0", n, m, back.receiptsRefused.Load())
	}
	if r := kept[0]; r.Amount == 0 || balance(t, back, ownSpending) != -r.Amount || balance(t, provider, earnedAccount(back.host.ID(), "")) != r.Amount {
		t.Fatalf("receipt %+v; charged %s, earned %s", r.Receipt, balance(t, back, ownSpending), balance(t, provider, earnedAccount(back.host.ID(), "")))
	}
}

// TestOwnJobReceipt: a node that runs its own job seals and counts the
// receipt itself: the operator's own spending pays the node as a
// provider, and the node earns it from itself, once each.
func TestOwnJobReceipt(t *testing.T) {
	home, _ := newHome(t)
	rewriteConfig(t, home, func(c *Config) { c.Offer.Price = 1000 * types.Credit })
	d := startNode(t, home, WithLease(10*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := d.Submit(ctx, tinySpec(t, 0, "mine\n"))
	if err != nil {
		t.Fatal(err)
	}
	if job, err := h.Wait(ctx); err != nil || job.Node != d.host.ID() {
		t.Fatalf("job %+v, %v", job, err)
	}
	var kept []Receipt
	waitFor(t, 20*time.Second, "the receipt counted", func() bool {
		kept, err = d.Receipts(ctx, h.ID)
		ok, _ := d.db.Lookup(earnedPrefix+kept0(kept), &Earned{})
		return err == nil && len(kept) == 1 && ok
	})
	r := kept[0]
	if r.Provider != d.host.ID() || r.Amount == 0 || len(r.Envelope) == 0 {
		t.Fatalf("receipt %+v", r.Receipt)
	}
	for account, want := range map[string]types.Credits{
		ownSpending: -r.Amount, "provider/" + d.host.ID(): r.Amount,
		earnedAccount(d.host.ID(), ""): r.Amount, earnings: -r.Amount,
	} {
		if got := balance(t, d, account); got != want {
			t.Errorf("%s holds %s, want %s", account, got, want)
		}
	}
	if n := countEntries(t, d); n != 2 {
		t.Fatalf("%d entries, want 2 (the charge and the earning)", n)
	}
}

// kept0 is the ID of the first of kept, "" for none.
func kept0(kept []Receipt) string {
	if len(kept) == 0 {
		return ""
	}
	return kept[0].ID
}

// TestJobsNeedCredits: with gateway.require_credits, a job that bills an
// account without credits is refused with 402 before any provider hears
// of it, as is one whose price bound and timeout could cost more than is
// available; once credited, the job runs and its receipt is charged.
func TestJobsNeedCredits(t *testing.T) {
	reqHome, _ := newHome(t)
	rewriteConfig(t, reqHome, func(c *Config) { c.Gateway.RequireCredits = true })
	provHome, _ := newHome(t)
	rewriteConfig(t, provHome, func(c *Config) { c.Offer.Price = 1000 * types.Credit }) // a run of milliseconds costs something
	req := startNode(t, reqHome, WithCompute(false), WithLease(10*time.Second))
	prov := startNode(t, provHome, WithLease(10*time.Second), WithBootstrap(req.host.Addrs()...))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return req.host.TopicPeers() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, _, err := req.gw.CreateAccount(ctx, "payer"); err != nil {
		t.Fatal(err)
	}
	spec := tinySpec(t, 0, "paid\n")
	spec.Account = "payer"
	if _, err := req.Submit(ctx, spec); !errors.Is(err, api.ErrPaymentRequired) || !strings.Contains(err.Error(), `account "payer" has 0 credits available`) {
		t.Fatalf("a job of an account without credits: %v", err)
	}
	if _, err := req.gw.Credit(ctx, "payer", types.Credit, ""); err != nil {
		t.Fatal(err)
	}
	bounded := *spec
	bounded.Constraints.MaxPrice, bounded.Timeout = 1000*types.Credit, jobs.Duration(time.Minute)
	if _, err := req.Submit(ctx, &bounded); !errors.Is(err, api.ErrPaymentRequired) || !strings.Contains(err.Error(), "may cost 1.666667") {
		t.Fatalf("a job that may cost more than is available: %v", err)
	}
	if jobs, err := req.ListJobs(ctx); err != nil || len(jobs) != 0 {
		t.Fatalf("refused jobs were submitted: %+v, %v", jobs, err)
	}
	h, err := req.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if job, err := h.Wait(ctx); err != nil || job.State != types.JobCompleted {
		t.Fatalf("job %+v, %v", job, err)
	}
	// A delivery that fails is tried again after 1 s, 2 s, 4 s, ...: a
	// loaded machine may need a few (20 s was not enough in CI).
	waitFor(t, 45*time.Second, "the receipt charged to payer", func() bool {
		a, err := req.gw.GetAccount(ctx, "payer")
		return err == nil && a.Credits.Balance < types.Credit
	})
	checkInvoiced(t, req, "payer", spec.Name)

	// A job that bounds its cost holds it until it ends: a second one
	// that would take the account past what is left is refused while the
	// first runs, and admitted once it is cancelled (the account has a
	// little less than one credit left: two such jobs may cost 1.111112).
	slow := tinySpec(t, time.Minute, "slow\n")
	slow.Account, slow.Constraints.MaxPrice, slow.Timeout = "payer", 1000*types.Credit, jobs.Duration(20*time.Second)
	quick := *spec
	quick.Constraints.MaxPrice, quick.Timeout = slow.Constraints.MaxPrice, slow.Timeout
	hs, err := req.Submit(ctx, slow)
	if err != nil {
		t.Fatal(err)
	}
	held := func(want types.Credits) func() bool {
		return func() bool {
			a, err := req.gw.GetAccount(ctx, "payer")
			return err == nil && a.Credits.Held == want
		}
	}
	waitFor(t, time.Second, "the slow job's hold", held(555556)) // 1000 credits/core-hour x 0.1 core x 20 s
	if _, err := req.Submit(ctx, &quick); !errors.Is(err, api.ErrPaymentRequired) || !strings.Contains(err.Error(), "held 0.555556") {
		t.Fatalf("a job that would take the account past what the slow one holds: %v", err)
	}
	if err := req.CancelJob(ctx, hs.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the cancelled job's hold released", held(0))
	hq, err := req.Submit(ctx, &quick)
	if err != nil {
		t.Fatalf("the same job once the hold was released: %v", err)
	}
	if job, err := hq.Wait(ctx); err != nil || job.State != types.JobCompleted {
		t.Fatalf("job %+v, %v", job, err)
	}
	waitFor(t, 20*time.Second, "the quick job's receipt charged and its hold gone", func() bool {
		rs, err := req.JobReceipts(ctx, hq.ID)
		return err == nil && len(rs) == 1 && held(0)()
	})
	if hs, err := req.gw.Holds(""); err != nil || len(hs) != 0 {
		t.Fatalf("holds left: %+v, %v", hs, err)
	}

	// A requester restarted while its job holds credits follows the hold,
	// and releases it when the job ends.
	hs, err = req.Submit(ctx, slow)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the slow job's hold", held(555556))
	req.Close()
	req = startNode(t, reqHome, WithCompute(false), WithLease(10*time.Second), WithBootstrap(prov.host.Addrs()...))
	waitFor(t, 10*time.Second, "the restarted requester following the hold", func() bool { _, ok := req.held.Load(types.JobID(hs.ID)); return ok })
	if err := req.CancelJob(ctx, hs.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the hold released after the restart", held(0))
}

// checkInvoiced checks that what an account's invoices bill sums to what
// was charged to it, on lines of the job named name alone.
func checkInvoiced(t *testing.T, d *DMS, acct, name string) {
	t.Helper()
	a, err := d.gw.GetAccount(t.Context(), acct)
	if err != nil {
		t.Fatal(err)
	}
	list, err := d.gw.Invoices(t.Context(), acct)
	if err != nil {
		t.Fatal(err)
	}
	var billed, credited types.Credits
	for _, s := range list {
		inv, err := d.gw.Invoice(t.Context(), acct, s.Period)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range inv.Lines {
			if l.Name != name || l.Count == 0 {
				t.Errorf("%s: line %+v, want one of job %q", s.Period, l, name)
			}
		}
		billed, credited = billed+inv.Total, credited+inv.Credited
	}
	if billed == 0 || credited-billed != a.Credits.Balance {
		t.Fatalf("invoices bill %s and credit %s; the balance is %s", billed, credited, a.Credits.Balance)
	}
}

// TestChargeEntryRefs: a receipt's charge names what an invoice shows of
// it without the job's records: the job's name, the price, the calls, and
// the CPU locked times its span in core-milliseconds.
func TestChargeEntryRefs(t *testing.T) {
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r := &types.Receipt{ID: "a/1", JobID: "j", AllocationID: "a", Account: "alice", Calls: 3, From: at, To: at.Add(10 * time.Second),
		Resources: types.Resources{CPU: 250}, Price: 2 * types.Credit, Amount: 1389}
	e := chargeEntry("p", "fn:alice/echo@1", r)
	want := map[string]string{"job": "j", "allocation": "a", "receipt": "a/1", "provider": "p",
		"name": "fn:alice/echo@1", "price": "2", "calls": "3", "core_ms": "2500"}
	if !maps.Equal(e.Refs, want) || e.ID != "receipt/p/a/1" || !e.At.Equal(r.To) {
		t.Fatalf("entry %s at %s, refs %v", e.ID, e.At, e.Refs)
	}
}

// TestAccountingAgrees: an account with a small credit runs jobs until it
// gets 402; its invoice's total, the sum of the receipts its requester
// countersigned, the statement its provider is paid and what the provider
// earned agree to the micro-credit.
func TestAccountingAgrees(t *testing.T) {
	reqHome, _ := newHome(t)
	rewriteConfig(t, reqHome, func(c *Config) { c.Gateway.RequireCredits = true })
	provHome, _ := newHome(t)
	rewriteConfig(t, provHome, func(c *Config) { c.Offer.Price = 10000 * types.Credit })
	req := startNode(t, reqHome, WithCompute(false), WithLease(10*time.Second))
	provider := startNode(t, provHome, WithLease(10*time.Second), WithBootstrap(req.host.Addrs()...))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return req.host.TopicPeers() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, _, err := req.gw.CreateAccount(ctx, "small"); err != nil {
		t.Fatal(err)
	}
	if _, err := req.gw.Credit(ctx, "small", 200000, ""); err != nil { // 0.2: a few jobs' worth
		t.Fatal(err)
	}
	var ids []string
	for len(ids) < 20 {
		spec := tinySpec(t, 200*time.Millisecond, "metered\n")
		spec.Account = "small"
		h, err := req.Submit(ctx, spec)
		if errors.Is(err, api.ErrPaymentRequired) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if job, err := h.Wait(ctx); err != nil || job.State != types.JobCompleted {
			t.Fatalf("job %+v, %v", job, err)
		}
		ids = append(ids, h.ID)
		waitFor(t, 20*time.Second, "the job's receipt charged", func() bool {
			got, err := req.JobReceipts(ctx, h.ID)
			return err == nil && len(got) == 1
		})
	}
	if len(ids) < 2 || len(ids) == 20 {
		t.Fatalf("%d jobs ran before 402: want a few", len(ids))
	}
	var receipts types.Credits
	periods := map[string]bool{}
	for _, id := range ids {
		got, err := req.JobReceipts(ctx, id)
		if err != nil || len(got) != 1 {
			t.Fatalf("job %s: receipts %+v, %v", id, got, err)
		}
		receipts += got[0].Amount
		periods[got[0].To.UTC().Format("2006-01")] = true
	}
	if len(periods) != 1 {
		t.Skipf("the jobs ran across a month's end (%v): the invoice holds part of them", periods)
	}
	a, err := req.gw.GetAccount(ctx, "small")
	if err != nil || a.Credits.Balance != 200000-receipts || a.Credits.Available > 0 {
		t.Fatalf("small: %+v, %v; want 0.2 less the receipts' %s, nothing available", a.Credits, err, receipts)
	}
	var period string
	for p := range periods {
		period = p
	}
	inv, err := req.gw.Invoice(ctx, "small", period)
	if err != nil || inv.Total != receipts || inv.Credited != 200000 {
		t.Fatalf("invoice %+v, %v; want a total of %s", inv, err, receipts)
	}
	statements, err := req.gw.Payout(ctx)
	if err != nil || len(statements) != 1 || statements[0].Total != receipts || len(statements[0].Lines) != len(ids) {
		t.Fatalf("payout %+v, %v; want one statement of %s for %d receipts", statements, err, receipts, len(ids))
	}
	waitFor(t, 10*time.Second, "the provider's earnings", func() bool {
		e, err := provider.Earnings(ctx, period)
		return err == nil && e.Total == receipts && e.Receipts == len(ids)
	})
	t.Logf("%d jobs before 402; invoice = receipts = statement = earnings = %s", len(ids), receipts)
}

package gateway

import (
	"bytes"
	"encoding/csv"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/ledger"
	"github.com/opendms/dms/types"
)

// charge posts a receipt's charge of amount to acct's credits, owed to
// provider p, as a requester would: name is its job's, price per
// core-hour, at its end.
func charge(t *testing.T, g *Gateway, acct, id, name string, at time.Time, amount, price types.Credits) {
	t.Helper()
	chargeOf(t, g, acct, "p", id, name, at, amount, price)
}

// chargeOf is charge of a receipt of provider peer.
func chargeOf(t *testing.T, g *Gateway, acct, peer, id, name string, at time.Time, amount, price types.Credits) {
	t.Helper()
	e := ledger.Entry{ID: "receipt/" + peer + "/" + id, At: at, Kind: "receipt",
		Postings: []ledger.Posting{{Account: creditAccount(acct), Amount: -amount}, {Account: providerAccount(peer), Amount: amount}},
		Refs: map[string]string{"provider": peer, "receipt": id, "job": "j-" + id, "name": name, "price": price.String(),
			"calls": "2", "core_ms": "1500"}}
	if err := g.Charge(t.Context(), acct, e, "digest-"+id); err != nil {
		t.Fatal(err)
	}
}

var (
	nov = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	dec = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
)

// chargeTwoMonths gives alice a credit and charges in November, one
// charge in December, and bob a charge in November; it returns what
// alice's November charges sum to.
func chargeTwoMonths(t *testing.T, r *rig) types.Credits {
	t.Helper()
	if _, _, err := r.g.CreateAccount(t.Context(), "bob"); err != nil {
		t.Fatal(err)
	}
	r.clock.Set(nov.Add(time.Hour))
	if _, err := r.g.Credit(t.Context(), "alice", 10*types.Credit, "welcome"); err != nil {
		t.Fatal(err)
	}
	r.clock.Set(start)
	charge(t, r.g, "alice", "a/1", "fn:alice/echo@1", nov.Add(2*time.Hour), 1_000_001, types.Credit)
	charge(t, r.g, "alice", "a/2", "fn:alice/echo@1", nov.Add(3*time.Hour), 7, 2*types.Credit)
	charge(t, r.g, "alice", "b/1", "batch", dec.Add(-time.Nanosecond), 333_333, types.Credit)
	charge(t, r.g, "alice", "c/1", "fn:alice/echo@1", dec, 5, types.Credit)
	charge(t, r.g, "bob", "d/1", "fn:bob/echo@1", nov.Add(time.Hour), 99, types.Credit)
	return 1_000_001 + 7 + 333_333
}

// TestInvoice: an account's invoice for a month has its charges of that
// month, one line per job or function name, summing to the micro-credit,
// and its credits apart; a closed invoice is what it was when closed,
// whatever is charged to its period later; only a month that has ended
// closes, once.
func TestInvoice(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	want := chargeTwoMonths(t, r)
	inv, err := r.g.Invoice(ctx, "alice", "2026-11")
	if err != nil {
		t.Fatal(err)
	}
	if inv.Total != want || inv.Closed || len(inv.Lines) != 2 {
		t.Fatalf("november: total %s (want %s), closed %v, %d lines", inv.Total, want, inv.Closed, len(inv.Lines))
	}
	batch, echo := inv.Lines[0], inv.Lines[1]
	if batch.Name != "batch" || batch.Amount != 333_333 || batch.UnitPrice != "1" || !slices.Equal(batch.Receipts, []string{"receipt/p/b/1"}) {
		t.Errorf("batch line: %+v", batch)
	}
	if echo.Name != "fn:alice/echo@1" || echo.Count != 2 || echo.Calls != 4 || echo.CoreMS != 3000 || echo.UnitPrice != mixedPrice ||
		echo.Amount != 1_000_008 || !slices.Equal(echo.Receipts, []string{"receipt/p/a/1", "receipt/p/a/2"}) {
		t.Errorf("echo line: %+v", echo)
	}
	if len(inv.Credits) != 1 || inv.Credited != 10*types.Credit || inv.Credits[0].Memo != "welcome" {
		t.Errorf("credits: %+v, %s", inv.Credits, inv.Credited)
	}
	if d, err := r.g.Invoice(ctx, "alice", "2026-12"); err != nil || d.Total != 5 || len(d.Lines) != 1 || len(d.Credits) != 0 {
		t.Fatalf("december: %+v, %v", d, err)
	}

	for _, p := range []string{"2026-12", "2027-01"} {
		if _, err := r.g.CloseInvoice(ctx, "alice", p); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("closing %s, not ended: %v", p, err)
		}
	}
	for _, p := range []string{"2026-13", "2026-1", "nov", "", "2026-11-01"} {
		if _, err := r.g.Invoice(ctx, "alice", p); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("period %q: %v", p, err)
		}
	}
	closed, err := r.g.CloseInvoice(ctx, "alice", "2026-11")
	if err != nil || !closed.Closed || !closed.ClosedAt.Equal(start) || closed.Total != want {
		t.Fatalf("closed: %+v, %v", closed, err)
	}
	if _, err := r.g.CloseInvoice(ctx, "alice", "2026-11"); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("closing twice: %v", err)
	}
	charge(t, r.g, "alice", "a/3", "fn:alice/echo@1", nov.Add(4*time.Hour), 1, types.Credit) // late
	if again, err := r.g.Invoice(ctx, "alice", "2026-11"); err != nil || again.Total != want || again.Lines[1].Count != 2 {
		t.Fatalf("closed, after a later charge of its period: %+v, %v", again, err)
	}
	// The late charge is on the next open invoice, on a line of its own.
	d, err := r.g.Invoice(ctx, "alice", "2026-12")
	if err != nil || d.Total != 6 || len(d.Lines) != 2 || d.Lines[1].Late != "2026-11" || d.Lines[1].Amount != 1 ||
		!slices.Equal(d.Lines[1].Receipts, []string{"receipt/p/a/3"}) || d.Lines[0].Late != "" {
		t.Fatalf("december, after a late charge of november: %+v, %v", d, err)
	}
	list, err := r.g.Invoices(ctx, "alice")
	wantList := []InvoiceSummary{{Period: "2026-11", Total: want, Credited: 10 * types.Credit, Closed: true}, {Period: "2026-12", Total: 6}}
	if err != nil || !slices.Equal(list, wantList) {
		t.Fatalf("invoices: %+v, %v", list, err)
	}
	// December closed with it; a charge of november later still is on
	// january's, and on one invoice only.
	r.clock.Set(dec.AddDate(0, 1, 1))
	if d, err := r.g.CloseInvoice(ctx, "alice", "2026-12"); err != nil || d.Total != 6 {
		t.Fatalf("closing december: %+v, %v", d, err)
	}
	charge(t, r.g, "alice", "a/4", "fn:alice/echo@1", nov.Add(5*time.Hour), 2, types.Credit)
	list, err = r.g.Invoices(ctx, "alice")
	wantList = append(wantList[:1], InvoiceSummary{Period: "2026-12", Total: 6, Closed: true}, InvoiceSummary{Period: "2027-01", Total: 2})
	if err != nil || !slices.Equal(list, wantList) {
		t.Fatalf("invoices after a second late charge: %+v, %v", list, err)
	}
	var billed types.Credits
	for _, s := range list {
		billed += s.Total
	}
	if a, err := r.g.GetAccount(ctx, "alice"); err != nil || 10*types.Credit-billed != a.Credits.Balance {
		t.Fatalf("the invoices bill %s, the balance is %+v (%v)", billed, a.Credits, err)
	}
	if _, err := r.g.Invoice(ctx, "nobody", "2026-11"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("an unknown account: %v", err)
	}
}

// TestInvoiceRoutes: over HTTP, an admin lists, shows (JSON, CSV that
// sums to the total, HTML that escapes names) and closes invoices, with
// the statuses of TestInvoice; an account's API key may not.
func TestInvoiceRoutes(t *testing.T) {
	g := localGateway(t)
	want := chargeTwoMonths(t, g.r)
	charge(t, g.r.g, "alice", "x/1", "<script>alert(1)</script>", nov.Add(time.Hour), 1, types.Credit)
	charge(t, g.r.g, "alice", "x/2", `=HYPERLINK("http://evil","x")`, nov.Add(time.Hour), 1, types.Credit)
	want += 2
	list := decode[[]InvoiceSummary](t, g.as(adminToken, "GET", "/v1/invoices?account=alice", "").want(t, 200))
	if len(list) != 2 || list[0].Total != want {
		t.Fatalf("list: %+v", list)
	}
	inv := decode[Invoice](t, g.as(adminToken, "GET", "/v1/invoices/alice/2026-11", "").want(t, 200))
	if inv.Total != want || len(inv.Lines) != 4 {
		t.Fatalf("json: %+v", inv)
	}

	rows, err := csv.NewReader(bytes.NewReader(g.as(adminToken, "GET", "/v1/invoices/alice/2026-11?format=csv", "").want(t, 200).body)).ReadAll()
	if err != nil || len(rows) != 6 || !slices.Equal(rows[0], invoiceCSVHeader) || rows[5][0] != "total" {
		t.Fatalf("csv: %q, %v", rows, err)
	}
	if !slices.ContainsFunc(rows, func(r []string) bool { return r[0] == `'=HYPERLINK("http://evil","x")` }) {
		t.Errorf("csv: a name a spreadsheet reads as a formula is not kept as text: %q", rows)
	}
	var sum types.Credits
	for _, row := range rows[1:5] {
		c, err := types.ParseCredits(row[5])
		if err != nil {
			t.Fatal(err)
		}
		sum += c
	}
	if total, err := types.ParseCredits(rows[5][5]); err != nil || sum != want || total != want {
		t.Fatalf("csv: lines sum to %s, total %s (%v), want %s", sum, rows[5][5], err, want)
	}

	page := string(g.as(adminToken, "GET", "/v1/invoices/alice/2026-11?format=html", "").want(t, 200).body)
	if strings.Contains(page, "<script>") || !strings.Contains(page, "&lt;script&gt;") || !strings.Contains(page, inv.Total.String()) {
		t.Fatalf("html:\n%s", page)
	}

	g.as(adminToken, "GET", "/v1/invoices/alice/2026-11?format=pdf", "").wantError(t, 400, "format")
	g.as(adminToken, "GET", "/v1/invoices/alice/2026-13", "").wantError(t, 400, "YYYY-MM")
	g.as(adminToken, "POST", "/v1/invoices/alice/2026-12/close", "").wantError(t, 400, "close it after")
	closed := decode[Invoice](t, g.as(adminToken, "POST", "/v1/invoices/alice/2026-11/close", "").want(t, 200))
	if !closed.Closed || closed.Total != want {
		t.Fatalf("closed: %+v", closed)
	}
	g.as(adminToken, "POST", "/v1/invoices/alice/2026-11/close", "").wantError(t, 409, "closed at")
	g.as(adminToken, "GET", "/v1/invoices/nobody/2026-11", "").wantError(t, 404)
	g.as(g.r.key, "GET", "/v1/invoices?account=alice", "").wantError(t, 401)
}

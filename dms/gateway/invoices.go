package gateway

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/dms/ledger"
	"github.com/opendms/dms/types"
)

// periodLayout is how a period, a calendar month in UTC, is written.
const periodLayout = "2006-01"

// mixedPrice is a line's unit price when its receipts had several.
const mixedPrice = "mixed"

// Invoice is what an account was charged and credited in one period, from
// the gateway's ledger: open, it is worked out from the ledger each time;
// closed, it is the record written when it was closed, and never changes.
type Invoice struct {
	Account string `json:"account"`
	Period  string `json:"period"` // "2026-12"
	// From and To bound the period: entries at From or after, before To.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Lines are the charges, one per job or function name, by name.
	Lines []InvoiceLine `json:"lines"`
	// Credits are what the operator credited the account, by time.
	Credits []InvoiceCredit `json:"credits"`
	// Total sums the lines' amounts; Credited the credits'.
	Total    types.Credits `json:"total"`
	Credited types.Credits `json:"credited"`
	Closed   bool          `json:"closed"`
	ClosedAt time.Time     `json:"closed_at,omitzero"`
}

// InvoiceLine is the charges of one job, or one function's calls: its
// receipts, the calls they served, the core-milliseconds they billed (the
// CPU locked times their spans), what they cost.
type InvoiceLine struct {
	Name   string `json:"name"`
	Count  int    `json:"count"` // receipts
	Calls  uint64 `json:"calls"`
	CoreMS int64  `json:"core_ms"`
	// UnitPrice is the receipts' price per core-hour when they all had
	// one, "mixed" when not, "" when their entries did not say it.
	UnitPrice string        `json:"unit_price"`
	Amount    types.Credits `json:"amount"`
	// Receipts are the ledger entries behind the line, by time.
	Receipts []string `json:"receipts"`
	// Late, when set, is the earlier period the line's receipts are of:
	// they were charged after that period's invoice was closed, so they
	// are carried to this one, apart from the period's own.
	Late string `json:"late,omitempty"`
}

// InvoiceCredit is one credit given to the account.
type InvoiceCredit struct {
	ID     string        `json:"id"`
	At     time.Time     `json:"at"`
	Amount types.Credits `json:"amount"`
	Memo   string        `json:"memo,omitempty"`
}

// InvoiceSummary is one period of an account's invoices.
type InvoiceSummary struct {
	Period   string        `json:"period"`
	Total    types.Credits `json:"total"`
	Credited types.Credits `json:"credited"`
	Closed   bool          `json:"closed"`
}

func invoicesOf(acct string) string         { return invoicePrefix + acct + "/" }
func invoiceKey(acct, period string) string { return invoicesOf(acct) + period }

// ParsePeriod returns the bounds of a period written "2026-12".
func ParsePeriod(period string) (from, to time.Time, err error) {
	from, err = time.Parse(periodLayout, period)
	if err != nil || from.Format(periodLayout) != period {
		return from, to, fmt.Errorf("%w: period %q: write a month as YYYY-MM, e.g. 2026-12", api.ErrBadRequest, period)
	}
	return from, from.AddDate(0, 1, 0), nil
}

// Invoice returns an account's invoice for a period: its record when it
// was closed, else worked out from the ledger now.
func (g *Gateway) Invoice(ctx context.Context, acct, period string) (Invoice, error) {
	from, to, err := ParsePeriod(period)
	if err != nil {
		return Invoice{}, err
	}
	if _, err := g.account(acct); err != nil {
		return Invoice{}, err
	}
	var inv Invoice
	if found, err := g.db.Lookup(invoiceKey(acct, period), &inv); err != nil || found {
		return inv, err
	}
	return g.ledgerInvoice(acct, period, from, to)
}

// Invoices lists the periods in which an account has entries, or an
// invoice closed, oldest first.
func (g *Gateway) Invoices(ctx context.Context, acct string) ([]InvoiceSummary, error) {
	if _, err := g.account(acct); err != nil {
		return nil, err
	}
	invs, err := g.ledgerInvoices(acct, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	list := map[string]InvoiceSummary{}
	for p, b := range invs {
		list[p] = InvoiceSummary{Period: p, Total: b.Total, Credited: b.Credited}
	}
	err = each(g.db, invoicesOf(acct), func(_ string, inv Invoice) error {
		list[inv.Period] = InvoiceSummary{Period: inv.Period, Total: inv.Total, Credited: inv.Credited, Closed: true}
		return nil
	})
	out := make([]InvoiceSummary, 0, len(list))
	for _, s := range list {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b InvoiceSummary) int { return cmp.Compare(a.Period, b.Period) })
	return out, err
}

// CloseInvoice closes an account's invoice for a period that has ended:
// it is written as it stands, for every member of the group, and shown
// so from then on. A period not ended is api.ErrBadRequest; an invoice
// closed already, api.ErrConflict.
func (g *Gateway) CloseInvoice(ctx context.Context, acct, period string) (Invoice, error) {
	from, to, err := ParsePeriod(period)
	if err != nil {
		return Invoice{}, err
	}
	now := g.now()
	if now.Before(to) {
		return Invoice{}, fmt.Errorf("%w: period %s ends at %s: close it after", api.ErrBadRequest, period, to.Format(time.RFC3339))
	}
	var inv Invoice
	err = g.update(ctx, func(t *tx) error {
		if _, err := txFind[Account](t, accountName.MatchString(acct), accountKey(acct), "account", acct); err != nil {
			return err
		}
		var prior Invoice
		if found, err := t.lookup(invoiceKey(acct, period), &prior); err != nil || found {
			if err == nil {
				err = fmt.Errorf("%w: the invoice of %s for %s was closed at %s", api.ErrConflict, acct, period, prior.ClosedAt.Format(time.RFC3339))
			}
			return err
		}
		if inv, err = g.ledgerInvoice(acct, period, from, to); err != nil {
			return err
		}
		inv.Closed, inv.ClosedAt = true, now
		t.set(invoiceKey(acct, period), inv)
		return nil
	})
	return inv, err
}

// ledgerInvoice works out an account's open invoice for the period from,
// to from the ledger.
func (g *Gateway) ledgerInvoice(acct, period string, from, to time.Time) (Invoice, error) {
	invs, err := g.ledgerInvoices(acct, from, to)
	b, ok := invs[period]
	if !ok {
		b = newInvoicing(acct, period, from, to)
	}
	return b.done(), err
}

// ledgerInvoices works out an account's open invoices from the ledger, by
// period. An entry is on one invoice only: one closed with it (read from
// its record, not here), else its period's, else, when that period's
// invoice was closed before the entry was posted (a receipt charged
// late), the first period after it whose invoice is open.
//
// from and to (zero: unbounded) bound the periods wanted: the entries
// read reach back from from over the closed periods just before it, the
// only ones whose late entries it can carry.
func (g *Gateway) ledgerInvoices(acct string, from, to time.Time) (map[string]*invoicing, error) {
	closed := map[string]bool{} // periods closed
	onClosed := map[string]bool{}
	err := each(g.db, invoicesOf(acct), func(_ string, inv Invoice) error {
		closed[inv.Period] = true
		for _, l := range inv.Lines {
			for _, id := range l.Receipts {
				onClosed[id] = true
			}
		}
		for _, c := range inv.Credits {
			onClosed[c.ID] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for !from.IsZero() && closed[from.AddDate(0, -1, 0).Format(periodLayout)] {
		from = from.AddDate(0, -1, 0)
	}
	invs := map[string]*invoicing{}
	err = g.db.View(func(tx *store.Tx) error {
		return book.Entries(tx, from, to, func(e ledger.Entry) error {
			if onClosed[e.ID] {
				return nil
			}
			start := time.Date(e.At.UTC().Year(), e.At.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
			own, late := start.Format(periodLayout), ""
			for closed[start.Format(periodLayout)] {
				start, late = start.AddDate(0, 1, 0), own
			}
			p := start.Format(periodLayout)
			b, ok := invs[p]
			if !ok {
				b = newInvoicing(acct, p, start, start.AddDate(0, 1, 0))
			}
			added, err := b.add(e, late)
			if added && !ok {
				invs[p] = b
			}
			return err
		})
	})
	return invs, err
}

// invoicing builds one invoice, entry by entry.
type invoicing struct {
	Invoice
	lines map[[2]string]*InvoiceLine // by late period and name
}

func newInvoicing(acct, period string, from, to time.Time) *invoicing {
	return &invoicing{Invoice: Invoice{Account: acct, Period: period, From: from, To: to}, lines: map[[2]string]*InvoiceLine{}}
}

// add counts e if it moves the account's credits, and reports whether it
// did: taken, as a charge on its job's line (of the late period's, when
// it is of one); given, as a credit.
func (b *invoicing) add(e ledger.Entry, late string) (bool, error) {
	var amount types.Credits
	for _, p := range e.Postings {
		if p.Account == creditAccount(b.Account) {
			amount = p.Amount
		}
	}
	var err error
	switch {
	case amount > 0:
		b.Credits = append(b.Credits, InvoiceCredit{ID: e.ID, At: e.At, Amount: amount, Memo: e.Memo})
		b.Credited, err = b.Credited.Add(amount)
	case amount < 0:
		b.Total, err = b.Total.Sub(amount)
		if err == nil {
			err = b.line(e, late).charge(e, -amount)
		}
	}
	return amount != 0, err
}

// line is the line of e's job (or function), of the late period or the
// invoice's own (""), made if new.
func (b *invoicing) line(e ledger.Entry, late string) *InvoiceLine {
	name := cmp.Or(e.Refs["name"], e.Refs["job"], e.Kind)
	l, ok := b.lines[[2]string{late, name}]
	if !ok {
		l = &InvoiceLine{Name: name, UnitPrice: e.Refs["price"], Late: late}
		b.lines[[2]string{late, name}] = l
	}
	return l
}

// charge counts a charge of amount, entry e, on the line.
func (l *InvoiceLine) charge(e ledger.Entry, amount types.Credits) error {
	var err error
	if l.Amount, err = l.Amount.Add(amount); err != nil {
		return err
	}
	l.Count++
	l.Receipts = append(l.Receipts, e.ID)
	if l.UnitPrice != e.Refs["price"] {
		l.UnitPrice = mixedPrice
	}
	calls, _ := strconv.ParseUint(e.Refs["calls"], 10, 64) // absent from an entry of before: 0
	core, _ := strconv.ParseInt(e.Refs["core_ms"], 10, 64)
	l.Calls += calls
	l.CoreMS += core
	return nil
}

// done is the invoice built, its lines by name.
func (b *invoicing) done() Invoice {
	inv := b.Invoice
	inv.Lines = make([]InvoiceLine, 0, len(b.lines))
	for _, l := range b.lines {
		inv.Lines = append(inv.Lines, *l)
	}
	slices.SortFunc(inv.Lines, func(a, b InvoiceLine) int { return cmp.Or(cmp.Compare(a.Late, b.Late), cmp.Compare(a.Name, b.Name)) })
	if inv.Credits == nil {
		inv.Credits = []InvoiceCredit{}
	}
	return inv
}

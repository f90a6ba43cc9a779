package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/dms/ledger"
	"github.com/opendms/dms/types"
)

// Settler pays a provider what a statement says: the rail money leaves the
// operator on. Settle must be idempotent by the statement's ID (a payout
// run that fails after it settled runs again with the same statement) and
// returns the rail's reference for the payment.
type Settler interface {
	Settle(ctx context.Context, s Statement) (ref string, err error)
}

// RecordOnly is the Settler of a gateway with no payment rail: the
// statement is the record, the payment made by other means.
type RecordOnly struct{}

// Settle implements Settler.
func (RecordOnly) Settle(_ context.Context, s Statement) (string, error) {
	return "recorded " + s.ID, nil
}

// paidOut is where the credits paid to providers go in the gateway's book.
const paidOut = "operator/paid"

func providerAccount(peer string) string { return "provider/" + peer }

// Statement is what one payout paid one provider: the receipts it
// settles, each once.
type Statement struct {
	ID        string          `json:"id"`
	Provider  string          `json:"provider"`
	At        time.Time       `json:"at"`
	Lines     []StatementLine `json:"lines"`
	Total     types.Credits   `json:"total"`
	Reference string          `json:"reference"` // the Settler's
}

// StatementLine is one receipt a statement settles.
type StatementLine struct {
	Entry   string        `json:"entry"` // the charge's ledger entry
	Receipt string        `json:"receipt"`
	Job     string        `json:"job"`
	Name    string        `json:"name,omitempty"`
	At      time.Time     `json:"at"`
	Amount  types.Credits `json:"amount"`
}

// Payout settles, for every provider, the receipt charges not settled
// yet: a statement per provider, paid through the gateway's Settler, then
// in one change of the gateway's state the payout's entry (the provider's
// account to operator/paid), every receipt marked settled by it, and the
// statement kept. A run with nothing to settle returns no statement.
func (g *Gateway) Payout(ctx context.Context) ([]Statement, error) {
	pending, err := g.unsettled()
	if err != nil {
		return nil, err
	}
	now := g.now()
	var out []Statement
	for _, peer := range slices.Sorted(maps.Keys(pending)) {
		s, err := statementOf(peer, pending[peer], now)
		if err != nil {
			return out, err
		}
		if s.Total <= 0 {
			continue
		}
		if s.Reference, err = g.settler.Settle(ctx, s); err != nil {
			return out, fmt.Errorf("gateway: settling %s: %w", s.ID, err)
		}
		err = g.update(ctx, func(t *tx) error {
			for _, l := range s.Lines {
				var by string
				if found, err := t.lookup(settledPrefix+l.Entry, &by); err != nil || found {
					return orConflict(err, "receipt entry %s is settled already, by %s", l.Entry, by)
				}
				t.set(settledPrefix+l.Entry, s.ID)
			}
			_, err := book.Post(ledgerTx{t}, ledger.Entry{ID: s.ID, At: now, Kind: "payout", Memo: s.Reference,
				Postings: []ledger.Posting{{Account: providerAccount(peer), Amount: -s.Total}, {Account: paidOut, Amount: s.Total}}})
			if err != nil {
				return ledgerError(err)
			}
			t.set(statementPrefix+s.ID, s)
			return nil
		})
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Statements lists the statements of every payout, oldest first.
func (g *Gateway) Statements(ctx context.Context) ([]Statement, error) {
	var out []Statement
	err := g.db.Scan(statementPrefix, func(key string, v []byte) error {
		var s Statement
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("gateway: %s: %w", key, err)
		}
		out = append(out, s)
		return ctx.Err()
	})
	slices.SortFunc(out, func(a, b Statement) int { return a.At.Compare(b.At) })
	return out, err
}

// unsettled reads the receipt charges not settled yet, by provider.
func (g *Gateway) unsettled() (map[string][]StatementLine, error) {
	out := map[string][]StatementLine{}
	err := g.db.View(func(tx *store.Tx) error {
		return book.Entries(tx, time.Time{}, time.Time{}, func(e ledger.Entry) error {
			peer := e.Refs["provider"]
			if e.Kind != "receipt" || peer == "" {
				return nil
			}
			if found, err := tx.Lookup(settledPrefix+e.ID, new(string)); err != nil || found {
				return err
			}
			for _, p := range e.Postings {
				if p.Account == providerAccount(peer) {
					out[peer] = append(out[peer], StatementLine{Entry: e.ID, Receipt: e.Refs["receipt"], Job: e.Refs["job"], Name: e.Refs["name"], At: e.At, Amount: p.Amount})
				}
			}
			return nil
		})
	})
	return out, err
}

// statementOf is the statement that pays peer the lines; its ID names
// the entries it settles, so a run that settled and then failed makes the
// same statement again (the Settler's idempotency key).
func statementOf(peer string, lines []StatementLine, now time.Time) (Statement, error) {
	h := sha256.New()
	s := Statement{Provider: peer, At: now, Lines: lines}
	for _, l := range lines {
		h.Write([]byte(l.Entry + "\n"))
		var err error
		if s.Total, err = s.Total.Add(l.Amount); err != nil {
			return Statement{}, fmt.Errorf("gateway: paying %s: %w", peer, err)
		}
	}
	s.ID = "payout/" + peer + "/" + hex.EncodeToString(h.Sum(nil)[:8])
	return s, nil
}

// WriteStatementsCSV writes statements as CSV: a row per receipt each
// settles, then a row of its total.
func WriteStatementsCSV(w io.Writer, list []Statement) error {
	c := csv.NewWriter(w)
	_ = c.Write([]string{"statement", "provider", "entry", "receipt", "job", "name", "at", "amount"})
	for _, s := range list {
		for _, l := range s.Lines {
			_ = c.Write([]string{s.ID, s.Provider, csvText(l.Entry), csvText(l.Receipt), csvText(l.Job), csvText(l.Name), l.At.UTC().Format(time.RFC3339Nano), l.Amount.String()})
		}
		_ = c.Write([]string{s.ID, s.Provider, "", "", "", "total", s.At.UTC().Format(time.RFC3339Nano), s.Total.String()})
	}
	c.Flush()
	return c.Error()
}

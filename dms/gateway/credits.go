package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/dms/ledger"
	"github.com/opendms/dms/types"
)

// book is the ledger of the gateway's accounts, kept under gw/ so that a
// group replicates it with the rest of the state machine: every entry and
// limit is a change of the machine, committed through the group's log.
const book ledger.Book = ledgerPrefix

// The ledger's accounts: an account's credits, and where the operator's
// credits come from (it goes below zero by what was given out).
const operatorFunds = "operator/credits"

func creditAccount(name string) string { return "account/" + name }

// Credits are an account's standing in credits.
type Credits struct {
	// Balance is what was credited less what was charged.
	Balance types.Credits `json:"balance"`
	// Limit is the credit the operator extends below zero.
	Limit types.Credits `json:"limit"`
	// Held is reserved by work admitted and not yet billed.
	Held types.Credits `json:"held"`
	// Available is what new work may still take: Balance + Limit - Held.
	Available types.Credits `json:"available"`
}

func creditsOf(a ledger.Account) (Credits, error) {
	avail, err := a.Available()
	return Credits{Balance: a.Balance, Limit: a.Limit, Held: a.Held, Available: avail}, err
}

// ledgerTx lets the ledger read and stage through a change of the state
// machine (which does not show a change its own writes: the ledger reads
// each record once before it writes it).
type ledgerTx struct{ t *tx }

func (l ledgerTx) Lookup(key string, v any) (bool, error) { return l.t.lookup(key, v) }
func (l ledgerTx) Put(key string, v any) error            { l.t.set(key, v); return nil }
func (l ledgerTx) Delete(key string) error                { l.t.delete(key); return nil }

// Credit adds amount to an account's credits, from the operator's, and
// returns the account as it is then.
func (g *Gateway) Credit(ctx context.Context, name string, amount types.Credits, memo string) (Account, error) {
	if amount <= 0 {
		return Account{}, fmt.Errorf("%w: a credit of %s: credit a positive amount", api.ErrBadRequest, amount)
	}
	id := "credit/" + rand.Text()
	err := g.update(ctx, func(t *tx) error {
		if _, err := txFind[Account](t, accountName.MatchString(name), accountKey(name), "account", name); err != nil {
			return err
		}
		_, err := book.Post(ledgerTx{t}, ledger.Entry{ID: id, At: g.now(), Kind: "credit", Memo: memo,
			Postings: []ledger.Posting{{Account: operatorFunds, Amount: -amount}, {Account: creditAccount(name), Amount: amount}}})
		return ledgerError(err)
	})
	if err != nil {
		return Account{}, err
	}
	return g.GetAccount(ctx, name)
}

// Charge posts e, the charge of a receipt whose signed body has digest
// (the requester's countersignature names it), to the gateway's ledger,
// where account acct pays: once. The same entry with the same digest
// again posts nothing; under its ID another digest, or other postings, is
// api.ErrConflict; an account that is not the gateway's, api.ErrNotFound.
func (g *Gateway) Charge(ctx context.Context, acct string, e ledger.Entry, digest string) error {
	return g.update(ctx, func(t *tx) error {
		if _, err := txFind[Account](t, accountName.MatchString(acct), accountKey(acct), "account", acct); err != nil {
			return err
		}
		var prior string
		if found, err := t.lookup(chargedPrefix+e.ID, &prior); err != nil || found {
			if err == nil && prior != digest {
				err = fmt.Errorf("%w: entry %s charged a receipt of digest %s", api.ErrConflict, e.ID, prior)
			}
			return err
		}
		if _, err := book.Post(ledgerTx{t}, e); err != nil {
			return ledgerError(err)
		}
		t.set(chargedPrefix+e.ID, digest)
		return nil
	})
}

// SetCreditLimit sets how far below zero an account's credits may go.
func (g *Gateway) SetCreditLimit(ctx context.Context, name string, limit types.Credits) (Account, error) {
	err := g.update(ctx, func(t *tx) error {
		if _, err := txFind[Account](t, accountName.MatchString(name), accountKey(name), "account", name); err != nil {
			return err
		}
		_, err := book.SetLimit(ledgerTx{t}, creditAccount(name), limit, g.now())
		return ledgerError(err)
	})
	if err != nil {
		return Account{}, err
	}
	return g.GetAccount(ctx, name)
}

// credits reads an account's credits.
func (g *Gateway) credits(name string) (Credits, error) {
	a, err := book.Get(g.db, creditAccount(name))
	if err != nil {
		return Credits{}, err
	}
	return creditsOf(a)
}

// admitCredits refuses a call of an account with no credits available,
// when the gateway requires them: 402, saying the account's standing.
// A call is admitted while anything is available; what it costs is billed
// after it, so the calls in flight may take an account below zero by at
// most what they cost together.
func (g *Gateway) admitCredits(acct string) error {
	if !g.requireCredits {
		return nil
	}
	return g.admit(acct, 0)
}

// Admit decides whether an account may start work that may cost up to
// cost (0: unknown): the account must exist (ErrNotFound), and, when the
// gateway requires credits, have more than nothing available and at
// least cost (ErrPaymentRequired, saying its standing). Nothing is
// reserved (Reserve does): work admitted together may cost more than was
// available.
func (g *Gateway) Admit(ctx context.Context, acct string, cost types.Credits) error {
	if _, err := g.account(acct); err != nil {
		return err
	}
	if !g.requireCredits {
		return nil
	}
	return g.admit(acct, cost)
}

func (g *Gateway) admit(acct string, cost types.Credits) error {
	c, err := g.credits(acct)
	if err != nil {
		return err
	}
	if c.Available > 0 && c.Available >= cost {
		return nil
	}
	return paymentRequired(acct, c, cost)
}

// Reserve admits work of an account that may cost up to cost, as Admit
// does, and, when the gateway requires credits and cost is known, holds
// cost of the account's credits under holdID in the same change of the
// gateway's state: work admitted together cannot be promised more than
// was available. The entry that bills the work (a receipt's charge,
// ledger.Entry.Release) or ReleaseHold frees the hold. A hold already
// under holdID is kept as it is.
func (g *Gateway) Reserve(ctx context.Context, acct, holdID string, cost types.Credits, memo string) error {
	if _, err := g.account(acct); err != nil {
		return err
	}
	if !g.requireCredits {
		return nil
	}
	if cost <= 0 {
		return g.admit(acct, cost)
	}
	return g.update(ctx, func(t *tx) error {
		if _, err := txFind[Account](t, accountName.MatchString(acct), accountKey(acct), "account", acct); err != nil {
			return err
		}
		err := book.Take(ledgerTx{t}, ledger.Hold{ID: holdID, Account: creditAccount(acct), Amount: cost, At: g.now(), Memo: memo})
		if errors.Is(err, ledger.ErrInsufficient) {
			a, gerr := book.Get(ledgerTx{t}, creditAccount(acct))
			if gerr != nil {
				return gerr
			}
			c, gerr := creditsOf(a)
			if gerr != nil {
				return gerr
			}
			return paymentRequired(acct, c, cost)
		}
		return ledgerError(err)
	})
}

// ReleaseHold frees the hold under id, if there is one: the work it
// reserved credits for ended without billing them.
func (g *Gateway) ReleaseHold(ctx context.Context, id string) error {
	if _, found, err := book.Hold(g.db, id); err != nil || !found {
		return err // none here: no change of the group's state to wait for
	}
	return g.update(ctx, func(t *tx) error { return book.Release(ledgerTx{t}, id) })
}

// Holds lists the holds on the gateway's accounts whose IDs start with
// prefix.
func (g *Gateway) Holds(prefix string) ([]ledger.Hold, error) {
	var hs []ledger.Hold
	err := g.db.View(func(tx *store.Tx) (err error) {
		hs, err = book.Holds(tx)
		return err
	})
	return slices.DeleteFunc(hs, func(h ledger.Hold) bool { return !strings.HasPrefix(h.ID, prefix) }), err
}

func paymentRequired(acct string, c Credits, cost types.Credits) error {
	wanted := ""
	if cost > 0 {
		wanted = fmt.Sprintf(" for work that may cost %s", cost)
	}
	return fmt.Errorf("%w: account %q has %s credits available%s (balance %s, limit %s, held %s): its operator credits it with dms account credit",
		api.ErrPaymentRequired, acct, c.Available, wanted, c.Balance, c.Limit, c.Held)
}

// ledgerError gives the ledger's refusals their API status.
func ledgerError(err error) error {
	switch {
	case errors.Is(err, ledger.ErrInvalid), errors.Is(err, types.ErrCreditsOverflow):
		return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	case errors.Is(err, ledger.ErrMismatch):
		return fmt.Errorf("%w: %w", api.ErrConflict, err)
	}
	return err
}

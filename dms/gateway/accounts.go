package gateway

import (
	"context"
	"fmt"
	"regexp"

	"github.com/opendms/dms/dms/api"
)

// Names. An account name is also part of keys of the database, so none
// holds a '/'.
var (
	accountName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// functionName is the pattern of function and endpoint names.
	functionName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

const (
	accountRule  = "1 to 63 of a-z, 0-9 and '-', starting with a letter or digit"
	functionRule = "1 to 63 of a-z, 0-9, '_' and '-', starting with a letter or digit"
)

// CreateAccount makes an account and its first key, in one write.
func (g *Gateway) CreateAccount(ctx context.Context, name string) (Account, NewKey, error) {
	if !accountName.MatchString(name) {
		return Account{}, NewKey{}, fmt.Errorf("%w: account name %s: want %s", api.ErrBadRequest, quote(name), accountRule)
	}
	now := g.now()
	key, rec, err := makeKey(name, now)
	if err != nil {
		return Account{}, NewKey{}, err
	}
	acct := Account{Name: name, CreatedAt: now}
	g.mu.Lock()
	defer g.mu.Unlock()
	err = g.update(ctx, func(t *tx) error {
		if found, err := t.lookup(accountKey(name), &Account{}); err != nil || found {
			return orConflict(err, "account %q exists", name)
		}
		t.set(accountKey(name), acct)
		t.set(keyKey(rec.ID), rec)
		return nil
	})
	if err != nil {
		return Account{}, NewKey{}, err
	}
	acct.Keys = 1
	return acct, key, nil
}

// ListAccounts lists the accounts by name.
func (g *Gateway) ListAccounts(ctx context.Context) ([]Account, error) {
	accts, err := all[Account](g.db, accountPrefix)
	if err != nil {
		return nil, err
	}
	counts, err := g.liveKeys()
	if err != nil {
		return nil, err
	}
	for i := range accts {
		accts[i].Keys = counts[accts[i].Name]
		if accts[i].Credits, err = g.credits(accts[i].Name); err != nil {
			return nil, err
		}
	}
	return accts, nil
}

// GetAccount returns one account.
func (g *Gateway) GetAccount(ctx context.Context, name string) (Account, error) {
	acct, err := g.account(name)
	if err != nil {
		return Account{}, err
	}
	counts, err := g.liveKeys()
	if err != nil {
		return Account{}, err
	}
	acct.Keys = counts[name]
	acct.Credits, err = g.credits(name)
	return acct, err
}

// account reads an account; ErrNotFound if there is none.
func (g *Gateway) account(name string) (Account, error) {
	return findFresh[Account](g.ctx, g, accountName.MatchString(name), accountKey(name), "account", name)
}

// notFound is the error for a thing that is missing or another account's:
// the two read the same.
func notFound(kind, name string) error {
	return fmt.Errorf("%w: %s %s", api.ErrNotFound, kind, quote(name))
}

// orConflict is err if there is one, else ErrConflict with the message.
func orConflict(err error, format string, args ...any) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: %s", api.ErrConflict, fmt.Sprintf(format, args...))
}

// maxQuoted bounds how much of a bad name an error message repeats.
const maxQuoted = 80

// quote is s in Go quotes for an error message, cut to maxQuoted bytes.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...", s[:maxQuoted])
}

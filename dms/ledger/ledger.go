package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
	"unicode"

	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/types"
)

// Book is a ledger: the key prefix its records live under, e.g.
// "ledger/" for a node's own books, "gw/ledger/" for those a gateway group
// replicates. Its records are, under that prefix:
//
//	acct/<name>                          Account
//	entry/<unix ns, 20 digits>/<id>      Entry, in time order
//	id/<entry id>                        the entry's key
//	hold/<hold id>                       Hold
type Book string

func (b Book) account(name string) string { return string(b) + "acct/" + name }
func (b Book) id(id string) string        { return string(b) + "id/" + id }
func (b Book) hold(id string) string      { return string(b) + "hold/" + id }
func (b Book) entries() string            { return string(b) + "entry/" }

// maxName bounds an account's name and an entry's or hold's ID.
const maxName = 256

var (
	// ErrInvalid means an entry, hold or account name was refused as
	// malformed; the error says why.
	ErrInvalid = errors.New("ledger: invalid")
	// ErrMismatch means an entry came again under its ID with other
	// postings: a receipt altered after it was counted, or two things
	// given one ID.
	ErrMismatch = errors.New("ledger: an entry with this ID was posted with other postings")
	// ErrInsufficient means a hold would take an account's available
	// credits below zero.
	ErrInsufficient = errors.New("ledger: insufficient credits")
)

// Account is one account's standing.
type Account struct {
	Name string `json:"name"`
	// Balance is what the entries posted to it sum to.
	Balance types.Credits `json:"balance"`
	// Limit is how far below zero holds may take it: credit the operator
	// extends.
	Limit types.Credits `json:"limit"`
	// Held is what its holds reserve.
	Held types.Credits `json:"held"`
	// Entries counts the entries posted to it.
	Entries   int       `json:"entries"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Available is what holds may still reserve: Balance + Limit - Held.
func (a Account) Available() (types.Credits, error) {
	c, err := a.Balance.Add(a.Limit)
	if err != nil {
		return 0, err
	}
	return c.Sub(a.Held)
}

// Posting adds Amount (negative: takes) to Account.
type Posting struct {
	Account string        `json:"account"`
	Amount  types.Credits `json:"amount"`
}

// Entry is one movement of credits.
type Entry struct {
	// ID names what the entry accounts for, unique in the ledger.
	ID   string    `json:"id"`
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // what sort of movement: "credit", "charge", "payout", ...
	// Postings sum to zero; one per account.
	Postings []Posting `json:"postings"`
	Memo     string    `json:"memo,omitempty"`
	// Refs name what the entry rests on (a job, a receipt's key, a period).
	Refs map[string]string `json:"refs,omitempty"`
	// Release names the hold the entry releases as it is posted, if any.
	Release string `json:"release,omitempty"`
}

// Hold reserves credits of an account.
type Hold struct {
	ID      string        `json:"id"`
	Account string        `json:"account"`
	Amount  types.Credits `json:"amount"`
	At      time.Time     `json:"at"`
	Memo    string        `json:"memo,omitempty"`
}

// InsufficientError is ErrInsufficient with the figures behind it.
type InsufficientError struct {
	Account   string
	Available types.Credits
	Wanted    types.Credits
}

func (e *InsufficientError) Error() string {
	return fmt.Sprintf("%s: account %s has %s credits available, %s wanted", ErrInsufficient, e.Account, e.Available, e.Wanted)
}

func (e *InsufficientError) Unwrap() error { return ErrInsufficient }

// CheckName says why s cannot name an account, an entry or a hold.
func CheckName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: an empty name", ErrInvalid)
	case len(s) > maxName:
		return fmt.Errorf("%w: a name of %d bytes, more than %d", ErrInvalid, len(s), maxName)
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) >= 0:
		return fmt.Errorf("%w: name %q has a space or an unprintable character", ErrInvalid, s)
	}
	return nil
}

// check says why e cannot be posted as it is.
func (e *Entry) check() error {
	if err := CheckName(e.ID); err != nil {
		return fmt.Errorf("entry ID: %w", err)
	}
	if e.At.IsZero() || e.Kind == "" {
		return fmt.Errorf("%w: entry %s has no time or no kind", ErrInvalid, e.ID)
	}
	if len(e.Postings) < 2 {
		return fmt.Errorf("%w: entry %s has %d postings: an entry moves credits between accounts", ErrInvalid, e.ID, len(e.Postings))
	}
	var sum types.Credits
	seen := map[string]bool{}
	for _, p := range e.Postings {
		if err := CheckName(p.Account); err != nil {
			return fmt.Errorf("entry %s: account: %w", e.ID, err)
		}
		if seen[p.Account] {
			return fmt.Errorf("%w: entry %s posts to %s twice", ErrInvalid, e.ID, p.Account)
		}
		seen[p.Account] = true
		if p.Amount == 0 {
			return fmt.Errorf("%w: entry %s posts nothing to %s", ErrInvalid, e.ID, p.Account)
		}
		var err error
		if sum, err = sum.Add(p.Amount); err != nil {
			return fmt.Errorf("entry %s: %w", e.ID, err)
		}
	}
	if sum != 0 {
		return fmt.Errorf("%w: entry %s's postings sum to %s, not 0", ErrInvalid, e.ID, sum)
	}
	return nil
}

func (b Book) entryKey(e *Entry) string {
	return fmt.Sprintf("%s%020d/%s", b.entries(), e.At.UnixNano(), e.ID)
}

// Tx is what the ledger needs of a transaction: a *store.Tx, or a
// replicated command's. It need not show the transaction its own writes:
// every function here reads each record it changes once, before writing
// it once.
type Tx interface {
	Getter
	Put(key string, v any) error
	Delete(key string) error
}

// Getter reads one record: Lookup decodes the JSON under key into v and
// reports whether there was any.
type Getter interface {
	Lookup(key string, v any) (bool, error)
}

// Reader reads the ledger's records in key order: a *store.Tx.
type Reader interface {
	Getter
	Scan(prefix, from string, fn func(key string, value []byte) error) error
}

var _ Reader = (*store.Tx)(nil)

// Post posts e in tx, and releases the hold it names. It reports whether
// it did: an entry already posted under e.ID with the same postings is not
// posted again (false, nil); with other postings it is refused
// (ErrMismatch). A posting may take an account below its limit: the work
// an entry bills was done; holds are where credit is checked.
func (b Book) Post(tx Tx, e Entry) (bool, error) {
	if err := e.check(); err != nil {
		return false, err
	}
	var key string
	found, err := tx.Lookup(b.id(e.ID), &key)
	if err != nil {
		return false, err
	}
	if found {
		var prior Entry
		if ok, err := tx.Lookup(key, &prior); err != nil || !ok {
			return false, errors.Join(err, fmt.Errorf("ledger: entry %s indexed at %s, which is missing", e.ID, key))
		}
		if !samePostings(prior.Postings, e.Postings) {
			return false, fmt.Errorf("%w: %s", ErrMismatch, e.ID)
		}
		return false, nil
	}
	accounts := map[string]*Account{} // each read once, changed, written once
	account := func(name string) (*Account, error) {
		if a, ok := accounts[name]; ok {
			return a, nil
		}
		a, err := b.Get(tx, name)
		accounts[name] = &a
		return &a, err
	}
	for _, p := range e.Postings {
		a, err := account(p.Account)
		if err != nil {
			return false, err
		}
		if a.Balance, err = a.Balance.Add(p.Amount); err != nil {
			return false, fmt.Errorf("entry %s: account %s: %w", e.ID, p.Account, err)
		}
		a.Entries++
		a.UpdatedAt = e.At
	}
	if e.Release != "" {
		var h Hold
		found, err := tx.Lookup(b.hold(e.Release), &h)
		if err != nil {
			return false, err
		}
		if found {
			a, err := account(h.Account)
			if err != nil {
				return false, err
			}
			if a.Held, err = a.Held.Sub(h.Amount); err != nil {
				return false, err
			}
			if err := tx.Delete(b.hold(h.ID)); err != nil {
				return false, err
			}
		}
	}
	for _, a := range accounts {
		if err := tx.Put(b.account(a.Name), a); err != nil {
			return false, err
		}
	}
	key = b.entryKey(&e)
	if err := tx.Put(key, e); err != nil {
		return false, err
	}
	return true, tx.Put(b.id(e.ID), key)
}

func samePostings(a, b []Posting) bool {
	byAccount := func(ps []Posting) map[string]types.Credits {
		m := make(map[string]types.Credits, len(ps))
		for _, p := range ps {
			m[p.Account] = p.Amount
		}
		return m
	}
	return maps.Equal(byAccount(a), byAccount(b))
}

// Get returns an account; one never posted to is zero.
func (b Book) Get(tx Getter, name string) (Account, error) {
	if err := CheckName(name); err != nil {
		return Account{}, fmt.Errorf("account: %w", err)
	}
	a := Account{Name: name}
	if _, err := tx.Lookup(b.account(name), &a); err != nil {
		return Account{}, err
	}
	return a, nil
}

// SetLimit sets how far below zero holds may take an account.
func (b Book) SetLimit(tx Tx, name string, limit types.Credits, now time.Time) (Account, error) {
	if limit < 0 {
		return Account{}, fmt.Errorf("%w: a limit of %s: a limit is 0 or more", ErrInvalid, limit)
	}
	a, err := b.Get(tx, name)
	if err != nil {
		return Account{}, err
	}
	a.Limit, a.UpdatedAt = limit, now
	return a, tx.Put(b.account(name), a)
}

// Take places hold h on its account, when that leaves the account's
// available credits at zero or more (else an *InsufficientError). A hold
// already placed under h.ID is kept as it is.
func (b Book) Take(tx Tx, h Hold) error {
	if err := CheckName(h.ID); err != nil {
		return fmt.Errorf("hold ID: %w", err)
	}
	if h.Amount < 0 {
		return fmt.Errorf("%w: hold %s of %s", ErrInvalid, h.ID, h.Amount)
	}
	if found, err := tx.Lookup(b.hold(h.ID), &Hold{}); err != nil || found {
		return err
	}
	a, err := b.Get(tx, h.Account)
	if err != nil {
		return err
	}
	avail, err := a.Available()
	if err != nil {
		return err
	}
	if avail < h.Amount {
		return &InsufficientError{Account: a.Name, Available: avail, Wanted: h.Amount}
	}
	if a.Held, err = a.Held.Add(h.Amount); err != nil {
		return err
	}
	a.UpdatedAt = h.At
	if err := tx.Put(b.account(a.Name), a); err != nil {
		return err
	}
	return tx.Put(b.hold(h.ID), h)
}

// Release removes a hold; one that is not there is already released.
func (b Book) Release(tx Tx, id string) error {
	var h Hold
	found, err := tx.Lookup(b.hold(id), &h)
	if err != nil || !found {
		return err
	}
	a, err := b.Get(tx, h.Account)
	if err != nil {
		return err
	}
	if a.Held, err = a.Held.Sub(h.Amount); err != nil {
		return err
	}
	if err := tx.Put(b.account(a.Name), a); err != nil {
		return err
	}
	return tx.Delete(b.hold(id))
}

// Hold reads the hold under id, if it is in place.
func (b Book) Hold(tx Getter, id string) (Hold, bool, error) {
	var h Hold
	found, err := tx.Lookup(b.hold(id), &h)
	return h, found, err
}

// Holds lists the holds in place, by ID.
func (b Book) Holds(tx Reader) ([]Hold, error) {
	var out []Hold
	err := tx.Scan(b.hold(""), "", func(_ string, v []byte) error {
		var h Hold
		if err := json.Unmarshal(v, &h); err != nil {
			return err
		}
		out = append(out, h)
		return nil
	})
	return out, err
}

// Accounts lists the accounts whose names start with prefix, by name.
func (b Book) Accounts(tx Reader, prefix string) ([]Account, error) {
	var out []Account
	err := tx.Scan(b.account(prefix), "", func(_ string, v []byte) error {
		var a Account
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// Entries calls fn with the entries posted from from (inclusive) to to
// (exclusive; zero: no end), in the order of their times; an error from fn
// stops it and is returned.
func (b Book) Entries(tx Reader, from, to time.Time, fn func(Entry) error) error {
	start := ""
	if !from.IsZero() {
		start = fmt.Sprintf("%s%020d", b.entries(), from.UnixNano())
	}
	errStop := errors.New("stop")
	err := tx.Scan(b.entries(), start, func(key string, v []byte) error {
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("ledger: %s: %w", key, err)
		}
		if !to.IsZero() && !e.At.Before(to) {
			return errStop
		}
		return fn(e)
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// Lookup returns the entry posted under id, and whether there is one.
func (b Book) Lookup(tx Getter, id string) (Entry, bool, error) {
	var key string
	if found, err := tx.Lookup(b.id(id), &key); err != nil || !found {
		return Entry{}, false, err
	}
	var e Entry
	found, err := tx.Lookup(key, &e)
	return e, found, err
}

package ledger

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/types"
)

var t0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

// book is the ledger the tests keep.
const book Book = "test/ledger/"

func openDB(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(store.Options{Dir: t.TempDir(), BlobDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func credit(id, to string, amount types.Credits, at time.Time) Entry {
	return Entry{ID: id, At: at, Kind: "credit", Postings: []Posting{{"funding", -amount}, {to, amount}}}
}

func post(db *store.DB, e Entry) (bool, error) {
	var posted bool
	err := db.Update(func(tx *store.Tx) error {
		var err error
		posted, err = book.Post(tx, e)
		return err
	})
	return posted, err
}

func account(t testing.TB, db *store.DB, name string) Account {
	t.Helper()
	var a Account
	if err := db.View(func(tx *store.Tx) error { var err error; a, err = book.Get(tx, name); return err }); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPostOnce: an entry counts once under its ID; the same ID with
// other postings is refused and changes nothing.
func TestPostOnce(t *testing.T) {
	db := openDB(t)
	e := credit("topup-1", "customer/alice", 5*types.Credit, t0)
	for i, want := range []bool{true, false} {
		if posted, err := post(db, e); err != nil || posted != want {
			t.Fatalf("post %d: %v, %v; want %v", i, posted, err, want)
		}
	}
	if a := account(t, db, "customer/alice"); a.Balance != 5*types.Credit || a.Entries != 1 {
		t.Fatalf("alice %+v", a)
	}
	forged := credit("topup-1", "customer/alice", 500*types.Credit, t0.Add(time.Second))
	if _, err := post(db, forged); !errors.Is(err, ErrMismatch) {
		t.Fatalf("an altered entry: %v, want ErrMismatch", err)
	}
	if a := account(t, db, "customer/alice"); a.Balance != 5*types.Credit {
		t.Fatalf("alice after the altered entry: %+v", a)
	}
}

// TestPostRefusesMalformedEntries names what is wrong, and writes nothing.
func TestPostRefusesMalformedEntries(t *testing.T) {
	db := openDB(t)
	for _, c := range []struct {
		e    Entry
		want string
	}{
		{Entry{At: t0, Kind: "x", Postings: []Posting{{"a", 1}, {"b", -1}}}, "empty name"},
		{Entry{ID: "e", Kind: "x", Postings: []Posting{{"a", 1}, {"b", -1}}}, "no time"},
		{Entry{ID: "e", At: t0, Kind: "x", Postings: []Posting{{"a", 1}}}, "1 postings"},
		{Entry{ID: "e", At: t0, Kind: "x", Postings: []Posting{{"a", 2}, {"b", -1}}}, "sum to 0.000001"},
		{Entry{ID: "e", At: t0, Kind: "x", Postings: []Posting{{"a", 1}, {"a", -1}}}, "posts to a twice"},
		{Entry{ID: "e", At: t0, Kind: "x", Postings: []Posting{{"a", 0}, {"b", 0}}}, "posts nothing"},
		{Entry{ID: "e", At: t0, Kind: "x", Postings: []Posting{{"a b", 1}, {"b", -1}}}, "a space"},
		{Entry{ID: "e", At: t0, Kind: "x", Postings: []Posting{{"a", math.MaxInt64}, {"b", 1}, {"c", -1}}}, "overflow"},
	} {
		if _, err := post(db, c.e); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.e, err, c.want)
		}
	}
	var n int
	if err := db.View(func(tx *store.Tx) error {
		return book.Entries(tx, time.Time{}, time.Time{}, func(Entry) error { n++; return nil })
	}); err != nil || n != 0 {
		t.Fatalf("%d entries, %v", n, err)
	}
}

// TestHoldsReserveAvailableCredits: a hold is taken only within the
// balance and the limit, names the figures when refused, and the entry
// that bills the work releases it.
func TestHoldsReserveAvailableCredits(t *testing.T) {
	db := openDB(t)
	if _, err := post(db, credit("topup", "customer/bob", 2*types.Credit, t0)); err != nil {
		t.Fatal(err)
	}
	take := func(id string, amount types.Credits) error {
		return db.Update(func(tx *store.Tx) error {
			return book.Take(tx, Hold{ID: id, Account: "customer/bob", Amount: amount, At: t0})
		})
	}
	if err := take("job-1", 1500000); err != nil {
		t.Fatal(err)
	}
	var short *InsufficientError
	if err := take("job-2", types.Credit); !errors.As(err, &short) || short.Available != 500000 || short.Wanted != types.Credit {
		t.Fatalf("a hold past the balance: %v", err)
	}
	if err := db.Update(func(tx *store.Tx) error { _, err := book.SetLimit(tx, "customer/bob", types.Credit, t0); return err }); err != nil {
		t.Fatal(err)
	}
	if err := take("job-2", types.Credit); err != nil {
		t.Fatalf("within the limit: %v", err)
	}
	charge := Entry{ID: "receipt-1", At: t0.Add(time.Minute), Kind: "charge", Release: "job-1",
		Postings: []Posting{{"customer/bob", -1200000}, {"provider/p1", 1200000}}}
	if _, err := post(db, charge); err != nil {
		t.Fatal(err)
	}
	a := account(t, db, "customer/bob")
	avail, _ := a.Available()
	if a.Balance != 800000 || a.Held != types.Credit || a.Limit != types.Credit || avail != 800000 {
		t.Fatalf("bob after the charge: %+v, available %s", a, avail)
	}
}

// TestLedgerModel checks the ledger against a model of it, over random
// credits, charges, limits, holds and releases, replays and forgeries:
// balances and holds agree with the model, and all balances sum to zero.
func TestLedgerModel(t *testing.T) {
	db := openDB(t)
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		pre := fmt.Sprintf("r%d/", run) // accounts of this run only
		accounts := []string{pre + "customer/a", pre + "customer/b", pre + "provider/p"}
		balance := map[string]types.Credits{}
		held := map[string]types.Credits{}
		limit := map[string]types.Credits{}
		holds := map[string]Hold{}
		var posted []Entry
		at := t0
		amount := rapid.Custom(func(t *rapid.T) types.Credits {
			return types.Credits(rapid.OneOf(rapid.Int64Range(1, 10_000_000), rapid.Int64Range(math.MaxInt64/4, math.MaxInt64)).Draw(t, "amount"))
		})
		for i := range rapid.IntRange(1, 40).Draw(rt, "ops") {
			at = at.Add(time.Millisecond)
			id := fmt.Sprintf("%s%d", pre, i)
			from := rapid.SampledFrom(accounts).Draw(rt, "from")
			to := rapid.SampledFrom(accounts).Draw(rt, "to")
			switch op := rapid.IntRange(0, 5).Draw(rt, "op"); op {
			case 0, 1: // an entry
				if from == to {
					from = pre + "funding"
				}
				n := amount.Draw(rt, "n")
				e := Entry{ID: id, At: at, Kind: "move", Postings: []Posting{{from, -n}, {to, n}}}
				var release string
				if len(holds) > 0 && rapid.Bool().Draw(rt, "release") {
					for k := range holds {
						release = k
						break
					}
					e.Release = release
				}
				_, err := post(db, e)
				b1, o1 := balance[from].Sub(n)
				b2, o2 := balance[to].Add(n)
				if o1 != nil || o2 != nil {
					if err == nil {
						rt.Fatalf("an overflowing entry was posted: %+v", e)
					}
					continue
				}
				if err != nil {
					rt.Fatalf("post %+v: %v", e, err)
				}
				balance[from], balance[to] = b1, b2
				posted = append(posted, e)
				if release != "" {
					h := holds[release]
					held[h.Account] -= h.Amount
					delete(holds, release)
				}
			case 2: // a replay, or a forgery of an entry posted
				if len(posted) == 0 {
					continue
				}
				e := rapid.SampledFrom(posted).Draw(rt, "again")
				forged := rapid.Bool().Draw(rt, "forged")
				if forged {
					e.Postings = []Posting{e.Postings[0], {pre + "forger", e.Postings[1].Amount}} // the credits sent elsewhere
				}
				posted, err := post(db, e)
				if posted || (forged != errors.Is(err, ErrMismatch)) || (!forged && err != nil) {
					rt.Fatalf("posting %+v again (forged %v): %v, %v", e, forged, posted, err)
				}
			case 3: // a limit
				l := types.Credits(rapid.Int64Range(0, 5_000_000).Draw(rt, "limit"))
				if err := db.Update(func(tx *store.Tx) error { _, err := book.SetLimit(tx, from, l, at); return err }); err != nil {
					rt.Fatal(err)
				}
				limit[from] = l
			case 4: // a hold
				n := amount.Draw(rt, "hold")
				h := Hold{ID: id, Account: from, Amount: n, At: at}
				err := db.Update(func(tx *store.Tx) error { return book.Take(tx, h) })
				avail, aerr := balance[from].Add(limit[from])
				if aerr == nil {
					avail, aerr = avail.Sub(held[from])
				}
				switch {
				case aerr == nil && avail >= n:
					if err != nil {
						rt.Fatalf("hold %s of %s with %s available: %v", id, n, avail, err)
					}
					held[from] += n
					holds[id] = h
				case err == nil:
					rt.Fatalf("hold %s of %s taken with %s available", id, n, avail)
				}
			case 5: // a release
				for k, h := range holds {
					if err := db.Update(func(tx *store.Tx) error { return book.Release(tx, k) }); err != nil {
						rt.Fatal(err)
					}
					held[h.Account] -= h.Amount
					delete(holds, k)
					break
				}
			}
		}
		var all []Account
		if err := db.View(func(tx *store.Tx) error { var err error; all, err = book.Accounts(tx, pre); return err }); err != nil {
			rt.Fatal(err)
		}
		sum := new(big.Int) // the accounts' balances may pass the range on the way to zero
		for _, a := range all {
			if a.Balance != balance[a.Name] || a.Held != held[a.Name] || a.Limit != limit[a.Name] {
				rt.Fatalf("%s: %+v; model balance %s held %s limit %s", a.Name, a, balance[a.Name], held[a.Name], limit[a.Name])
			}
			sum.Add(sum, big.NewInt(int64(a.Balance)))
		}
		if sum.Sign() != 0 {
			rt.Fatalf("balances sum to %s micro-credits", sum)
		}
	})
}

// TestEntriesByTime: entries come in the order of their times, within
// the range asked, and each can be looked up by its ID.
func TestEntriesByTime(t *testing.T) {
	db := openDB(t)
	for i, at := range []time.Time{t0.Add(2 * time.Hour), t0, t0.Add(time.Hour)} {
		if _, err := post(db, credit(fmt.Sprintf("e%d", i), "customer/c", types.Credit, at)); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	err := db.View(func(tx *store.Tx) error {
		return book.Entries(tx, t0, t0.Add(2*time.Hour), func(e Entry) error { ids = append(ids, e.ID); return nil })
	})
	if err != nil || strings.Join(ids, ",") != "e1,e2" {
		t.Fatalf("entries %v, %v", ids, err)
	}
	err = db.View(func(tx *store.Tx) error {
		e, ok, err := book.Lookup(tx, "e0")
		if err == nil && (!ok || !e.At.Equal(t0.Add(2*time.Hour))) {
			err = fmt.Errorf("e0: %+v, %v", e, ok)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// blindTx is a transaction that does not show its own writes, as a
// replicated command's does not: reads see the committed records only,
// writes are applied at the end.
type blindTx struct {
	db  *store.DB
	put map[string]any
	del []string
}

func (b *blindTx) Lookup(key string, v any) (bool, error) { return b.db.Lookup(key, v) }
func (b *blindTx) Put(key string, v any) error            { b.put[key] = v; return nil }
func (b *blindTx) Delete(key string) error                { b.del = append(b.del, key); return nil }

func blind(t *testing.T, db *store.DB, fn func(Tx) error) {
	t.Helper()
	b := &blindTx{db: db, put: map[string]any{}}
	if err := fn(b); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(b.put, b.del); err != nil {
		t.Fatal(err)
	}
}

// TestPostThroughABlindTx: an entry that bills an account and releases
// its hold in one commit comes out right through a transaction that does
// not show its own writes (each record is read once, written once).
func TestPostThroughABlindTx(t *testing.T) {
	db := openDB(t)
	blind(t, db, func(tx Tx) error {
		_, err := book.Post(tx, credit("topup", "customer/d", 3*types.Credit, t0))
		return err
	})
	blind(t, db, func(tx Tx) error {
		return book.Take(tx, Hold{ID: "job", Account: "customer/d", Amount: 2 * types.Credit, At: t0})
	})
	blind(t, db, func(tx Tx) error {
		_, err := book.Post(tx, Entry{ID: "receipt", At: t0, Kind: "charge", Release: "job",
			Postings: []Posting{{"customer/d", -types.Credit}, {"provider/p", types.Credit}}})
		return err
	})
	if a := account(t, db, "customer/d"); a.Balance != 2*types.Credit || a.Held != 0 || a.Entries != 2 {
		t.Fatalf("d after the charge: %+v", a)
	}
	if ok, _ := db.Lookup(book.hold("job"), &Hold{}); ok {
		t.Fatal("the hold is still there")
	}
}

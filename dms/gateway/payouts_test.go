package gateway

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// payoutCharge posts a receipt's charge of amount to alice, owed to peer.
func payoutCharge(t *testing.T, r *rig, peer, receipt string, amount types.Credits) {
	t.Helper()
	chargeOf(t, r.g, "alice", peer, receipt, "fn:alice/echo@1", r.clock.Now(), amount, types.Credit)
}

// flakySettler fails while fail is set, and remembers what it settled.
type flakySettler struct {
	fail    bool
	settled []string
}

func (f *flakySettler) Settle(_ context.Context, s Statement) (string, error) {
	if f.fail {
		return "", errors.New("the bank is closed")
	}
	f.settled = append(f.settled, s.ID)
	return "wire-" + fmt.Sprint(len(f.settled)), nil
}

// TestPayout: a payout settles every receipt charge once, in a statement
// per provider whose total is their sum; the providers' accounts go to
// zero; a run that fails to settle posts nothing and the next one makes
// the same statement; later charges go to the next payout only.
func TestPayout(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	bank := &flakySettler{fail: true}
	r.g.settler = bank
	payoutCharge(t, r, "p1", "a/1", 1500)
	payoutCharge(t, r, "p1", "b/1", 2500)
	payoutCharge(t, r, "p2", "c/1", 700)
	if _, err := r.g.Payout(ctx); err == nil {
		t.Fatal("a payout the settler refused succeeded")
	}
	if list, err := r.g.Statements(ctx); err != nil || len(list) != 0 {
		t.Fatalf("statements after a failed settlement: %+v, %v", list, err)
	}
	bank.fail = false
	list, err := r.g.Payout(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("payout: %+v, %v", list, err)
	}
	if s := list[0]; s.Provider != "p1" || s.Total != 4000 || len(s.Lines) != 2 || s.Reference != "wire-1" || s.Lines[0].Name != "fn:alice/echo@1" {
		t.Fatalf("p1's statement: %+v", s)
	}
	if s := list[1]; s.Provider != "p2" || s.Total != 700 || len(s.Lines) != 1 {
		t.Fatalf("p2's statement: %+v", s)
	}
	for _, p := range []string{"p1", "p2"} {
		if a, _ := book.Get(r.db, providerAccount(p)); a.Balance != 0 {
			t.Fatalf("%s is still owed %s", p, a.Balance)
		}
	}
	if again, err := r.g.Payout(ctx); err != nil || len(again) != 0 {
		t.Fatalf("a second payout with nothing new: %+v, %v", again, err)
	}
	r.clock.Add(time.Hour)
	payoutCharge(t, r, "p1", "d/1", 300)
	next, err := r.g.Payout(ctx)
	if err != nil || len(next) != 1 || next[0].Total != 300 || next[0].Lines[0].Receipt != "d/1" {
		t.Fatalf("the next payout: %+v, %v", next, err)
	}
	all, err := r.g.Statements(ctx)
	if err != nil || len(all) != 3 {
		t.Fatalf("statements %+v, %v", all, err)
	}
	var buf bytes.Buffer
	if err := WriteStatementsCSV(&buf, all); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 1+4+3 {
		t.Fatalf("csv: %d rows, %v", len(rows), err)
	}
	var lines, totals types.Credits
	for _, row := range rows[1:] {
		n, err := types.ParseCredits(row[7])
		if err != nil {
			t.Fatal(err)
		}
		if row[5] == "total" {
			totals += n
		} else {
			lines += n
		}
	}
	if lines != 5000 || totals != 5000 {
		t.Fatalf("csv: lines sum to %s, totals to %s; want 0.005 each", lines, totals)
	}
}

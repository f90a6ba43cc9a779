package gateway

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/ledger"
	"github.com/opendms/dms/types"
)

// TestCallsNeedCredits: a gateway that requires credits refuses every
// kind of call of an account with none available (402, saying its
// standing) before anything runs, and admits them once the operator
// credits the account or extends it credit.
func TestCallsNeedCredits(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	if _, err := r.alice.CreateEndpoint(ctx, EndpointSpec{Name: "pub", Function: "echo", Auth: AuthNone}); err != nil {
		t.Fatal(err)
	}
	r.g.requireCredits = true
	before := r.f.submissions()
	calls := map[string]func() error{
		"invoke":   func() error { _, err := r.alice.Invoke(ctx, "echo", Call{}); return err },
		"async":    func() error { _, err := r.alice.InvokeAsync(ctx, "echo", Call{}); return err },
		"endpoint": func() error { _, err := r.g.CallEndpoint(ctx, "pub", Call{}, ""); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, api.ErrPaymentRequired) || !strings.Contains(err.Error(), `account "alice" has 0 credits available (balance 0, limit 0, held 0)`) {
			t.Errorf("%s with no credits: %v", name, err)
		}
	}
	if n := r.f.submissions(); n != before {
		t.Fatalf("%d instances started for refused calls", n-before)
	}
	if _, err := r.g.Credit(ctx, "alice", types.MicroCredit, ""); err != nil {
		t.Fatal(err)
	}
	for name, call := range calls {
		if err := call(); err != nil {
			t.Errorf("%s with a micro-credit: %v", name, err)
		}
	}
	bob, _ := r.account(t, "bob")
	r.deploy(t, bob, Deploy{Name: "echo"})
	if _, err := bob.Invoke(ctx, "echo", Call{}); !errors.Is(err, api.ErrPaymentRequired) {
		t.Fatalf("bob with no credits: %v", err)
	}
	if _, err := r.g.SetCreditLimit(ctx, "bob", types.Credit); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Invoke(ctx, "echo", Call{}); err != nil {
		t.Fatalf("bob within his limit: %v", err)
	}
}

// TestHandlerPaymentRequired: over HTTP, a call of an account without
// credits is 402 with the account's standing in the message.
func TestHandlerPaymentRequired(t *testing.T) {
	g := publicGateway(t)
	g.deploy(Deploy{Name: "echo"})
	g.r.g.requireCredits = true
	g.as(g.r.key, "POST", "/v1/functions/echo/invoke", "hi").wantError(t, 402, "0 credits available")
	if _, err := g.r.g.Credit(t.Context(), "alice", types.Credit, ""); err != nil {
		t.Fatal(err)
	}
	g.as(g.r.key, "POST", "/v1/functions/echo/invoke", "hi").want(t, 200)
}

// TestChargeCountsOnce: a receipt's charge is posted once to its account:
// again with the same digest it changes nothing; under its ID another
// digest or other postings conflict; an account not the gateway's is not
// found.
func TestChargeCountsOnce(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	entry := func(amount types.Credits) ledger.Entry {
		return ledger.Entry{ID: "receipt/p/a/1", At: time.Now(), Kind: "receipt",
			Postings: []ledger.Posting{{Account: creditAccount("alice"), Amount: -amount}, {Account: "provider/p", Amount: amount}}}
	}
	for range 2 {
		if err := r.g.Charge(ctx, "alice", entry(556), "d1"); err != nil {
			t.Fatal(err)
		}
	}
	if a, err := r.g.GetAccount(ctx, "alice"); err != nil || a.Credits.Balance != -556 {
		t.Fatalf("alice after one charge sent twice: %+v, %v", a.Credits, err)
	}
	if err := r.g.Charge(ctx, "alice", entry(556), "d2"); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("another digest under the ID: %v", err)
	}
	if err := r.g.Charge(ctx, "alice", ledger.Entry{ID: "receipt/p/a/2", At: time.Now(), Kind: "receipt",
		Postings: []ledger.Posting{{Account: creditAccount("alice"), Amount: -1}, {Account: "provider/p", Amount: 1}}}, "d3"); err != nil {
		t.Fatal(err)
	}
	if err := r.g.Charge(ctx, "nobody", entry(1), "d4"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("an account not the gateway's: %v", err)
	}
	if a, _ := r.g.GetAccount(ctx, "alice"); a.Credits.Balance != -557 {
		t.Fatalf("alice: %+v", a.Credits)
	}
}

package dms

import (
	"errors"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// TestReceiptChecksProperty: for any price, CPU and run, a receipt that
// bills the run as its provider saw it, within the requester's view and
// its tolerance, passes checkFigures and checkAgainst; the same
// receipt with one figure changed (its amount, price, resources, account,
// signer, sequence, or a span off the view by more than the tolerance) is
// refused. The tolerance is checked against a naive one.
func TestReceiptChecksProperty(t *testing.T) {
	const self, provider = "12D3KooWRequester", "12D3KooWProvider"
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	rapid.Check(t, func(t *rapid.T) {
		price := types.Credits(rapid.Int64Range(0, 1_000_000*int64(types.Credit)).Draw(t, "price"))
		res := types.Resources{CPU: types.MilliCPU(rapid.Int64Range(1, 64_000).Draw(t, "cpu")), Memory: 64 << 20}
		seen := time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(48*time.Hour)).Draw(t, "seen"))
		tol := max(2*time.Second, seen/10) // the naive tolerance
		if got := receiptTolerance(seen); got != tol {
			t.Fatalf("tolerance of %s: %s, want %s", seen, got, tol)
		}
		// The provider's run starts a little after the requester placed it,
		// and its span is within the tolerance of the requester's view.
		delay := time.Duration(rapid.Int64Range(0, int64(time.Second)).Draw(t, "delay"))
		start := t0.Add(delay)
		wall := time.Duration(rapid.Int64Range(0, int64(seen+tol-delay)).Draw(t, "wall"))
		rec := orchestrator.Record{
			JobInfo: orchestrator.JobInfo{ID: "j", Attempts: []orchestrator.Attempt{{AllocationID: "a", Node: provider, Price: price, PlacedAt: t0, EndedAt: t0.Add(seen)}}},
			Spec:    orchestrator.JobSpec{ID: "j", Task: types.Task{Executor: "wasm", Resources: res, Account: "acme"}},
		}
		r := types.Receipt{ID: "a/1", JobID: "j", AllocationID: "a", Requester: self, Account: "acme", Seq: 1, Final: true,
			From: start, To: start.Add(wall), Resources: res, Price: price}
		var err error
		if r.Amount, err = types.Cost(price, res.CPU, wall); err != nil {
			t.Skip("overflow")
		}
		now := t0.Add(seen + tol) // the receipt comes after the run ended, as both saw it
		check := func(r types.Receipt, from string) error {
			if err := checkFigures(&r, self, now); err != nil {
				return err
			}
			return checkAgainst(rec, from, &r, now)
		}
		if err := check(r, provider); err != nil {
			t.Fatalf("a true receipt refused: %v", err)
		}
		mutations := map[string]func(r *types.Receipt) string{
			"amount": func(r *types.Receipt) string {
				r.Amount += types.Credits(rapid.SampledFrom([]int64{-1, 1, 1000}).Draw(t, "d"))
				return provider
			},
			"price": func(r *types.Receipt) string {
				r.Price++
				r.Amount, _ = types.Cost(r.Price, r.Resources.CPU, wall)
				return provider
			},
			"resources": func(r *types.Receipt) string { r.Resources.Memory *= 2; return provider },
			"account":   func(r *types.Receipt) string { r.Account = ""; return provider },
			"signer":    func(r *types.Receipt) string { return "12D3KooWSomeoneElse" },
			"sequence":  func(r *types.Receipt) string { r.Seq, r.ID = 2, "a/2"; return provider },
			"span": func(r *types.Receipt) string {
				off := tol + time.Duration(rapid.Int64Range(1, int64(time.Hour)).Draw(t, "off"))
				r.To = r.From.Add(seen + off)
				r.Amount, _ = types.Cost(r.Price, r.Resources.CPU, r.To.Sub(r.From))
				return provider
			},
		}
		name := rapid.SampledFrom([]string{"amount", "price", "resources", "account", "signer", "sequence", "span"}).Draw(t, "mutation")
		bad := r
		from := mutations[name](&bad)
		if name == "span" && bad.To.After(now.Add(receiptSkew)) {
			now = bad.To // judged on its span, not its end in the future
		}
		if err := check(bad, from); !errors.Is(err, ErrBadReceipt) {
			t.Fatalf("%s changed: %v, want ErrBadReceipt", name, err)
		}
	})
}

package node

import (
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// A run that ends leaves its receipt pending in the same write as its
// record: the bid's price for the locked CPU over the run, what it used.
// A receipt its requester cannot take stays pending across a restart, and
// the restarted node delivers it once.
func TestRunReceiptSurvivesRestart(t *testing.T) {
	st := newMemStore()
	h := newHarness(t, st, 0)
	h.net.receiptsDown.Store(true)
	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	sts, err := h.invoke("a1", c.Epoch, "files")
	if err != nil || len(sts) != 2 || sts[1].State != types.AllocCompleted {
		t.Fatalf("statuses %+v, %v", sts, err)
	}
	var rec Allocation
	var rc types.Receipt
	if ok, _ := st.Lookup(AllocationPrefix+"a1", &rec); !ok {
		t.Fatal("no record")
	}
	if ok, _ := st.Lookup(PendingReceiptPrefix+"a1/1", &rc); !ok {
		t.Fatal("no pending receipt once the run ended")
	}
	amount, err := types.Cost(types.Credit, 1000, rec.EndedAt.Sub(rec.StartedAt))
	if err != nil {
		t.Fatal(err)
	}
	if rc.ID != "a1/1" || rc.Seq != 1 || !rc.Final || rc.Requester != requester || rc.Price != types.Credit || rec.Price != types.Credit ||
		rc.Resources != rec.Resources || !rc.From.Equal(rec.StartedAt) || !rc.To.Equal(rec.EndedAt) || rc.Amount != amount ||
		rc.Usage == nil || *rc.Usage != *sts[1].Result.Usage {
		t.Fatalf("receipt %+v of record %+v (amount %s)", rc, rec, amount)
	}
	h.node.Close()

	h2 := newHarness(t, st, 0)
	waitUntil(t, func() bool {
		h2.net.mu.Lock()
		defer h2.net.mu.Unlock()
		return len(h2.net.runReceipts) == 1
	})
	waitUntil(t, func() bool {
		ok, _ := st.Lookup(PendingReceiptPrefix+"a1/1", &rc)
		return !ok
	})
	if got := h2.net.runReceipts[0]; got.ID != "a1/1" || got.Amount != amount {
		t.Fatalf("delivered %+v", got)
	}
}

// A receipt its requester refuses for good is no longer pending; a run
// that was cancelled has no receipt.
func TestRunReceiptRefusedOrNone(t *testing.T) {
	st := newMemStore()
	h := newHarness(t, st, 0)
	h.net.refuse.Store(true)
	c := h.accept("a1", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	if _, err := h.invoke("a1", c.Epoch, "x"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		ok, _ := st.Lookup(PendingReceiptPrefix+"a1/1", &types.Receipt{})
		return !ok
	})
	c = h.accept("a2", types.Resources{CPU: 1000, Memory: 1 << 20}).(*types.Confirm)
	go func() { _, _ = h.invoke("a2", c.Epoch, "block") }()
	waitUntil(t, func() bool {
		info, _ := h.node.Info(h.ctx())
		return info.Running == 1
	})
	if _, err := h.node.Cancel(h.ctx(), requester, &types.Cancel{JobID: "a2", AllocationID: "a2"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		var rec Allocation
		ok, _ := st.Lookup(AllocationPrefix+"a2", &rec)
		return ok && rec.State.Terminal()
	})
	if ok, _ := st.Lookup(PendingReceiptPrefix+"a2/1", &types.Receipt{}); ok {
		t.Fatal("a cancelled run has a receipt")
	}
}

// A requester that cannot be reached is tried once a round: its other
// pending receipts wait with the one that failed, rather than each wait
// for its own failure.
func TestPendingReceiptsOfAnUnreachableRequester(t *testing.T) {
	st := newMemStore()
	for _, id := range []string{"a1/1", "a2/1"} {
		if err := st.Put(PendingReceiptPrefix+id, types.Receipt{ID: id, Requester: awayRequester, Seq: 1, Final: true}); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarnessConfig(t, st, func(*Config) {})
	waitUntil(t, func() bool { return h.net.receiptTries.Load() >= 1 })
	time.Sleep(200 * time.Millisecond) // the next try is 1s away
	if n := h.net.receiptTries.Load(); n != 1 {
		t.Fatalf("%d tries in the first round, want 1", n)
	}
	h.net.awayBack.Store(true)
	waitUntil(t, func() bool {
		h.net.mu.Lock()
		defer h.net.mu.Unlock()
		return len(h.net.runReceipts) == 2
	})
}

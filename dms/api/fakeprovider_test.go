package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The fake's provider views: each listing answers one page naming the
// query it got, so a test sees what reached the service.

func (f *fakeService) NodeAllocations(_ context.Context, q PageQuery) (AllocationPage, error) {
	return AllocationPage{Allocations: []Allocation{{ID: "a1", State: "completed", JobID: q.Filter}}, Next: q.After + "+"}, f.failWith
}

func (f *fakeService) NodeLocks(context.Context) (Ledger, error) {
	return Ledger{Locks: []Lock{{AllocationID: "a2", Expiry: time.Unix(1, 0)}}, Holds: []Hold{}}, f.failWith
}

func (f *fakeService) NodeBids(_ context.Context, q PageQuery) (BidPage, error) {
	return BidPage{Bids: []BidRecord{{ID: "b1", Outcome: q.Filter, Reasons: []string{"limit " + string(rune('0'+q.Limit%10))}}}, Next: q.After}, f.failWith
}

// The provider's listings take their filter, limit and cursor from the
// query, through the client as over plain HTTP; a bad limit is a 400
// saying what would do.
func TestProviderViewsRoutes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	allocs, err := h.client.NodeAllocations(ctx, PageQuery{Filter: "failed", Limit: 3, After: "00000000000000000001/a"})
	if err != nil || allocs.Allocations[0].JobID != "failed" || allocs.Next != "00000000000000000001/a+" {
		t.Fatalf("allocations: %+v, %v", allocs, err)
	}
	bids, err := h.client.NodeBids(ctx, PageQuery{Filter: "declined", Limit: 7})
	if err != nil || bids.Bids[0].Outcome != "declined" || bids.Bids[0].Reasons[0] != "limit 7" {
		t.Fatalf("bids: %+v, %v", bids, err)
	}
	locks, err := h.client.NodeLocks(ctx)
	if err != nil || len(locks.Locks) != 1 || locks.Locks[0].AllocationID != "a2" || !locks.Locks[0].Expiry.Equal(time.Unix(1, 0)) {
		t.Fatalf("locks: %+v, %v", locks, err)
	}
	if status, body := h.do(t, http.MethodGet, "/v1/node/bids", ""); status != http.StatusOK || !strings.Contains(string(body), `"limit 0"`) {
		t.Fatalf("default page: %d %s", status, body) // 50 % 10
	}
	for _, path := range []string{"/v1/node/allocations?limit=0", "/v1/node/bids?limit=1001", "/v1/node/allocations?limit=many"} {
		status, body := h.do(t, http.MethodGet, path, "")
		var e errorBody
		if status != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "want a whole number from 1 to 1000") {
			t.Errorf("%s: %d %s", path, status, body)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
)

// The fake's provider views: one allocation a page, two bid records, a
// hold and a lock; filters are checked as the daemon checks them.

var fakeStart = time.Date(2026, 12, 4, 10, 0, 0, 0, time.Local)

func (f *fakeService) NodeAllocations(_ context.Context, q api.PageQuery) (api.AllocationPage, error) {
	if q.Filter != "" && !slices.Contains(node.AllocationStates(), types.AllocationState(q.Filter)) {
		return api.AllocationPage{}, fmt.Errorf("%w: %w: state %q: want one of locked, running, completed, failed, cancelled", api.ErrBadRequest, node.ErrBadQuery, q.Filter)
	}
	all := []api.Allocation{
		{ID: "j2-1", JobID: "j2", Requester: "12D3KooWRequesterAAAA", State: types.AllocRunning, Resources: types.Resources{CPU: 500, Memory: 64 << 20},
			Price: 2 * types.Credit, LockedAt: fakeStart.Add(time.Minute), StartedAt: fakeStart.Add(time.Minute), DurationMillis: 90_000},
		{ID: "j1-1", JobID: "j1", Requester: "12D3KooWRequesterBBBB", State: types.AllocCompleted, Resources: types.Resources{CPU: 1000, Memory: 128 << 20},
			Price: 2 * types.Credit, LockedAt: fakeStart, StartedAt: fakeStart, EndedAt: fakeStart.Add(1500 * time.Millisecond), DurationMillis: 1500},
	}
	var out []api.Allocation
	for _, a := range all {
		if q.Filter == "" || string(a.State) == q.Filter {
			out = append(out, a)
		}
	}
	if q.After != "" {
		out = out[1:]
	}
	if len(out) > 1 && q.Limit == 1 {
		return api.AllocationPage{Allocations: out[:1], Next: "cursor-1"}, nil
	}
	return api.AllocationPage{Allocations: out}, nil
}

func (f *fakeService) NodeLocks(context.Context) (api.Ledger, error) {
	return api.Ledger{
		Registered: types.Resources{CPU: 4000, Memory: 1 << 30}, Available: types.Resources{CPU: 2500, Memory: 768 << 20},
		Held: types.Resources{CPU: 500, Memory: 64 << 20}, Locked: types.Resources{CPU: 1000, Memory: 192 << 20}, Epoch: 7,
		Holds: []api.Hold{{AllocationID: "j3-9", JobID: "j3", Requester: "12D3KooWRequesterAAAA", Resources: types.Resources{CPU: 500, Memory: 64 << 20},
			Price: 2 * types.Credit, Until: fakeStart.Add(3 * time.Second)}},
		Locks: []api.Lock{{AllocationID: "j4-2", JobID: "j4", Requester: "12D3KooWRequesterBBBB", Resources: types.Resources{CPU: 1000, Memory: 192 << 20},
			Price: 2 * types.Credit, Epoch: 7, Expiry: fakeStart.Add(10 * time.Second)}},
	}, nil
}

func (f *fakeService) NodeBids(_ context.Context, q api.PageQuery) (api.BidPage, error) {
	all := []api.BidRecord{
		{ID: "2", ReceivedAt: fakeStart.Add(time.Minute), JobID: "cheap", Requester: "12D3KooWRequesterAAAA", Executor: "wasm",
			Resources: types.Resources{CPU: 100, Memory: 16 << 20}, MaxPrice: types.Credit, Outcome: "declined", Reasons: []string{"price: 2 per core-hour over max 1"}},
		{ID: "1", ReceivedAt: fakeStart, JobID: "j1", Requester: "12D3KooWRequesterBBBB", Executor: "wasm",
			Resources: types.Resources{CPU: 1000, Memory: 128 << 20}, Outcome: "bid", Price: 2 * types.Credit, Allocation: "j1-1"},
	}
	var out []api.BidRecord
	for _, b := range all {
		if q.Filter == "" || b.Outcome == q.Filter {
			out = append(out, b)
		}
	}
	return api.BidPage{Bids: out}, nil
}

func TestNodeViews(t *testing.T) {
	home := newDaemon(t, newFakeService())
	runCases(t, home, []cliCase{
		{[]string{"node", "allocations"}, 0, "ALLOCATION  JOB  REQUESTER  STATE      RESOURCES"},
		{[]string{"node", "allocations"}, 0, "j1-1        j1   …sterBBBB  completed  cpu 1 core, memory 128 MiB, disk 0 B    2026-12-04 10:00:00  2026-12-04 10:00:01  1.5s      2\n"},
		{[]string{"node", "allocations", "--state", "running"}, 0, "j2-1        j2   …sterAAAA  running  cpu 0.5 cores"},
		{[]string{"node", "allocations", "--limit", "1"}, 0, "more: --after cursor-1\n"},
		{[]string{"node", "allocations", "-o", "json"}, 0, `"state": "completed"`},
		{[]string{"node", "allocations", "--state", "done"}, 1, `dms: api: bad request: node: bad query: state "done": want one of locked, running, completed, failed, cancelled`},
		{[]string{"node", "locks"}, 0, "held:"},
		{[]string{"node", "locks"}, 0, "hold  j3-9        j3   …sterAAAA  cpu 0.5 cores, memory 64 MiB, disk 0 B  2      -      until 2026-12-04 10:00:03\n"},
		{[]string{"node", "locks"}, 0, "lock  j4-2        j4   …sterBBBB  cpu 1 core, memory 192 MiB, disk 0 B    2      7      expires 2026-12-04 10:00:10\n"},
		{[]string{"node", "bids"}, 0, "cheap  …sterAAAA  wasm cpu 0.1 cores, memory 16 MiB, disk 0 B, at most 1  declined  price: 2 per core-hour over max 1"},
		{[]string{"peers"}, 0, "12D3KooWOther   0.25ms   wasm,docker  cpu 2 cores, memory 1 GiB, disk 0 B  3      renewable,idle-only  /ip4/127.0.0.1/tcp/4002"},
		{[]string{"peers"}, 0, "12D3KooWSilent  -        ?            ?                                    ?      ?                    /ip4/127.0.0.1/tcp/4003\n"},
		{[]string{"node", "bids", "--outcome", "bid"}, 0, "j1   …sterBBBB  wasm cpu 1 core, memory 128 MiB, disk 0 B  bid      2"},
	})
}

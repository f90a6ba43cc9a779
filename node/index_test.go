package node

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// ScanRange makes memStore a Ranger.
func (m *memStore) ScanRange(from, to string, fn func(string, []byte) error) error {
	return m.scanWhere(func(k string) bool { return k >= from && k < to }, fn)
}

// views is what a provider's listings show, each read a page of one at a
// time: allocation IDs and states, bid records' jobs and outcomes.
func views(t *testing.T, st Ranger) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"", "locked", "running", "completed", "failed", "cancelled"} {
		q := Query{Filter: f, Limit: 1}
		for {
			recs, next, err := ListAllocations(st, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				out = append(out, fmt.Sprintf("alloc %q: %s %s", f, r.AllocationID, r.State))
			}
			if next == "" {
				break
			}
			q.After = next
		}
	}
	for _, f := range []string{"", OutcomeBid, OutcomeDeclined} {
		recs, _, err := ListBids(st, Query{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out = append(out, fmt.Sprintf("bid %q: %s %s %s %v", f, r.JobID, r.Outcome, r.Price, r.Reasons))
		}
	}
	return out
}

// A provider's listings show its allocations newest first, by state, and
// the bid requests it answered, with its price or why it declined; after
// every index key is deleted, RebuildIndex gives the same listings.
func TestProviderViewsAndRebuild(t *testing.T) {
	st := newMemStore()
	h := newHarness(t, st, 0)
	r := types.Resources{CPU: 1000, Memory: 1 << 20}
	c := h.accept("a1", r).(*types.Confirm)
	if _, err := h.invoke("a1", c.Epoch); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond) // a2's lock is newer than a1's
	h.accept("a2", r)
	h.node.HandleBidRequest(requester, &types.BidRequest{JobID: "cheap", Requester: requester, Executor: "wasm", Resources: r,
		Constraints: types.Constraints{MaxPrice: types.Credit / 2}, Deadline: time.Now().Add(time.Minute)})
	<-h.net.sent
	h.node.FlushBids()

	got := views(t, st)
	want := []string{
		`alloc "": a2 locked`, `alloc "": a1 completed`,
		`alloc "locked": a2 locked`, `alloc "completed": a1 completed`,
	}
	if !reflect.DeepEqual(got[:4], want) {
		t.Fatalf("allocations:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	bids := strings.Join(got[4:], "\n")
	for _, w := range []string{
		`bid "": cheap declined 0`, `bid "": a2 bid ` + types.Credit.String(), `bid "": a1 bid`,
		`bid "bid": a2 bid`, `bid "declined": cheap declined 0 [price: 1 per core-hour over max 0.5]`,
	} {
		if !strings.Contains(bids, w) {
			t.Errorf("bid listings lack %q:\n%s", w, bids)
		}
	}
	if strings.Index(bids, `bid "": cheap`) > strings.Index(bids, `bid "": a2`) {
		t.Errorf("bids not newest first:\n%s", bids)
	}

	var idx []string
	st.Scan(IndexPrefix, func(k string, _ []byte) error { idx = append(idx, k); return nil })
	if len(idx) == 0 {
		t.Fatal("no index keys")
	}
	st.Write(nil, append(idx, IndexVersionKey))
	if got := views(t, st); len(got) != 0 {
		t.Fatalf("listings without an index: %v", got)
	}
	if _, err := RebuildIndex(st); err != nil {
		t.Fatal(err)
	}
	if again := views(t, st); !reflect.DeepEqual(again, got) {
		t.Fatalf("after a rebuild:\n%s\nwant\n%s", strings.Join(again, "\n"), strings.Join(got, "\n"))
	}
	var rebuilt []string
	st.Scan(IndexPrefix, func(k string, _ []byte) error { rebuilt = append(rebuilt, k); return nil })
	if !reflect.DeepEqual(rebuilt, idx) {
		t.Fatalf("rebuilt keys %v, want %v", rebuilt, idx)
	}

	v, err := h.node.Ledger(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Locks) != 1 || v.Locks[0].AllocationID != "a2" || v.Locked != r || v.Registered != offered || v.Available != offered.Sub(r) {
		t.Fatalf("ledger view %+v", v)
	}
}

// A node that starts without an index (an earlier version's database)
// builds it from the records.
func TestIndexBuiltAtStart(t *testing.T) {
	st := newMemStore()
	rec := Allocation{AllocationID: "old", JobID: "old", State: types.AllocCompleted, LockedAt: time.Now().Add(-time.Hour), StartedAt: time.Now().Add(-time.Hour)}
	st.Put(rec.Key(), rec)
	newHarness(t, st, 0)
	recs, _, err := ListAllocations(st, Query{Filter: "completed"})
	if err != nil || len(recs) != 1 || recs[0].AllocationID != "old" {
		t.Fatalf("listing after start: %v, %v", recs, err)
	}
	var v int
	if ok, _ := st.Lookup(IndexVersionKey, &v); !ok || v != IndexVersion {
		t.Fatalf("index version %d", v)
	}
}

func TestListBadQuery(t *testing.T) {
	st := newMemStore()
	for _, c := range []struct {
		list func(Ranger, Query) error
		q    Query
		want string
	}{
		{allocs, Query{Filter: "done"}, `state "done": want one of locked, running, completed, failed, cancelled`},
		{bids, Query{Filter: "won"}, `outcome "won": want bid or declined`},
		{allocs, Query{Limit: -1}, "limit -1: want 1 to 1000"},
		{bids, Query{Limit: MaxPage + 1}, "limit 1001: want 1 to 1000"},
		{allocs, Query{After: "x/y"}, `cursor "x/y": want the next value of an earlier page`},
		{bids, Query{After: "00000000000000000001"}, "cursor"},
	} {
		err := c.list(st, c.q)
		if !errors.Is(err, ErrBadQuery) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want ErrBadQuery saying %q", c.q, err, c.want)
		}
	}
}

func allocs(st Ranger, q Query) error { _, _, err := ListAllocations(st, q); return err }
func bids(st Ranger, q Query) error   { _, _, err := ListBids(st, q); return err }

// Paging reads every record once, newest first, whatever the page size,
// and ExpireBids drops the records before the cutoff with their index keys.
func TestBidPagesAndExpiry(t *testing.T) {
	st := newMemStore()
	log := newBidLog(st, nil)
	t0 := time.Unix(1_700_000_000, 0)
	const n = 25
	for i := range n {
		msg := types.Message(&types.Bid{JobID: types.JobID(fmt.Sprint(i)), Price: types.Credit})
		if i%3 == 0 {
			msg = &types.Decline{JobID: types.JobID(fmt.Sprint(i)), Reasons: []string{"no"}}
		}
		log.add(Send{Msg: msg, Request: &types.BidRequest{JobID: types.JobID(fmt.Sprint(i))}}, t0.Add(time.Duration(i)*time.Second))
	}
	log.Flush()
	for _, limit := range []int{1, 2, 7, 25, 100} {
		var got []string
		q := Query{Limit: limit}
		for {
			recs, next, err := ListBids(st, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				got = append(got, string(r.JobID))
			}
			if next == "" {
				break
			}
			q.After = next
		}
		if len(got) != n || got[0] != "24" || got[n-1] != "0" {
			t.Fatalf("limit %d: %v", limit, got)
		}
	}
	deleted, err := ExpireBids(st, t0.Add(10*time.Second), 4)
	if err != nil || deleted != 10 {
		t.Fatalf("expired %d, %v", deleted, err)
	}
	recs, _, _ := ListBids(st, Query{Limit: MaxPage})
	declined, _, _ := ListBids(st, Query{Filter: OutcomeDeclined, Limit: MaxPage})
	if len(recs) != 15 || recs[14].JobID != "10" || len(declined) != 5 {
		t.Fatalf("after expiry: %d records, oldest %s, %d declined", len(recs), recs[len(recs)-1].JobID, len(declined))
	}
	keys := 0
	st.Scan(IndexPrefix, func(string, []byte) error { keys++; return nil })
	if keys != 2*15 {
		t.Fatalf("%d index keys for 15 records", keys)
	}
	before := indexKeys(st)
	if _, err := RebuildIndex(st); err != nil {
		t.Fatal(err)
	}
	if after := indexKeys(st); !reflect.DeepEqual(after, before) {
		t.Fatalf("rebuilt over the index: %d keys, had %d", len(after), len(before))
	}
}

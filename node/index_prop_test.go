package node

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/opendms/dms/types"
)

// Whatever the allocations' lives (locked, then running and ended, or
// ended unused and discarded), the writes the shell makes (record, and
// audit's discard) leave indices whose listings, read a page at a time,
// are the naive ones: the records there are, newest first, by state; a
// rebuild leaves the same keys.
func TestAllocationIndexProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := newMemStore()
		a := &nodeActor{store: st, n: &Node{outbox: &outbox{kick: make(chan struct{}, 1)}}}
		aud := &audit{store: st}
		t0 := time.Unix(1_700_000_000, 0)
		live := map[types.AllocationID]*Allocation{}
		kept := map[types.AllocationID]Allocation{}
		for i := range rapid.IntRange(0, 40).Draw(t, "steps") {
			id := types.AllocationID(fmt.Sprintf("a%02d", rapid.IntRange(0, 15).Draw(t, "id")))
			rec, ok := live[id]
			_, ended := kept[id]
			switch {
			case !ok && !ended:
				rec = &Allocation{AllocationID: id, State: types.AllocLocked, LockedAt: t0.Add(time.Duration(rapid.IntRange(0, 5).Draw(t, "at")) * time.Second)}
				live[id] = rec
			case !ok:
				continue
			case rec.State == types.AllocLocked && rapid.Bool().Draw(t, "start"):
				rec.State, rec.StartedAt = types.AllocRunning, t0.Add(time.Duration(i)*time.Second)
			case rec.State == types.AllocLocked:
				rec.State = rapid.SampledFrom([]types.AllocationState{types.AllocFailed, types.AllocCancelled}).Draw(t, "unused")
				if err := aud.discard(*rec, 1); err != nil {
					t.Fatal(err)
				}
				delete(live, id)
				delete(kept, id)
				continue
			default:
				rec.State = rapid.SampledFrom([]types.AllocationState{types.AllocCompleted, types.AllocFailed, types.AllocCancelled}).Draw(t, "end")
				rec.EndedAt = t0.Add(time.Duration(i) * time.Second)
				delete(live, id)
			}
			if err := a.record(*rec); err != nil {
				t.Fatal(err)
			}
			kept[id] = *rec
		}
		for _, f := range append([]string{""}, stateNames()...) {
			var want []types.AllocationID
			recs := slices.Collect(func(yield func(Allocation) bool) {
				for _, r := range kept {
					if (f == "" || string(r.State) == f) && !yield(r) {
						return
					}
				}
			})
			slices.SortFunc(recs, func(x, y Allocation) int {
				return cmp.Or(y.LockedAt.Compare(x.LockedAt), cmp.Compare(x.AllocationID, y.AllocationID))
			})
			for _, r := range recs {
				want = append(want, r.AllocationID)
			}
			var got []types.AllocationID
			q := Query{Filter: f, Limit: rapid.IntRange(1, 4).Draw(t, "limit")}
			for {
				page, next, err := ListAllocations(st, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range page {
					got = append(got, r.AllocationID)
				}
				if next == "" {
					break
				}
				q.After = next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("state %q: listed %v, want %v", f, got, want)
			}
		}
		before := indexKeys(st)
		if _, err := RebuildIndex(st); err != nil {
			t.Fatal(err)
		}
		if after := indexKeys(st); !slices.Equal(after, before) {
			t.Fatalf("rebuilt %v, had %v", after, before)
		}
	})
}

func stateNames() []string {
	var out []string
	for _, s := range AllocationStates() {
		out = append(out, string(s))
	}
	return out
}

func indexKeys(st *memStore) []string {
	var keys []string
	st.Scan(IndexPrefix, func(k string, _ []byte) error { keys = append(keys, k); return nil })
	return keys
}

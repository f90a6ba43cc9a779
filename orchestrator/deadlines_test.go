package orchestrator

import (
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestDeadlinesMatchScan checks the heap of deadlines against the scan it
// replaces: a plain map of each job's deadline, searched in full.
func TestDeadlinesMatchScan(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var d deadlines
		entries := make([]*entry, 6)
		for i := range entries {
			entries[i] = &entry{}
		}
		scan := map[*entry]time.Time{} // the jobs with a deadline, and it
		// A few milliseconds apart, so deadlines tie and repeat; -1 is none.
		at := func(label string) time.Time {
			n := rapid.IntRange(-1, 10).Draw(t, label)
			if n < 0 {
				return time.Time{}
			}
			return t0.Add(time.Duration(n) * ms)
		}
		t.Repeat(map[string]func(*rapid.T){
			"set": func(t *rapid.T) {
				e := entries[rapid.IntRange(0, len(entries)-1).Draw(t, "entry")]
				due := at("due")
				d.set(e, due)
				if due.IsZero() {
					delete(scan, e)
				} else {
					scan[e] = due
				}
			},
			"popDue": func(t *rapid.T) {
				now := at("now")
				got := d.popDue(now)
				want := 0
				for _, due := range scan {
					if !now.Before(due) {
						want++
					}
				}
				if len(got) != want {
					t.Fatalf("popDue(%s) = %d entries, the scan finds %d", stamp(now), len(got), want)
				}
				var last time.Time
				for _, e := range got {
					due, ok := scan[e]
					if !ok || now.Before(due) || due.Before(last) || !e.due.IsZero() {
						t.Fatalf("popDue(%s): entry %d not due, twice, out of order or still filed", stamp(now), slices.Index(entries, e))
					}
					delete(scan, e)
					last = due
				}
			},
			"": func(t *rapid.T) {
				var next time.Time
				for _, due := range scan {
					if next.IsZero() || due.Before(next) {
						next = due
					}
				}
				if got := d.next(); !got.Equal(next) {
					t.Fatalf("next = %s, the scan finds %s", stamp(got), stamp(next))
				}
				if len(d) != len(scan) {
					t.Fatalf("%d entries in the heap, %d jobs with a deadline", len(d), len(scan))
				}
				for i, e := range entries {
					if !e.due.Equal(scan[e]) || (!e.due.IsZero() && d[e.slot] != e) {
						t.Fatalf("entry %d filed at %s (slot %d), the scan says %s", i, stamp(e.due), e.slot, stamp(scan[e]))
					}
				}
			},
		})
	})
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.Format(time.StampMilli)
}

package orchestrator

import (
	"container/heap"
	"time"
)

// deadlines holds the jobs that wait for a deadline, earliest first, so the
// loop finds the next one without scanning every active job. It is a
// container/heap in which each entry knows its place: an entry is in it
// exactly when its due time is set, at index slot. Moving a job costs
// O(log n); setting the deadline it already has costs nothing. Loop only.
type deadlines []*entry

// set files e under due, its job's next deadline; zero takes it out.
func (d *deadlines) set(e *entry, due time.Time) {
	switch {
	case due.Equal(e.due):
	case e.due.IsZero():
		e.due = due
		heap.Push(d, e)
	case due.IsZero():
		heap.Remove(d, e.slot)
	default:
		e.due = due
		heap.Fix(d, e.slot)
	}
}

// next returns the earliest deadline, zero if no job waits for one.
func (d deadlines) next() time.Time {
	if len(d) == 0 {
		return time.Time{}
	}
	return d[0].due
}

// popDue takes out and returns, earliest first, the entries due by now.
func (d *deadlines) popDue(now time.Time) []*entry {
	var out []*entry
	for len(*d) > 0 && !now.Before((*d)[0].due) {
		out = append(out, heap.Pop(d).(*entry))
	}
	return out
}

func (d deadlines) Len() int           { return len(d) }
func (d deadlines) Less(i, j int) bool { return d[i].due.Before(d[j].due) }

func (d deadlines) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].slot, d[j].slot = i, j
}

// Push is for container/heap: use set.
func (d *deadlines) Push(x any) {
	e := x.(*entry)
	e.slot = len(*d)
	*d = append(*d, e)
}

// Pop is for container/heap: use set or popDue.
func (d *deadlines) Pop() any {
	old := *d
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*d = old[:len(old)-1]
	e.due = time.Time{}
	return e
}

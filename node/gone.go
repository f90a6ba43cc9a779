package node

import (
	"github.com/opendms/dms/types"
)

// goneSize is how many bids evicted and locks ended unused the machine
// remembers, so that their requester learns why (an Accept's Reject, an
// Invocation's or a Query's final status) though nothing of them is kept
// on disk.
const goneSize = 1024

// goneEntry is what the machine remembers of one of them.
type goneEntry struct {
	requester string
	reason    string        // an evicted bid: why its Accept is refused
	status    *types.Status // a lock ended unused: its final status
	epoch     uint64        // and the epoch it was locked under
}

// gone is a bounded memory, oldest forgotten first.
type gone struct {
	size    int
	entries map[types.AllocationID]goneEntry
	order   []types.AllocationID // oldest first
}

func newGone(size int) gone {
	return gone{size: size, entries: map[types.AllocationID]goneEntry{}}
}

// addEvicted remembers a bid whose hold was evicted, and why.
func (g *gone) addEvicted(id types.AllocationID, requester, reason string) {
	g.put(id, goneEntry{requester: requester, reason: reason})
}

// addEnded remembers a lock that ended unused.
func (g *gone) addEnded(rec Allocation, st types.Status) {
	g.put(rec.AllocationID, goneEntry{requester: rec.Requester, status: &st, epoch: rec.Epoch})
}

// put remembers id, forgetting the oldest entry when full.
func (g *gone) put(id types.AllocationID, e goneEntry) {
	if _, ok := g.entries[id]; !ok {
		if len(g.order) == g.size {
			delete(g.entries, g.order[0])
			g.order = g.order[1:]
		}
		g.order = append(g.order, id)
	}
	g.entries[id] = e
}

func (g *gone) get(id types.AllocationID) (goneEntry, bool) {
	e, ok := g.entries[id]
	return e, ok
}

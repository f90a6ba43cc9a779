package graph

import (
	"cmp"
	"fmt"
	"slices"
)

// Ready tracks which nodes of a DAG may start as others finish: Take hands
// out the nodes whose predecessors are all done, Done records that one
// finished. It is a snapshot of the DAG, and is not safe for concurrent use.
type Ready[K cmp.Ordered] struct {
	g         *numbered[K]
	index     map[K]int   // key -> number in g
	pending   []int       // each node's predecessors not done yet
	state     []nodeState // each node's progress
	ready     []int       // nodes with no pending predecessor, not taken yet
	remaining int         // nodes not done
}

type nodeState uint8

const (
	notTaken nodeState = iota
	taken
	done
)

// Ready returns a tracker of g's nodes, none of them taken, or a *CycleError
// if g has a cycle. Later changes to g do not affect it.
func (g *DAG[K]) Ready() (*Ready[K], error) {
	s := g.numbered()
	if !s.acyclic() {
		return nil, s.cycleError()
	}
	r := &Ready[K]{
		g:         s,
		index:     make(map[K]int, len(s.keys)),
		pending:   s.indeg, // s is our own copy
		state:     make([]nodeState, len(s.keys)),
		remaining: len(s.keys),
	}
	for n, k := range s.keys {
		r.index[k] = n
		if s.indeg[n] == 0 {
			r.ready = append(r.ready, n)
		}
	}
	return r, nil
}

// Take returns, sorted, the nodes whose predecessors are all done and that
// were not taken yet, and marks them taken; nil if there are none.
func (r *Ready[K]) Take() []K {
	if len(r.ready) == 0 {
		return nil
	}
	slices.Sort(r.ready) // numbers are in key order
	out := make([]K, len(r.ready))
	for i, n := range r.ready {
		out[i] = r.g.keys[n]
		r.state[n] = taken
	}
	r.ready = r.ready[:0]
	return out
}

// Done records that k finished, which may make its successors ready. It
// fails, changing nothing, if k is unknown (ErrUnknownNode), was not taken
// yet (ErrNotTaken), or is done already (ErrAlreadyDone).
func (r *Ready[K]) Done(k K) error {
	n, ok := r.index[k]
	if !ok {
		return fmt.Errorf("%w: %v", ErrUnknownNode, k)
	}
	switch r.state[n] {
	case notTaken:
		return fmt.Errorf("%w: %v", ErrNotTaken, k)
	case done:
		return fmt.Errorf("%w: %v", ErrAlreadyDone, k)
	}
	r.state[n] = done
	r.remaining--
	for _, m := range r.g.succs(n) {
		if r.pending[m]--; r.pending[m] == 0 {
			r.ready = append(r.ready, m)
		}
	}
	return nil
}

// Remaining returns the number of nodes not done.
func (r *Ready[K]) Remaining() int { return r.remaining }

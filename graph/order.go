package graph

import (
	"cmp"
	"slices"
)

// Sort returns every node in a topological order: each node after all of its
// predecessors, and among the nodes whose predecessors are all placed, the
// smallest key first, so the order depends only on the graph. If g has a
// cycle, Sort returns a *CycleError naming the one Cycle returns.
func (g *DAG[K]) Sort() ([]K, error) {
	s := g.numbered()
	pending := slices.Clone(s.indeg)
	var ready minHeap
	for n, d := range pending {
		if d == 0 {
			ready.push(n)
		}
	}
	out := make([]K, 0, len(s.keys))
	for len(ready) > 0 {
		n := ready.pop()
		out = append(out, s.keys[n])
		for _, m := range s.succs(n) {
			if pending[m]--; pending[m] == 0 {
				ready.push(m)
			}
		}
	}
	if len(out) < len(s.keys) {
		return nil, s.cycleError()
	}
	return out, nil
}

// Cycle returns nil if g is acyclic, and otherwise one of its cycles as a
// path whose first and last elements are equal ([a b c a]; [a a] for a self
// edge). The cycle is the first met by a depth-first search that starts from
// the nodes in key order and follows successors in key order, rotated to
// start at its smallest key.
func (g *DAG[K]) Cycle() []K {
	s := g.numbered()
	return s.keysOf(s.cycle())
}

// numbered is a copy of a DAG's edges with the nodes numbered in key order,
// so that comparing numbers compares keys. Sort, Cycle and Ready work on it.
type numbered[K cmp.Ordered] struct {
	keys  []K   // ascending
	off   []int // node n's successors are adj[off[n]:off[n+1]]
	adj   []int
	indeg []int // each node's number of predecessors
}

func (g *DAG[K]) numbered() *numbered[K] {
	sorted := slices.Clone(g.keys)
	slices.Sort(sorted)
	byKey := make([]int, len(g.keys)) // new number -> the DAG's number
	renum := make([]int, len(g.keys)) // the DAG's number -> new number
	for n, k := range sorted {
		i := g.index[k]
		byKey[n], renum[i] = i, n
	}
	s := &numbered[K]{
		keys:  sorted,
		off:   make([]int, len(g.keys)+1),
		adj:   make([]int, 0, g.edges),
		indeg: make([]int, len(g.keys)),
	}
	for n, i := range byKey {
		s.indeg[n] = len(g.preds[i])
		for _, j := range g.succs[i] {
			s.adj = append(s.adj, renum[j])
		}
		s.off[n+1] = len(s.adj)
	}
	return s
}

func (s *numbered[K]) succs(n int) []int { return s.adj[s.off[n]:s.off[n+1]] }

func (s *numbered[K]) keysOf(nodes []int) []K {
	if nodes == nil {
		return nil
	}
	out := make([]K, len(nodes))
	for i, n := range nodes {
		out[i] = s.keys[n]
	}
	return out
}

func (s *numbered[K]) sortSuccs() {
	for n := range s.keys {
		slices.Sort(s.succs(n))
	}
}

// acyclic reports whether every node can be placed after its predecessors
// (Kahn's algorithm, in no particular order).
func (s *numbered[K]) acyclic() bool {
	pending := slices.Clone(s.indeg)
	var stack []int
	for n, d := range pending {
		if d == 0 {
			stack = append(stack, n)
		}
	}
	placed := 0
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		placed++
		for _, m := range s.succs(n) {
			if pending[m]--; pending[m] == 0 {
				stack = append(stack, m)
			}
		}
	}
	return placed == len(s.keys)
}

func (s *numbered[K]) cycleError() *CycleError[K] {
	return &CycleError[K]{Cycle: s.keysOf(s.cycle())}
}

// Colours of the depth-first search of cycleFrom.
const (
	unseen   uint8 = iota
	onPath         // on the path from the root to the node being explored
	explored       // no cycle goes through it
)

// cycle returns a cycle as described at DAG.Cycle, or nil. It sorts s's
// successor lists first, so that the search follows them in key order.
func (s *numbered[K]) cycle() []int {
	s.sortSuccs()
	color := make([]uint8, len(s.keys))
	for root := range s.keys {
		if color[root] != unseen {
			continue
		}
		if c := s.cycleFrom(root, color); c != nil {
			return rotate(c)
		}
	}
	return nil
}

// cycleFrom searches depth first from root, through nodes not explored yet,
// and returns the first cycle it meets (its nodes, the first not repeated),
// or nil.
func (s *numbered[K]) cycleFrom(root int, color []uint8) []int {
	color[root] = onPath
	path := []int{root}
	next := []int{s.off[root]} // next[i]: where path[i]'s successors not followed yet start in adj
	for len(path) > 0 {
		top := len(path) - 1
		n := path[top]
		if next[top] == s.off[n+1] {
			color[n] = explored
			path, next = path[:top], next[:top]
			continue
		}
		m := s.adj[next[top]]
		next[top]++
		switch color[m] {
		case unseen:
			color[m] = onPath
			path, next = append(path, m), append(next, s.off[m])
		case onPath:
			return path[slices.Index(path, m):]
		}
	}
	return nil
}

// rotate returns the cycle c[0] -> c[1] -> ... -> c[0] as a closed path that
// starts and ends at its smallest node.
func rotate(c []int) []int {
	low := slices.Index(c, slices.Min(c))
	out := make([]int, 0, len(c)+1)
	out = append(append(out, c[low:]...), c[:low]...)
	return append(out, out[0])
}

// minHeap is a binary min-heap of node numbers.
type minHeap []int

func (h *minHeap) push(n int) {
	*h = append(*h, n)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if s[parent] <= s[i] {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
}

func (h *minHeap) pop() int {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		low, l, r := i, 2*i+1, 2*i+2
		if l < len(s) && s[l] < s[low] {
			low = l
		}
		if r < len(s) && s[r] < s[low] {
			low = r
		}
		if low == i {
			break
		}
		s[i], s[low] = s[low], s[i]
		i = low
	}
	*h = s
	return top
}

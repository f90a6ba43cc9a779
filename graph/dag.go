package graph

import (
	"cmp"
	"slices"
)

// DAG is a directed graph of keys; an edge from -> to means from must finish
// before to. It accepts cycles (see the package doc); Sort, Cycle and Ready
// report them.
//
// The zero DAG is an empty graph, ready to use.
type DAG[K cmp.Ordered] struct {
	index map[K]int // key -> node number (the order nodes were added in)
	keys  []K       // node number -> key
	// Each node's successors and predecessors, by number, kept ascending so
	// that a duplicate edge is found by binary search.
	succs [][]int
	preds [][]int
	edges int
}

// New returns an empty DAG.
func New[K cmp.Ordered]() *DAG[K] {
	return &DAG[K]{index: make(map[K]int)}
}

// AddNode adds k if it is missing.
func (g *DAG[K]) AddNode(k K) { g.node(k) }

// AddEdge adds an edge from -> to, and the nodes if missing. Adding an edge
// twice changes nothing; a self edge (from == to) is a cycle.
func (g *DAG[K]) AddEdge(from, to K) {
	f, t := g.node(from), g.node(to)
	i, found := slices.BinarySearch(g.succs[f], t)
	if found {
		return
	}
	g.succs[f] = slices.Insert(g.succs[f], i, t)
	j, _ := slices.BinarySearch(g.preds[t], f)
	g.preds[t] = slices.Insert(g.preds[t], j, f)
	g.edges++
}

// node returns k's number, adding k if it is missing.
func (g *DAG[K]) node(k K) int {
	if n, ok := g.index[k]; ok {
		return n
	}
	if g.index == nil {
		g.index = make(map[K]int)
	}
	n := len(g.keys)
	g.index[k] = n
	g.keys = append(g.keys, k)
	g.succs = append(g.succs, nil)
	g.preds = append(g.preds, nil)
	return n
}

// Has reports whether k is a node of g.
func (g *DAG[K]) Has(k K) bool {
	_, ok := g.index[k]
	return ok
}

// Len returns the number of nodes.
func (g *DAG[K]) Len() int { return len(g.keys) }

// Nodes returns every node, sorted.
func (g *DAG[K]) Nodes() []K {
	out := slices.Clone(g.keys)
	slices.Sort(out)
	return out
}

// Preds returns the nodes with an edge to k, sorted; nil for an unknown key
// (an empty, non-nil slice for a known key without predecessors).
func (g *DAG[K]) Preds(k K) []K {
	n, ok := g.index[k]
	if !ok {
		return nil
	}
	return g.sortedKeys(g.preds[n])
}

// Succs returns the nodes k has an edge to, sorted; nil for an unknown key
// (an empty, non-nil slice for a known key without successors).
func (g *DAG[K]) Succs(k K) []K {
	n, ok := g.index[k]
	if !ok {
		return nil
	}
	return g.sortedKeys(g.succs[n])
}

// Descendants returns the nodes reachable from k by one edge or more,
// sorted: k itself only if it lies on a cycle. Nil for an unknown key.
func (g *DAG[K]) Descendants(k K) []K {
	n, ok := g.index[k]
	if !ok {
		return nil
	}
	seen := make([]bool, len(g.keys))
	var found []int // breadth first: found is also the queue
	reach := func(from int) {
		for _, m := range g.succs[from] {
			if !seen[m] {
				seen[m] = true
				found = append(found, m)
			}
		}
	}
	reach(n)
	for i := 0; i < len(found); i++ {
		reach(found[i])
	}
	return g.sortedKeys(found)
}

// sortedKeys returns the keys of the given nodes, sorted.
func (g *DAG[K]) sortedKeys(nodes []int) []K {
	out := make([]K, len(nodes))
	for i, n := range nodes {
		out[i] = g.keys[n]
	}
	slices.Sort(out)
	return out
}

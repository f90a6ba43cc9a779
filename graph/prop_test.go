package graph

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// Property tests: random graphs, checked against a naive model that spells
// out each answer with maps and quadratic loops.

// model is a graph as sets.
type model struct {
	nodes map[int]bool
	edges map[[2]int]bool
}

func (m model) sorted() []int { return slices.Sorted(maps.Keys(m.nodes)) }

func (m model) preds(k int) []int {
	var out []int
	for _, j := range m.sorted() {
		if m.edges[[2]int{j, k}] {
			out = append(out, j)
		}
	}
	return out
}

// reach returns the nodes reachable from k by one edge or more.
func (m model) reach(k int, seen map[int]bool) map[int]bool {
	for e := range m.edges {
		if e[0] == k && !seen[e[1]] {
			seen[e[1]] = true
			m.reach(e[1], seen)
		}
	}
	return seen
}

// hasCycle reports whether some node reaches itself.
func (m model) hasCycle() bool {
	for k := range m.nodes {
		if m.reach(k, map[int]bool{})[k] {
			return true
		}
	}
	return false
}

// kahn returns the topological order that places, again and again, the
// smallest node whose predecessors are all placed; false if it gets stuck.
func (m model) kahn() ([]int, bool) {
	placed := map[int]bool{}
	var order []int
	for len(order) < len(m.nodes) {
		next, found := 0, false
		for _, k := range m.sorted() {
			if !placed[k] && m.allIn(m.preds(k), placed) {
				next, found = k, true
				break
			}
		}
		if !found {
			return nil, false
		}
		placed[next] = true
		order = append(order, next)
	}
	return order, true
}

func (m model) allIn(ks []int, set map[int]bool) bool {
	for _, k := range ks {
		if !set[k] {
			return false
		}
	}
	return true
}

// op is a call that builds a graph: AddEdge(from, to) if edge, else AddNode(from).
type op struct {
	from, to int
	edge     bool
}

// drawGraph draws the calls that build a graph of at most 12 nodes (keys 0
// to 11), duplicate nodes and edges and self edges included, and the model of
// that graph. Half the graphs, and all if acyclic is set, are acyclic: their
// edges go forward in a random order of the keys, so that the key order is
// not a topological order.
func drawGraph(t *rapid.T, acyclic bool) ([]op, model) {
	keys := rapid.Permutation([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}).Draw(t, "order")
	forwardOnly := acyclic || rapid.Bool().Draw(t, "forward only")
	n := rapid.IntRange(1, len(keys)).Draw(t, "keys")
	ops := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) op {
		i, j := rapid.IntRange(0, n-1).Draw(t, "from"), rapid.IntRange(0, n-1).Draw(t, "to")
		if forwardOnly && i > j {
			i, j = j, i
		}
		edge := rapid.IntRange(0, 3).Draw(t, "kind") > 0 && !(forwardOnly && i == j)
		return op{from: keys[i], to: keys[j], edge: edge}
	}), 0, 40).Draw(t, "ops")
	m := model{nodes: map[int]bool{}, edges: map[[2]int]bool{}}
	for _, o := range ops {
		m.nodes[o.from] = true
		if o.edge {
			m.nodes[o.to] = true
			m.edges[[2]int{o.from, o.to}] = true
		}
	}
	return ops, m
}

func buildOps(ops []op) *DAG[int] {
	g := New[int]()
	for _, o := range ops {
		if o.edge {
			g.AddEdge(o.from, o.to)
		} else {
			g.AddNode(o.from)
		}
	}
	return g
}

// checkCycle fails unless c is a simple cycle of m that starts at its smallest node.
func checkCycle(t *rapid.T, m model, c []int) {
	if len(c) < 2 || c[0] != c[len(c)-1] {
		t.Fatalf("cycle %v is not a closed path", c)
	}
	for i := range len(c) - 1 {
		if !m.edges[[2]int{c[i], c[i+1]}] {
			t.Fatalf("cycle %v: no edge %d -> %d", c, c[i], c[i+1])
		}
	}
	inner := c[:len(c)-1]
	if len(slices.Compact(slices.Sorted(slices.Values(inner)))) != len(inner) || c[0] != slices.Min(inner) {
		t.Fatalf("cycle %v is not simple, or does not start at its smallest node", c)
	}
}

func TestPropSort(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ops, m := drawGraph(t, false)
		got, err := buildOps(ops).Sort()
		want, ok := m.kahn()
		if !ok {
			var ce *CycleError[int]
			if !errors.As(err, &ce) || got != nil {
				t.Fatalf("Sort of a cyclic graph = %v, %v", got, err)
			}
			checkCycle(t, m, ce.Cycle)
			return
		}
		if err != nil {
			t.Fatalf("Sort: %v", err)
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), m.sorted()) {
			t.Fatalf("Sort = %v: not a permutation of %v", got, m.sorted())
		}
		for e := range m.edges {
			if slices.Index(got, e[0]) > slices.Index(got, e[1]) {
				t.Fatalf("Sort = %v puts %d before %d", got, e[1], e[0])
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Sort = %v, want (smallest ready first) %v", got, want)
		}
	})
}

func TestPropCycle(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ops, m := drawGraph(t, false)
		g := buildOps(ops)
		c := g.Cycle()
		if (c != nil) != m.hasCycle() {
			t.Fatalf("Cycle = %v, but the naive search says cyclic: %v", c, m.hasCycle())
		}
		if c == nil {
			return
		}
		checkCycle(t, m, c)
		var fromSort, fromReady *CycleError[int]
		_, err := g.Sort()
		_, err2 := g.Ready()
		if !errors.As(err, &fromSort) || !errors.As(err2, &fromReady) ||
			!slices.Equal(fromSort.Cycle, c) || !slices.Equal(fromReady.Cycle, c) {
			t.Fatalf("Cycle = %v, Sort: %v, Ready: %v", c, err, err2)
		}
	})
}

// TestPropOrderAdded builds the same graph twice, the calls shuffled: every
// answer is the same.
func TestPropOrderAdded(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ops, _ := drawGraph(t, false)
		g, h := buildOps(ops), buildOps(rapid.Permutation(ops).Draw(t, "shuffled"))
		gs, gerr := g.Sort()
		hs, herr := h.Sort()
		if !slices.Equal(gs, hs) || !slices.Equal(g.Cycle(), h.Cycle()) || (gerr == nil) != (herr == nil) {
			t.Fatalf("Sort %v / %v, Cycle %v / %v", gs, hs, g.Cycle(), h.Cycle())
		}
		for _, k := range g.Nodes() {
			if !slices.Equal(g.Preds(k), h.Preds(k)) || !slices.Equal(g.Succs(k), h.Succs(k)) ||
				!slices.Equal(g.Descendants(k), h.Descendants(k)) {
				t.Fatalf("%d's neighbours differ", k)
			}
		}
	})
}

func TestPropNeighbours(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ops, m := drawGraph(t, false)
		g := buildOps(ops)
		if !slices.Equal(g.Nodes(), m.sorted()) || g.Len() != len(m.nodes) {
			t.Fatalf("Nodes = %v, want %v", g.Nodes(), m.sorted())
		}
		for k := -1; k <= 12; k++ {
			if g.Has(k) != m.nodes[k] {
				t.Fatalf("Has(%d) = %v", k, g.Has(k))
			}
			if !m.nodes[k] {
				if g.Preds(k) != nil || g.Succs(k) != nil || g.Descendants(k) != nil {
					t.Fatalf("unknown %d has neighbours", k)
				}
				continue
			}
			var succs []int
			for _, j := range m.sorted() {
				if m.edges[[2]int{k, j}] {
					succs = append(succs, j)
				}
			}
			desc := slices.Sorted(maps.Keys(m.reach(k, map[int]bool{})))
			if !slices.Equal(g.Preds(k), m.preds(k)) || !slices.Equal(g.Succs(k), succs) ||
				!slices.Equal(g.Descendants(k), desc) {
				t.Fatalf("%d: Preds %v Succs %v Descendants %v; want %v %v %v",
					k, g.Preds(k), g.Succs(k), g.Descendants(k), m.preds(k), succs, desc)
			}
		}
	})
}

// TestPropReady replays an acyclic graph: nodes are taken, and finished in a
// random order; Take returns exactly the nodes the model says are ready,
// every node is finished once, after all its predecessors, and Done refuses
// the calls it must refuse without changing anything.
func TestPropReady(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ops, m := drawGraph(t, true)
		g := buildOps(ops)
		r, err := g.Ready()
		if err != nil {
			t.Fatalf("Ready: %v", err)
		}
		g.AddEdge(100, 101) // a later change is not seen
		s := replay{t: t, m: m, r: r, taken: map[int]bool{}, done: map[int]bool{}}
		for len(s.done) < len(m.nodes) {
			if len(s.running) == 0 || rapid.Bool().Draw(t, "take now") {
				s.take()
			}
			s.tryWrongDone()
			s.finishOne()
		}
		if r.Remaining() != 0 || r.Take() != nil {
			t.Fatalf("all done, yet Remaining %d", r.Remaining())
		}
	})
}

type replay struct {
	t           *rapid.T
	m           model
	r           *Ready[int]
	taken, done map[int]bool
	running     []int // taken, not done
}

func (s *replay) take() {
	var want []int
	for _, k := range s.m.sorted() {
		if !s.taken[k] && s.m.allIn(s.m.preds(k), s.done) {
			want = append(want, k)
		}
	}
	got := s.r.Take()
	if !slices.Equal(got, want) {
		s.t.Fatalf("Take = %v, want %v (done %v)", got, want, s.done)
	}
	for _, k := range got {
		s.taken[k] = true
	}
	s.running = append(s.running, got...)
	if len(s.running) == 0 {
		s.t.Fatalf("stuck: nothing running, nothing ready, %d nodes left", s.r.Remaining())
	}
}

func (s *replay) finishOne() {
	i := rapid.IntRange(0, len(s.running)-1).Draw(s.t, "finish")
	k := s.running[i]
	s.running = slices.Delete(s.running, i, i+1)
	if !s.m.allIn(s.m.preds(k), s.done) {
		s.t.Fatalf("%d taken before its predecessors %v were done", k, s.m.preds(k))
	}
	if err := s.r.Done(k); err != nil {
		s.t.Fatalf("Done(%d): %v", k, err)
	}
	s.done[k] = true
	if s.r.Remaining() != len(s.m.nodes)-len(s.done) {
		s.t.Fatalf("Remaining %d, %d done of %d", s.r.Remaining(), len(s.done), len(s.m.nodes))
	}
}

// tryWrongDone calls Done with a key it must refuse, if it draws one.
func (s *replay) tryWrongDone() {
	k := rapid.IntRange(-1, 12).Draw(s.t, "wrong done")
	var want error
	switch {
	case !s.m.nodes[k]:
		want = ErrUnknownNode
	case !s.taken[k]:
		want = ErrNotTaken
	case s.done[k]:
		want = ErrAlreadyDone
	default:
		return // a right call: finishOne makes those
	}
	before := s.r.Remaining()
	if err := s.r.Done(k); !errors.Is(err, want) || s.r.Remaining() != before {
		s.t.Fatalf("Done(%d) = %v, want %v", k, err, want)
	}
}

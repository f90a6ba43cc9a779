package graph

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// build returns the graph a spec describes: space-separated edges "a>b" and
// lone nodes "a", added in that order.
func build(spec string) *DAG[string] {
	g := New[string]()
	for _, f := range strings.Fields(spec) {
		if from, to, ok := strings.Cut(f, ">"); ok {
			g.AddEdge(from, to)
		} else {
			g.AddNode(f)
		}
	}
	return g
}

// list turns "a b c" into [a b c], and "" into an empty, non-nil slice.
func list(s string) []string {
	return append([]string{}, strings.Fields(s)...)
}

const (
	diamond      = "a>b a>c b>d c>d"
	disconnected = "x>y a>b m"
	cycle3       = "a>b b>c c>a"
	cycleTail    = "z>a a>b b>c c>b d" // z and a lead into the cycle b c b
)

func TestEmpty(t *testing.T) {
	for name, g := range map[string]*DAG[string]{"New": New[string](), "zero": {}} {
		if g.Len() != 0 || len(g.Nodes()) != 0 || g.Has("a") {
			t.Errorf("%s: Len %d, Nodes %v, Has(a) %v", name, g.Len(), g.Nodes(), g.Has("a"))
		}
		if g.Preds("a") != nil || g.Succs("a") != nil || g.Descendants("a") != nil || g.Cycle() != nil {
			t.Errorf("%s: an unknown key has neighbours or a cycle", name)
		}
		if order, err := g.Sort(); len(order) != 0 || err != nil {
			t.Errorf("%s: Sort = %v, %v", name, order, err)
		}
		r, err := g.Ready()
		if err != nil || r.Take() != nil || r.Remaining() != 0 {
			t.Fatalf("%s: Ready: %v", name, err)
		}
		if err := r.Done("a"); !errors.Is(err, ErrUnknownNode) {
			t.Errorf("%s: Done(a) = %v, want ErrUnknownNode", name, err)
		}
	}
}

func TestZeroDAGGrows(t *testing.T) {
	var g DAG[int]
	g.AddEdge(2, 1)
	g.AddNode(3)
	if !slices.Equal(g.Nodes(), []int{1, 2, 3}) || !slices.Equal(g.Succs(2), []int{1}) {
		t.Fatalf("Nodes %v, Succs(2) %v", g.Nodes(), g.Succs(2))
	}
}

func TestNodes(t *testing.T) {
	cases := []struct{ spec, nodes string }{
		{"a", "a"},
		{"a a a", "a"},     // AddNode is idempotent
		{"c b a", "a b c"}, // sorted, whatever the order added
		{"b>a", "a b"},     // AddEdge adds its nodes
		{"a a>b b", "a b"}, // and finds those that exist
		{"a>a", "a"},       // a self edge is one node
		{disconnected, "a b m x y"},
		{"10 9 100", "10 100 9"}, // strings compare as strings
		{cycleTail, "a b c d z"},
		{"a>b a>b a>b", "a b"}, // duplicate edges
		{"b>c a>c b>d a>d", "a b c d"},
	}
	for _, c := range cases {
		g := build(c.spec)
		want := list(c.nodes)
		if !slices.Equal(g.Nodes(), want) || g.Len() != len(want) {
			t.Errorf("%q: Nodes %v, Len %d, want %v", c.spec, g.Nodes(), g.Len(), want)
		}
		for _, k := range want {
			if !g.Has(k) {
				t.Errorf("%q: Has(%s) = false", c.spec, k)
			}
		}
		if g.Has("nope") {
			t.Errorf("%q: Has(nope) = true", c.spec)
		}
	}
}

func TestPredsSuccs(t *testing.T) {
	cases := []struct{ spec, key, preds, succs string }{
		{diamond, "a", "", "b c"},
		{diamond, "b", "a", "d"},
		{diamond, "d", "b c", ""},
		{"d>a c>a b>a", "a", "b c d", ""}, // sorted, not in the order added
		{"a>d a>c a>b", "a", "", "b c d"},
		{"a>b a>b a>b", "a", "", "b"}, // duplicates count once
		{"a>b a>b a>b", "b", "a", ""},
		{"a>a", "a", "a", "a"}, // a self edge
		{"a>a a>b", "a", "a", "a b"},
		{disconnected, "m", "", ""},
		{cycle3, "a", "c", "b"},
	}
	for _, c := range cases {
		g := build(c.spec)
		if got := g.Preds(c.key); got == nil || !slices.Equal(got, list(c.preds)) {
			t.Errorf("%q: Preds(%s) = %#v, want %v", c.spec, c.key, got, list(c.preds))
		}
		if got := g.Succs(c.key); got == nil || !slices.Equal(got, list(c.succs)) {
			t.Errorf("%q: Succs(%s) = %#v, want %v", c.spec, c.key, got, list(c.succs))
		}
		if g.Preds("nope") != nil || g.Succs("nope") != nil {
			t.Errorf("%q: an unknown key has neighbours", c.spec)
		}
	}
}

func TestDescendants(t *testing.T) {
	cases := []struct{ spec, key, want string }{
		{diamond, "a", "b c d"}, // d, reached twice, counts once
		{diamond, "b", "d"},
		{diamond, "d", ""},
		{"a>b b>c c>d", "a", "b c d"},
		{"a>b b>c c>d", "c", "d"},
		{disconnected, "a", "b"}, // not the other part
		{disconnected, "m", ""},
		{"a>a", "a", "a"}, // k itself when on a cycle
		{cycle3, "b", "a b c"},
		{cycleTail, "z", "a b c"}, // z is not on the cycle
		{cycleTail, "b", "b c"},
		{"a>b a>b", "a", "b"},
	}
	for _, c := range cases {
		g := build(c.spec)
		if got := g.Descendants(c.key); got == nil || !slices.Equal(got, list(c.want)) {
			t.Errorf("%q: Descendants(%s) = %#v, want %v", c.spec, c.key, got, list(c.want))
		}
		if g.Descendants("nope") != nil {
			t.Errorf("%q: Descendants(nope) != nil", c.spec)
		}
	}
}

// sortCases are graphs with their topological order, or the cycle Sort,
// Cycle and Ready name.
var sortCases = []struct{ spec, order, cycle string }{
	{spec: "a", order: "a"},
	{spec: "b>a", order: "b a"},
	{spec: "b>a c", order: "b a c"}, // the smallest ready key first, not the smallest key
	{spec: "c b>a", order: "b a c"}, // whatever the order added
	{spec: diamond, order: "a b c d"},
	{spec: "a>d a>b b>c d>e c>e", order: "a b c d e"},
	{spec: "d>c c>b b>a", order: "d c b a"},
	{spec: disconnected, order: "a b m x y"},
	{spec: "a>b a>b a>b", order: "a b"}, // duplicates
	{spec: "a>a", cycle: "a a"},         // a self edge
	{spec: "b a>b b>b", cycle: "b b"},
	{spec: cycle3, cycle: "a b c a"},
	{spec: "c>a b>c a>b", cycle: "a b c a"},     // whatever the order added
	{spec: "a>c c>b b>c", cycle: "b c b"},       // met at c, told from b
	{spec: cycleTail, cycle: "b c b"},           // a tail into the cycle
	{spec: "c>d d>c a>b b>a", cycle: "a b a"},   // two cycles: the first in key order
	{spec: "a>b b>a a>c c>a", cycle: "a b a"},   // two cycles through a: its smallest successor's
	{spec: "x>y y>z z>x a>b", cycle: "x y z x"}, // an acyclic part besides
}

func TestSort(t *testing.T) {
	for _, c := range sortCases {
		g := build(c.spec)
		order, err := g.Sort()
		if c.cycle == "" {
			if err != nil || !slices.Equal(order, list(c.order)) {
				t.Errorf("%q: Sort = %v, %v; want %v", c.spec, order, err, list(c.order))
			}
			continue
		}
		var ce *CycleError[string]
		if !errors.As(err, &ce) || !slices.Equal(ce.Cycle, list(c.cycle)) || order != nil {
			t.Errorf("%q: Sort = %v, %v; want the cycle %v", c.spec, order, err, list(c.cycle))
		}
	}
}

func TestCycle(t *testing.T) {
	for _, c := range sortCases {
		got := build(c.spec).Cycle()
		if c.cycle == "" && got != nil || c.cycle != "" && !slices.Equal(got, list(c.cycle)) {
			t.Errorf("%q: Cycle = %v, want %q", c.spec, got, c.cycle)
		}
	}
}

func TestCycleError(t *testing.T) {
	err := error(&CycleError[string]{Cycle: []string{"a", "b", "c", "a"}})
	if got := err.Error(); got != "cycle: a -> b -> c -> a" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&CycleError[int]{Cycle: []int{7, 7}}).Error(); got != "cycle: 7 -> 7" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(err, ErrCycle) {
		t.Error("a CycleError is not ErrCycle")
	}
	_, err = build("b>a a>b").Sort()
	if err == nil || err.Error() != "cycle: a -> b -> a" {
		t.Errorf("Sort: %v", err)
	}
}

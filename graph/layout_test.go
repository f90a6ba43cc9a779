package graph

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

func TestStar(t *testing.T) {
	got := Star("me", []string{"d", "b", "me", "c", "a", "b"}, 100)
	want := map[string]Point{
		"me": {0, 0},
		"a":  {0, -100}, // the first at the top
		"b":  {100, 0},  // then clockwise
		"c":  {0, 100},
		"d":  {-100, 0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Star = %v, want %v", got, want)
	}
	if got := Star("me", nil, 100); !reflect.DeepEqual(got, map[string]Point{"me": {}}) {
		t.Errorf("Star without peers = %v", got)
	}
}

func TestStarOnCircle(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		peers := rapid.SliceOf(rapid.StringMatching(`[a-f]{1,3}`)).Draw(t, "peers")
		pos := Star("self", peers, 50)
		seen := map[Point]string{}
		for k, p := range pos {
			if k == "self" {
				continue
			}
			if r := math.Hypot(p.X, p.Y); math.Abs(r-50) > 0.02 {
				t.Fatalf("%s at %v: radius %v", k, p, r)
			}
			if other, dup := seen[p]; dup {
				t.Fatalf("%s and %s both at %v", k, other, p)
			}
			seen[p] = k
		}
		if !reflect.DeepEqual(pos, Star("self", reverse(peers), 50)) {
			t.Fatal("the layout depends on the order of the peers")
		}
	})
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestLayers(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"", "[]"},
		{diamond, "[[a] [b c] [d]]"},
		{disconnected, "[[a m x] [b y]]"},
		{"a>b b>c a>c", "[[a] [b] [c]]"}, // longest path: c under b
		// wordcount: split fans out to count, reduce gathers.
		{"split>count count>reduce", "[[split] [count] [reduce]]"},
		// z's child sits under z, right of a's, although its key is smaller.
		{"a>y z>b", "[[a z] [y b]]"},
	} {
		got, err := build(tc.spec).Layers()
		if err != nil || fmt.Sprint(got) != tc.want && !(tc.want == "[]" && got == nil) {
			t.Errorf("Layers(%q) = %v, %v; want %s", tc.spec, got, err, tc.want)
		}
	}
	if _, err := build(cycle3).Layers(); !errors.Is(err, ErrCycle) {
		t.Errorf("Layers of a cycle: %v, want ErrCycle", err)
	}
}

// Every edge goes down at least one layer; every node is in one layer.
func TestLayersEdgesGoDown(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := New[int]()
		n := rapid.IntRange(1, 12).Draw(t, "n")
		for i := range n {
			g.AddNode(i)
			for j := range i {
				if rapid.Bool().Draw(t, fmt.Sprint(j, ">", i)) {
					g.AddEdge(j, i)
				}
			}
		}
		layers, err := g.Layers()
		if err != nil {
			t.Fatal(err)
		}
		at := map[int]int{}
		for i, l := range layers {
			for _, k := range l {
				if _, dup := at[k]; dup {
					t.Fatalf("%d in two layers", k)
				}
				at[k] = i
			}
		}
		if len(at) != n {
			t.Fatalf("%d nodes placed, want %d", len(at), n)
		}
		for k := range n {
			for _, s := range g.Succs(k) {
				if at[s] <= at[k] {
					t.Fatalf("edge %d>%d goes from layer %d to %d", k, s, at[k], at[s])
				}
			}
		}
	})
}

func TestGrid(t *testing.T) {
	got := Grid([][]string{{"a"}, {"b", "c"}}, 100, 60)
	want := map[string]Point{"a": {0, 0}, "b": {-50, 60}, "c": {50, 60}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Grid = %v, want %v", got, want)
	}
}

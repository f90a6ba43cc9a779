package graph

import (
	"cmp"
	"math"
	"slices"
)

// Point is a position in a drawing; Y grows downwards, as in SVG.
type Point struct{ X, Y float64 }

// Star lays out a peer graph as the dashboard draws it: centre at (0, 0)
// and the others, sorted and without duplicates or centre, evenly on a
// circle of the given radius, the first at the top, going clockwise. The
// edges of such a graph are the centre's to each other node.
func Star[K cmp.Ordered](centre K, others []K, radius float64) map[K]Point {
	ring := slices.Clone(others)
	slices.Sort(ring)
	ring = slices.Compact(ring)
	ring = slices.DeleteFunc(ring, func(k K) bool { return k == centre })
	out := make(map[K]Point, len(ring)+1)
	out[centre] = Point{}
	for i, k := range ring {
		a := 2 * math.Pi * float64(i) / float64(len(ring))
		out[k] = Point{X: round(radius * math.Sin(a)), Y: round(-radius * math.Cos(a))}
	}
	return out
}

// round keeps two decimals, so a drawing does not change with the last
// bits of a sine.
func round(v float64) float64 { return math.Round(v*100) / 100 }

// Layers returns g's nodes by layer, for drawing a DAG top to bottom: a
// node's layer is the length of the longest path to it from a node
// without predecessors (layer 0), so every edge goes down. Layer 0 is
// sorted; a later layer is ordered by the mean position of each node's
// predecessors in the layer above (fewer crossings), then by key. If g
// has a cycle, Layers returns Sort's *CycleError.
func (g *DAG[K]) Layers() ([][]K, error) {
	order, err := g.Sort()
	if err != nil {
		return nil, err
	}
	depth := make(map[K]int, len(order))
	var layers [][]K
	for _, k := range order { // predecessors first: their depth is known
		d := 0
		for _, p := range g.Preds(k) {
			d = max(d, depth[p]+1)
		}
		depth[k] = d
		if d == len(layers) {
			layers = append(layers, nil)
		}
		layers[d] = append(layers[d], k)
	}
	pos := make(map[K]float64, len(order))
	for i, layer := range layers {
		if i == 0 {
			slices.Sort(layer)
		} else {
			bary := make(map[K]float64, len(layer))
			for _, k := range layer {
				bary[k] = g.meanPos(k, pos)
			}
			slices.SortFunc(layer, func(a, b K) int {
				return cmp.Or(cmp.Compare(bary[a], bary[b]), cmp.Compare(a, b))
			})
		}
		for j, k := range layer {
			pos[k] = float64(j)
		}
	}
	return layers, nil
}

// meanPos is the mean of the positions (in their layers) of k's
// predecessors that have one.
func (g *DAG[K]) meanPos(k K, pos map[K]float64) float64 {
	sum, n := 0.0, 0
	for _, p := range g.Preds(k) {
		if v, ok := pos[p]; ok {
			sum += v
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// Grid places layers top to bottom, dy apart, each centred on x = 0 with
// its nodes dx apart: the positions to draw what Layers returned.
func Grid[K comparable](layers [][]K, dx, dy float64) map[K]Point {
	out := make(map[K]Point)
	for i, layer := range layers {
		left := -dx * float64(len(layer)-1) / 2
		for j, k := range layer {
			out[k] = Point{X: left + dx*float64(j), Y: dy * float64(i)}
		}
	}
	return out
}

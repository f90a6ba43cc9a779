package graph

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// Benchmarks of what the flow engine does with a flow's graph: sort it, build
// a Ready, and Take and Done every node.

// fanGraph is a flow that splits into 1,000 instances and reduces them:
// split -> count/0000 ... count/0999 -> reduce.
func fanGraph() *DAG[string] {
	g := New[string]()
	for i := range 1000 {
		k := fmt.Sprintf("count/%04d", i)
		g.AddEdge("split", k)
		g.AddEdge(k, "reduce")
	}
	return g
}

// randomGraph has 10,000 nodes, each with 0 to 6 edges from earlier nodes
// (about 30,000 edges), its keys shuffled so that the key order is not a
// topological order. The seed is fixed.
func randomGraph() *DAG[string] {
	const n = 10000
	rng := rand.New(rand.NewPCG(1, 15))
	keys := make([]string, n)
	for i, p := range rng.Perm(n) {
		keys[i] = fmt.Sprintf("step-%05d", p)
	}
	g := New[string]()
	for i, k := range keys {
		g.AddNode(k)
		for range rng.IntN(7) {
			if i > 0 {
				g.AddEdge(keys[rng.IntN(i)], k)
			}
		}
	}
	return g
}

var benchGraphs = []struct {
	name  string
	build func() *DAG[string]
}{
	{"fan-1000", fanGraph},
	{"random-10000", randomGraph},
}

func BenchmarkSort(b *testing.B) {
	for _, c := range benchGraphs {
		g := c.build()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.Sort(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReady builds a Ready only.
func BenchmarkReady(b *testing.B) {
	for _, c := range benchGraphs {
		g := c.build()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.Ready(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTakeDone runs a whole flow through a Ready built beforehand (not
// timed): Take, then Done each node taken, until none remains. ns/node is
// what one step of a flow costs.
func BenchmarkTakeDone(b *testing.B) {
	for _, c := range benchGraphs {
		g := c.build()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				r, err := g.Ready()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for r.Remaining() > 0 {
					for _, k := range r.Take() {
						if err := r.Done(k); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*g.Len()), "ns/node")
		})
	}
}

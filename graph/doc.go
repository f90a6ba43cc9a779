// Package graph holds directed graphs of ordered keys: first the workflow
// DAGs of the flow engine (an edge from -> to means step from must finish
// before step to starts), and the layouts the dashboard draws: a flow's
// DAG in layers (Layers, Grid) and the peer graph as a star (Star).
//
// It is pure: no I/O, no goroutines, no clock, and it imports nothing of the
// rest of DMS.
//
// A DAG is built with AddNode and AddEdge, which accept anything, cycles
// included (a self edge is a cycle); Sort, Cycle and Ready are where a cycle
// is reported, as a *CycleError that names one.
//
// # Invariants
//
//   - Every order is deterministic and depends only on the nodes and edges,
//     never on the order they were added in: Nodes, Preds, Succs and
//     Descendants are sorted; Sort puts, among the nodes whose predecessors
//     are all placed, the smallest key first; Cycle searches from the nodes
//     in key order and follows successors in key order, and returns the
//     cycle it finds starting at its smallest key.
//   - Ready is a snapshot: changing the DAG afterwards does not change it.
//     Take returns, sorted, exactly the nodes whose predecessors are all
//     done and that were not taken yet, and marks them taken; Done(k)
//     accepts a node only once, and only after it was taken. So a caller
//     that takes, runs and finishes nodes in any order runs every node
//     exactly once, each after all of its predecessors finished.
//   - Take and Done cost O(number of nodes returned) and O(degree of the
//     node) (plus sorting what Take returns); building a Ready or a Sort
//     costs O(V log V + E).
//   - Layouts are deterministic too: the same graph gives the same
//     positions, whatever the order its nodes or peers came in.
//
// # What a caller must do
//
// A DAG is not safe for concurrent use while it changes; concurrent reads
// are safe. A Ready is not safe for concurrent use: one owner (the flow
// engine's loop) calls Take and Done. Floating-point keys must not be NaN.
package graph

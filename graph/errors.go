package graph

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrCycle is what every *CycleError unwraps to, for callers that match
	// with errors.Is and do not know the key type.
	ErrCycle = errors.New("graph: cycle")
	// ErrUnknownNode means Ready.Done was given a key that is not in the graph.
	ErrUnknownNode = errors.New("graph: unknown node")
	// ErrNotTaken means Ready.Done was given a node that Take has not returned yet.
	ErrNotTaken = errors.New("graph: node not taken")
	// ErrAlreadyDone means Ready.Done was given the same node twice.
	ErrAlreadyDone = errors.New("graph: node already done")
)

// CycleError says a graph that must be acyclic is not, and names one of its
// cycles as a path whose first and last elements are equal: [a b c a].
type CycleError[K cmp.Ordered] struct{ Cycle []K }

// Error reads "cycle: a -> b -> c -> a".
func (e *CycleError[K]) Error() string {
	var b strings.Builder
	b.WriteString("cycle: ")
	for i, k := range e.Cycle {
		if i > 0 {
			b.WriteString(" -> ")
		}
		b.WriteString(fmt.Sprint(k))
	}
	return b.String()
}

// Unwrap returns ErrCycle.
func (e *CycleError[K]) Unwrap() error { return ErrCycle }

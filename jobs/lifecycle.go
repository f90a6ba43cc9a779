package jobs

import (
	"fmt"
	"slices"

	"github.com/opendms/dms/types"
)

// exits lists, for each non-terminal allocation state, the states it may
// move to. Terminal states have no entry: nothing leaves them.
var exits = map[types.AllocationState][]types.AllocationState{
	types.AllocLocked:  {types.AllocRunning, types.AllocFailed, types.AllocCancelled},
	types.AllocRunning: {types.AllocCompleted, types.AllocFailed, types.AllocCancelled},
}

// Transition reports whether an allocation may move from one state to
// another: locked -> running -> completed | failed | cancelled, and
// locked -> failed | cancelled. Any other change is ErrBadTransition.
func Transition(from, to types.AllocationState) error {
	if slices.Contains(exits[from], to) {
		return nil
	}
	if from.Terminal() {
		return fmt.Errorf("%w: %s is terminal, cannot move to %s", ErrBadTransition, from, to)
	}
	return fmt.Errorf("%w: %q -> %q", ErrBadTransition, from, to)
}

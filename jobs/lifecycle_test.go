package jobs

import (
	"errors"
	"testing"

	"github.com/opendms/dms/types"
)

func TestTransition(t *testing.T) {
	const (
		locked    = types.AllocLocked
		running   = types.AllocRunning
		completed = types.AllocCompleted
		failed    = types.AllocFailed
		cancelled = types.AllocCancelled
		unknown   = types.AllocationState("paused")
	)
	allowed := map[[2]types.AllocationState]bool{
		{locked, running}: true, {locked, failed}: true, {locked, cancelled}: true,
		{running, completed}: true, {running, failed}: true, {running, cancelled}: true,
	}
	states := []types.AllocationState{locked, running, completed, failed, cancelled, unknown, ""}
	for _, from := range states {
		for _, to := range states {
			err := Transition(from, to)
			if allowed[[2]types.AllocationState{from, to}] {
				if err != nil {
					t.Errorf("%q -> %q: %v", from, to, err)
				}
				continue
			}
			if !errors.Is(err, ErrBadTransition) {
				t.Errorf("%q -> %q: err = %v, want ErrBadTransition", from, to, err)
			}
		}
	}
}

func TestTerminalStatesHaveNoExits(t *testing.T) {
	for _, s := range []types.AllocationState{types.AllocCompleted, types.AllocFailed, types.AllocCancelled} {
		if !s.Terminal() || len(exits[s]) != 0 {
			t.Errorf("%s: terminal %v, exits %v", s, s.Terminal(), exits[s])
		}
	}
}

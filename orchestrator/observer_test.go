package orchestrator

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opendms/dms/types"
)

// recordingObserver keeps what it is told, as "placed N" and "ended N
// outcome" lines.
type recordingObserver struct {
	mu   sync.Mutex
	seen []string
}

func (r *recordingObserver) Placed(a Attempt) {
	r.add("placed", a.Number, "")
	if a.PlacedAt.Before(a.StartedAt) {
		r.add("placed before started", a.Number, "")
	}
}

func (r *recordingObserver) AttemptEnded(a Attempt) { r.add("ended", a.Number, string(a.Outcome)) }

func (r *recordingObserver) add(what string, n int, outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, strings.TrimSpace(fmt.Sprintf("%s %d %s", what, n, outcome)))
}

func (r *recordingObserver) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// TestObserverToldOncePerMoment: a job that completes is told placed and
// ended once each; a job no node can take is told its one attempt ended,
// never placed.
func TestObserverToldOncePerMoment(t *testing.T) {
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 1, mode: complete})
	obs := &recordingObserver{}
	o := startOrchestratorWith(t, net, nil, func(c *Config) { c.Observer = obs })
	if _, seen := submitAndWatch(t, o, spec(64<<20, 0)); seen[len(seen)-1].State != types.JobCompleted {
		t.Fatalf("job: %+v", seen[len(seen)-1])
	}
	if got, want := obs.lines(), []string{"placed 1", "ended 1 completed"}; !slices.Equal(got, want) {
		t.Fatalf("observer told %q, want %q", got, want)
	}
	if _, seen := submitAndWatch(t, o, spec(900<<40, 0)); seen[len(seen)-1].State != types.JobFailed {
		t.Fatalf("job: %+v", seen[len(seen)-1])
	}
	if got, want := obs.lines()[2:], []string{"ended 1 failed"}; !slices.Equal(got, want) {
		t.Fatalf("observer told %q for an unplaceable job, want %q", got, want)
	}
	counts := o.Count()
	if counts[types.JobCompleted] != 1 || counts[types.JobFailed] != 1 {
		t.Fatalf("Count() = %v, want one completed and one failed", counts)
	}
}

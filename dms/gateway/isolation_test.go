package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

// isolated is alice with a function, an endpoint, a tag and a finished
// task, and bob, who must see none of it.
type isolated struct {
	*rig
	bob  Service
	task string
}

func newIsolated(t *testing.T) isolated {
	r := newRig(t)
	bob, _ := r.account(t, "bob")
	r.deploy(t, r.alice, Deploy{Name: "secret", Tags: map[string]string{"team": "a"}})
	if _, err := r.alice.CreateEndpoint(t.Context(), EndpointSpec{Name: "alices", Function: "secret", Tags: map[string]string{"team": "a"}}); err != nil {
		t.Fatal(err)
	}
	res, err := r.alice.Invoke(t.Context(), "secret", Call{})
	if err != nil {
		t.Fatal(err)
	}
	return isolated{rig: r, bob: bob, task: res.Task}
}

// sameAsMissing checks that call(name) fails with ErrNotFound and reads
// exactly as call(missing), for a name that does not exist.
func sameAsMissing(t *testing.T, what, name, missing string, call func(string) error) {
	t.Helper()
	err, want := call(name), call(missing)
	if !errors.Is(err, api.ErrNotFound) || !errors.Is(want, api.ErrNotFound) {
		t.Errorf("%s: %v (missing: %v), want ErrNotFound", what, err, want)
		return
	}
	if got := strings.ReplaceAll(err.Error(), name, missing); got != want.Error() {
		t.Errorf("%s: %q, but a missing one gives %q", what, err, want)
	}
}

func TestIsolationFunctions(t *testing.T) {
	s := newIsolated(t)
	ctx := t.Context()
	if fns, err := s.bob.ListFunctions(ctx, Query{}); err != nil || len(fns) != 0 {
		t.Errorf("bob lists %+v %v", fns, err)
	}
	for name, call := range map[string]func(string) error{
		"GetFunction": func(n string) error { _, err := s.bob.GetFunction(ctx, n); return err },
		"Revisions":   func(n string) error { _, err := s.bob.Revisions(ctx, n); return err },
		"SetDefault":  func(n string) error { _, err := s.bob.SetDefault(ctx, n, 1); return err },
		"SetTags":     func(n string) error { _, err := s.bob.SetTags(ctx, n, map[string]string{"x": "y"}); return err },
		"Delete":      func(n string) error { return s.bob.DeleteFunction(ctx, n) },
	} {
		sameAsMissing(t, name, "secret", "nothing", call)
	}
	if fn, err := s.alice.GetFunction(ctx, "secret"); err != nil || fn.Tags["x"] != "" || fn.DefaultRevision != 1 {
		t.Errorf("alice's function was touched: %+v %v", fn, err)
	}
}

func TestIsolationRevisions(t *testing.T) {
	s := newIsolated(t)
	r := s.deploy(t, s.bob, Deploy{Name: "secret"})
	if r.Number != 1 {
		t.Errorf("bob's function of the same name starts at revision %d", r.Number)
	}
	if revs, _ := s.alice.Revisions(t.Context(), "secret"); len(revs) != 1 {
		t.Errorf("alice has %d revisions after bob's deploy", len(revs))
	}
}

func TestIsolationEndpoints(t *testing.T) {
	s := newIsolated(t)
	ctx := t.Context()
	if eps, err := s.bob.ListEndpoints(ctx, Query{}); err != nil || len(eps) != 0 {
		t.Errorf("bob lists %+v %v", eps, err)
	}
	for name, call := range map[string]func(string) error{
		"GetEndpoint": func(n string) error { _, err := s.bob.GetEndpoint(ctx, n); return err },
		"UpdateEndpoint": func(n string) error {
			_, err := s.bob.UpdateEndpoint(ctx, EndpointSpec{Name: n, Function: "x"})
			return err
		},
		"DeleteEndpoint": func(n string) error { return s.bob.DeleteEndpoint(ctx, n) },
	} {
		sameAsMissing(t, name, "alices", "nothing", call)
	}
	// Bob cannot point an endpoint at alice's function either.
	s.deploy(t, s.bob, Deploy{Name: "mine"})
	_, err := s.bob.CreateEndpoint(ctx, EndpointSpec{Name: "bobs", Function: "secret"})
	if !errors.Is(err, jobs.ErrInvalidSpec) || !strings.Contains(err.Error(), "no function") {
		t.Errorf("bob's endpoint of alice's function: %v", err)
	}
	if _, err := s.alice.GetEndpoint(ctx, "alices"); err != nil {
		t.Errorf("alice's endpoint: %v", err)
	}
}

func TestIsolationTags(t *testing.T) {
	s := newIsolated(t)
	tags, err := s.bob.ListTags(t.Context())
	if err != nil || len(tags) != 0 {
		t.Errorf("bob's tags: %+v %v", tags, err)
	}
	if tags, _ := s.alice.ListTags(t.Context()); len(tags) != 1 || tags[0] != (Tag{Key: "team", Value: "a", Functions: 1, Endpoints: 1}) {
		t.Errorf("alice's tags: %+v", tags)
	}
}

func TestIsolationInvoke(t *testing.T) {
	s := newIsolated(t)
	ctx := t.Context()
	invoke := func(n string) error { _, err := s.bob.Invoke(ctx, n, Call{}); return err }
	sameAsMissing(t, "Invoke", "secret", "nothing", invoke)
	async := func(n string) error { _, err := s.bob.InvokeAsync(ctx, n, Call{}); return err }
	sameAsMissing(t, "InvokeAsync", "secret", "nothing", async)
	if n, calls := s.f.submissions(), len(s.f.callsMade()); n != 1 || calls != 1 {
		t.Errorf("%d instances and %d calls, want alice's one", n, calls)
	}
}

func TestIsolationTasks(t *testing.T) {
	s := newIsolated(t)
	ctx := t.Context()
	if tasks, err := s.bob.ListTasks(ctx, TaskQuery{}); err != nil || len(tasks) != 0 {
		t.Errorf("bob lists %+v %v", tasks, err)
	}
	other := newTaskID(start)
	for name, call := range map[string]func(string) error{
		"GetTask":    func(id string) error { _, err := s.bob.GetTask(ctx, id); return err },
		"TaskResult": func(id string) error { _, err := s.bob.TaskResult(ctx, id); return err },
		"StopTask":   func(id string) error { _, err := s.bob.StopTask(ctx, id); return err },
	} {
		sameAsMissing(t, name, s.task, other, call)
	}
}

func TestIsolationStop(t *testing.T) {
	s := newIsolated(t)
	release := s.f.hold()
	task, err := s.alice.InvokeAsync(context.Background(), "secret", Call{})
	if err != nil {
		t.Fatal(err)
	}
	callsIn(t, s.f, 2)
	if _, err := s.bob.StopTask(t.Context(), task.ID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("bob stops alice's task: %v", err)
	}
	if got, _ := s.alice.GetTask(t.Context(), task.ID); got.State.Terminal() {
		t.Errorf("alice's task after bob's stop: %+v", got)
	}
	release()
	taskIn(t, s.alice, task.ID, TaskCompleted)
}

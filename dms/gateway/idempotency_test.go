package gateway

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/opendms/dms/dms/api"
)

// TestIdempotencyKeyRunsOnce: a call repeated with its key gets the
// first call's answer (or error) without running again.
func TestIdempotencyKeyRunsOnce(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f"})
	r.f.answering(func(c fakeCall) string { return "Status: 201 Created\n\nfirst " + string(c.Req.Stdin) })
	call := func(body string) (Response, error) {
		return r.alice.Invoke(t.Context(), "f", Call{IdempotencyKey: "order-42", Body: strings.NewReader(body)})
	}
	one, err := call("a")
	if err != nil {
		t.Fatal(err)
	}
	r.f.answering(func(fakeCall) string { return "second" })
	two, err := call("b")
	if err != nil || two.Status != 201 || string(two.Body) != "first a" || two.Task != one.Task {
		t.Fatalf("the repeat: %+v %v, want the first answer and task", two, err)
	}
	if n := len(r.f.callsMade()); n != 1 {
		t.Fatalf("%d calls sent, want 1", n)
	}

	r.f.replying(exited(2, "no stock"))
	_, err = r.alice.Invoke(t.Context(), "f", Call{IdempotencyKey: "order-43"})
	_, again := r.alice.Invoke(t.Context(), "f", Call{IdempotencyKey: "order-43"})
	var a, b *CallError
	if !errors.As(err, &a) || !errors.As(again, &b) || a.Task != b.Task || api.StatusOf(again) != 502 || !strings.Contains(again.Error(), "no stock") {
		t.Fatalf("a failed call repeated: %v, then %v", err, again)
	}
	if n := len(r.f.callsMade()); n != 2 {
		t.Fatalf("%d calls sent, want 2", n)
	}
}

// TestIdempotencyKeyRace: calls racing with one key run once; while it
// runs, the others get 409 with Retry-After.
func TestIdempotencyKeyRace(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f"})
	release := r.f.hold()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := r.alice.Invoke(t.Context(), "f", Call{IdempotencyKey: "k"})
			errs <- err
		})
	}
	callsIn(t, r.f, 1)
	var conflicts int
	for range 7 {
		err := <-errs
		var retry api.Retryer
		if !errors.Is(err, api.ErrConflict) || !errors.As(err, &retry) || retry.RetryAfter() <= 0 {
			t.Fatalf("a call racing with its key: %v, want 409 with Retry-After", err)
		}
		conflicts++
	}
	release()
	wg.Wait()
	if err := <-errs; err != nil {
		t.Fatalf("the call that ran: %v", err)
	}
	if n := len(r.f.callsMade()); n != 1 || conflicts != 7 {
		t.Fatalf("%d calls sent, %d conflicts; want 1 and 7", n, conflicts)
	}
	if res, err := r.alice.Invoke(t.Context(), "f", Call{IdempotencyKey: "k"}); err != nil || string(res.Body) != "ok" {
		t.Fatalf("the key after its call: %+v %v", res, err)
	}
}

func TestIdempotencyKeyChecked(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f"})
	for _, key := range []string{strings.Repeat("k", maxIdempotencyKey+1), "a\nb", "tab\there", "é"} {
		if _, err := r.alice.Invoke(t.Context(), "f", Call{IdempotencyKey: key}); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), HeaderIdempotencyKey) {
			t.Errorf("key %q: %v, want 400 naming the header", key, err)
		}
	}
	if _, err := r.alice.InvokeAsync(t.Context(), "f", Call{IdempotencyKey: "a\x7fb"}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("async with a bad key: %v", err)
	}
	if _, err := r.alice.Invoke(t.Context(), "f", Call{IdempotencyKey: strings.Repeat("k", maxIdempotencyKey)}); err != nil {
		t.Errorf("a key of %d bytes: %v", maxIdempotencyKey, err)
	}
	if n := len(r.f.callsMade()); n != 1 {
		t.Errorf("%d calls sent, want the good key's one", n)
	}
}

// TestIdempotencyKeyPerAccount: another account's call with the same key
// runs, and gets its own answer.
func TestIdempotencyKeyPerAccount(t *testing.T) {
	r := newRig(t)
	bob, _ := r.account(t, "bob")
	r.deploy(t, r.alice, Deploy{Name: "f"})
	r.deploy(t, bob, Deploy{Name: "f"})
	r.f.answering(func(c fakeCall) string { return c.Spec.Name })
	a, err := r.alice.Invoke(t.Context(), "f", Call{IdempotencyKey: "same"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bob.Invoke(t.Context(), "f", Call{IdempotencyKey: "same"})
	if err != nil || string(b.Body) != "fn:bob/f@1" || b.Task == a.Task {
		t.Fatalf("bob's call with alice's key: %+v %v", b, err)
	}
	if n := len(r.f.callsMade()); n != 2 {
		t.Fatalf("%d calls sent, want 2", n)
	}
}

// TestIdempotencyKeyAsync: an async call repeated with its key returns
// the first call's task.
func TestIdempotencyKeyAsync(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f"})
	one, err := r.alice.InvokeAsync(t.Context(), "f", Call{IdempotencyKey: "job"})
	if err != nil {
		t.Fatal(err)
	}
	two, err := r.alice.InvokeAsync(t.Context(), "f", Call{IdempotencyKey: "job"})
	if err != nil || two.ID != one.ID {
		t.Fatalf("the repeat: %+v %v, want task %s", two, err, one.ID)
	}
	taskIn(t, r.alice, one.ID, TaskCompleted)
	if res, err := r.alice.Invoke(t.Context(), "f", Call{IdempotencyKey: "job"}); err != nil || res.Task != one.ID || string(res.Body) != "ok" {
		t.Fatalf("a sync call with the async call's key: %+v %v", res, err)
	}
	if n := len(r.f.callsMade()); n != 1 {
		t.Fatalf("%d calls sent, want 1", n)
	}
}

// TestIdempotencyKeyHTTP: the header through the handler; 409 with
// Retry-After while the first call runs.
func TestIdempotencyKeyHTTP(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	g.deploy(Deploy{Name: "f"})
	release := g.r.f.hold()
	done := make(chan reply, 1)
	go func() {
		done <- g.as(key, "POST", "/v1/functions/f/invoke", "x", HeaderIdempotencyKey, "h-1")
	}()
	callsIn(t, g.r.f, 1)
	r := g.as(key, "POST", "/v1/functions/f/invoke", "x", HeaderIdempotencyKey, "h-1")
	r.wantError(t, 409, HeaderIdempotencyKey)
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("409 without Retry-After: %v", r.header)
	}
	release()
	first := <-done
	again := g.as(key, "POST", "/v1/functions/f/invoke", "x", HeaderIdempotencyKey, "h-1").want(t, 200)
	if string(again.body) != "ok" || again.header.Get(HeaderTask) != first.header.Get(HeaderTask) {
		t.Fatalf("the repeat: %q task %s, want the first's %s", again.body, again.header.Get(HeaderTask), first.header.Get(HeaderTask))
	}
	g.as(key, "POST", "/v1/functions/f/invoke", "x", HeaderIdempotencyKey, strings.Repeat("k", 256)).wantError(t, 400, HeaderIdempotencyKey)
	if n := len(g.r.f.callsMade()); n != 1 {
		t.Fatalf("%d calls sent, want 1", n)
	}
}

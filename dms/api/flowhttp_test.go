package api

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opendms/dms/jobs"
)

// TestFlowEndpoints: a flow goes through submit, get, list, events and
// cancel over HTTP, and the Client reads each answer back.
func TestFlowEndpoints(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	f, err := jobs.ParseFlow([]byte("name: f\nsteps:\n  a: {module: " + moduleCID(t) + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.client.SubmitFlow(ctx, f)
	if err != nil || got.ID == "" || got.State != FlowRunning {
		t.Fatalf("submit: %+v %v", got, err)
	}
	if again, err := h.client.GetFlow(ctx, got.ID); err != nil || again.ID != got.ID || again.Spec.Steps[0].Name != "a" {
		t.Fatalf("get: %+v %v", again, err)
	}
	if list, err := h.client.ListFlows(ctx); err != nil || len(list) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	events, err := h.client.WatchFlow(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ev := range events {
		if ev.Flow == nil || ev.Flow.ID != got.ID {
			t.Fatalf("event %+v", ev)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d events, want the fake's one", n)
	}
	if err := h.client.CancelFlow(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.client.CancelFlow(ctx, got.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("cancel of an ended flow: %v, want ErrConflict", err)
	}
	if _, err := h.client.GetFlow(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unknown flow: %v", err)
	}
}

// TestSubmitFlowBadInput: what a hostile or careless client sends gets a
// 400 naming the problem, and nothing is submitted.
func TestSubmitFlowBadInput(t *testing.T) {
	h := newHarness(t)
	m := moduleCID(t)
	h.refuses(t, "/v1/flows", []badBody{
		{"not json", `{"name":`, "flow spec"},
		{"empty", ``, "empty document"},
		{"cycle", `{"name":"f","steps":{"a":{"module":"` + m + `","needs":["b"]},"b":{"module":"` + m + `","needs":["a"]}}}`, "cycle: a -> b -> a"},
		{"local module", `{"name":"f","steps":{"a":{"module":"./x.wasm"}}}`, "POST /v1/blobs"},
		{"local dir", `{"name":"f","steps":{"a":{"module":"` + m + `","for_each":{"dir":"./parts"}}}}`, "is local"},
		{"unknown field", `{"name":"f","steps":{"a":{"module":"` + m + `","memroy":1}}}`, `unknown field "memroy"`},
		{"bad ref", `{"name":"f","steps":{"a":{"module":"` + m + `","inputs":{"x":"../etc/passwd"}}}}`, "is not a reference"},
		{"huge", `{"name":"f","steps":{"a":{"module":"` + m + `","stdin":"` + strings.Repeat("x", jobs.MaxSpecSize) + `"}}}`, "too large"},
	})
	if len(h.svc.flows) != 0 {
		t.Fatalf("%d flows submitted from bad input", len(h.svc.flows))
	}
	// The client turns the problems back into a flow SpecError.
	f, _ := jobs.ParseFlow([]byte("name: f\nsteps:\n  a: {module: ./local.wasm}\n"))
	_, err := h.client.SubmitFlow(context.Background(), f)
	var se *jobs.SpecError
	if !errors.As(err, &se) || se.Doc != "flow spec" || !strings.HasPrefix(err.Error(), "flow spec: steps.a.module") {
		t.Fatalf("client error %v", err)
	}
}

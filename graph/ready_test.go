package graph

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestReady runs scripts against a Ready: "take a b" expects Take to return
// [a b] ("take" alone: nil), "done a" expects Done(a) to succeed, "done a
// !unknown" (or !untaken, !done) to fail so, and "left 3" expects Remaining
// to be 3.
func TestReady(t *testing.T) {
	cases := []struct{ spec, script string }{
		{"", "left 0; take; done a !unknown; left 0"},
		{"a", "left 1; done a !untaken; take a; take; done a; left 0; done a !done; take"},
		{diamond, `take a; take; done b !untaken; done a; left 3; take b c; done c; take;
			done b; take d; done d; left 0; take`},
		{disconnected, "take a m x; done x; take y; done a; done m; take b; done y; done b; left 0"},
		{"a>b a>b a>b", "take a; done a; take b; done b; left 0"}, // a duplicate edge is waited for once
		{"a>c b>c", "take a b; done a; take; done b; take c"},     // fan-in: c waits for both
		{"a>b a>c a>d", "take a; done a; take b c d"},             // fan-out: all at once, sorted
		{"c b>a", "take b c; done c; done b; take a"},             // taken in key order, not the order added
		{"a>b b>c", "take a; done zz !unknown; done b !untaken; done c !untaken; left 3"},
	}
	for _, c := range cases {
		r, err := build(c.spec).Ready()
		if err != nil {
			t.Fatalf("%q: %v", c.spec, err)
		}
		for _, step := range strings.Split(c.script, ";") {
			if msg := runStep(r, strings.Fields(step)); msg != "" {
				t.Errorf("%q: %s: %s", c.spec, strings.TrimSpace(step), msg)
			}
		}
	}
}

func runStep(r *Ready[string], f []string) string {
	switch f[0] {
	case "take":
		got := r.Take()
		if want := f[1:]; !slices.Equal(got, want) || (len(want) == 0) != (got == nil) {
			return "got " + strings.Join(got, " ")
		}
	case "done":
		want := map[string]error{"": nil, "!unknown": ErrUnknownNode, "!untaken": ErrNotTaken, "!done": ErrAlreadyDone}[strings.Join(f[2:], "")]
		if err := r.Done(f[1]); !errors.Is(err, want) || (err == nil) != (want == nil) {
			return "got " + errString(err)
		}
	case "left":
		if got := r.Remaining(); strings.Join(f[1:], "") != strconv.Itoa(got) {
			return "got " + strconv.Itoa(got)
		}
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

func TestReadyCycle(t *testing.T) {
	for _, c := range sortCases {
		r, err := build(c.spec).Ready()
		if c.cycle == "" {
			if err != nil {
				t.Errorf("%q: %v", c.spec, err)
			}
			continue
		}
		var ce *CycleError[string]
		if r != nil || !errors.As(err, &ce) || !slices.Equal(ce.Cycle, list(c.cycle)) {
			t.Errorf("%q: Ready = %v, %v; want the cycle %v", c.spec, r, err, list(c.cycle))
		}
	}
}

// TestReadySnapshot changes the graph under a Ready: it goes on as if nothing
// happened.
func TestReadySnapshot(t *testing.T) {
	g := build("a>b")
	r, err := g.Ready()
	if err != nil {
		t.Fatal(err)
	}
	g.AddEdge("b", "a") // a cycle
	g.AddEdge("0", "a") // a new first node
	g.AddEdge("b", "c")
	for _, step := range []string{"take a", "done 0 !unknown", "done a", "take b", "done b", "take", "left 0"} {
		if msg := runStep(r, strings.Fields(step)); msg != "" {
			t.Errorf("%s: %s", step, msg)
		}
	}
}

func TestReadyDoneSaysWhich(t *testing.T) {
	r, _ := build("a>b").Ready()
	if err := r.Done("b"); err == nil || err.Error() != "graph: node not taken: b" {
		t.Errorf("Done(b) = %v", err)
	}
}

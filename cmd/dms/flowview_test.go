package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
)

// cursorUp is the ANSI sequence that moves the cursor up n lines.
var cursorUp = regexp.MustCompile(`\x1b\[\d+A`)

var flowT0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// inst is instance i of a step; state "cached" is a completed instance
// served from the cache.
func inst(i int, key, state string) api.FlowInstance {
	in := api.FlowInstance{Index: i, Key: key, State: state}
	if state == "cached" {
		in.State, in.Cached = api.FlowCompleted, true
	}
	return in
}

// failedInst is instance i, failed for reason.
func failedInst(i int, key, reason string) api.FlowInstance {
	return api.FlowInstance{Index: i, Key: key, State: api.FlowFailed, Reason: reason}
}

// fanInsts are n instances named part-I.txt: the first done completed
// (cached of them from the cache), the next running running, the rest
// pending.
func fanInsts(n, done, cached, running int) []api.FlowInstance {
	out := make([]api.FlowInstance, n)
	for i := range out {
		state := api.FlowPending
		switch {
		case i < cached:
			state = "cached"
		case i < done:
			state = api.FlowCompleted
		case i < done+running:
			state = api.FlowRunning
		}
		out[i] = inst(i, fmt.Sprintf("part-%d.txt", i), state)
	}
	return out
}

// flowStep is a step of a flow in flowState, its counts and state summed
// up from its instances as the daemon does.
func flowStep(name string, fan bool, flowState string, needs []string, ins ...api.FlowInstance) api.FlowStep {
	st := api.FlowStep{Name: name, Needs: needs, Kind: "job", FanOut: fan, Instances: ins}
	for _, in := range ins {
		st.Counts.Add(in)
	}
	st.State = st.Counts.State(flowState)
	return st
}

func testFlow(state, reason string, steps ...api.FlowStep) api.Flow {
	return api.Flow{ID: "f-1", Name: "wordcount", State: state, Reason: reason, Steps: steps,
		CreatedAt: flowT0, UpdatedAt: flowT0.Add(2500 * time.Millisecond)}
}

func TestTreeLines(t *testing.T) {
	run, done, failed := api.FlowRunning, api.FlowCompleted, api.FlowFailed
	cases := []struct {
		name string
		flow api.Flow
		want string
	}{
		{"a fan-out running, its source cached",
			testFlow(run, "",
				flowStep("split", false, run, nil, inst(0, "", "cached")),
				flowStep("count", true, run, []string{"split"}, fanInsts(100, 37, 12, 3)...),
				flowStep("reduce", false, run, []string{"count"})),
			`
flow f-1 (wordcount): running, 1.5s
  split         completed (cached)
  └─ count      running             37/100 done, 12 cached, 3 running [#######.............]
     └─ reduce  pending`},
		{"a small fan-out has no bar",
			testFlow(run, "",
				flowStep("count", true, run, nil, fanInsts(4, 1, 0, 2)...)),
			`
flow f-1 (wordcount): running, 1.5s
  count  running  1/4 done, 2 running`},
		{"completed, every instance cached",
			testFlow(done, "",
				flowStep("split", false, done, nil, inst(0, "", "cached")),
				flowStep("count", true, done, []string{"split"}, fanInsts(30, 30, 30, 0)...),
				flowStep("reduce", false, done, []string{"count"}, inst(0, "", done))),
			`
flow f-1 (wordcount): completed, 2.5s
  split         completed (cached)
  └─ count      completed           30/30 done, 30 cached [####################]
     └─ reduce  completed`},
		{"a step cached from another node's shared cache",
			testFlow(done, "",
				flowStep("split", false, done, nil, api.FlowInstance{State: done, Cached: true, CachedFrom: "12D3KooWQmpR9tZ5v6GkD3xYz"}),
				flowStep("reduce", false, done, []string{"split"}, inst(0, "", done))),
			`
flow f-1 (wordcount): completed, 2.5s
  split      completed (cached from …6GkD3xYz)
  └─ reduce  completed`},
		{"failed with its reason, the rest skipped",
			testFlow(failed, "step count [part-1.txt]: job j-2 exited with code 1: boom",
				flowStep("split", false, failed, nil, inst(0, "", done)),
				flowStep("count", true, failed, []string{"split"},
					inst(0, "part-0.txt", done), failedInst(1, "part-1.txt", "job j-2 exited with code 1: boom"),
					api.FlowInstance{Index: 2, Key: "part-2.txt", State: api.FlowCancelled, Reason: "cancelled"}),
				flowStep("reduce", false, failed, []string{"count"})),
			`
flow f-1 (wordcount): failed, 2.5s
  split         completed
  └─ count      failed     1/3 done, 1 failed, 1 cancelled: [part-1.txt] job j-2 exited with code 1: boom
     └─ reduce  skipped
reason: step count [part-1.txt]: job j-2 exited with code 1: boom`},
		{"a single step failed",
			testFlow(failed, "step b: no node bid",
				flowStep("a", false, failed, nil, inst(0, "", done)),
				flowStep("b", false, failed, []string{"a"}, failedInst(0, "", "no node bid"))),
			`
flow f-1 (wordcount): failed, 2.5s
  a     completed
  └─ b  failed     no node bid
reason: step b: no node bid`},
		{"branches and a step that needs several",
			testFlow(run, "",
				flowStep("a", false, run, nil, inst(0, "", done)),
				flowStep("b", false, run, []string{"a"}, inst(0, "", run)),
				flowStep("c", false, run, []string{"a"}, inst(0, "", done)),
				flowStep("e", false, run, []string{"c"}),
				flowStep("d", false, run, []string{"b", "c"}),
				flowStep("f", false, run, []string{"d"})),
			`
flow f-1 (wordcount): running, 1.5s
  a               completed
  ├─ b            running
  └─ c            completed
     └─ e         pending
  d (needs b, c)  pending
  └─ f            pending`},
		// As the daemon sums a step up: a fan-out with instances done when
		// the flow was cancelled is cancelled; one whose instances were all
		// stopped is skipped, as one that never started.
		{"cancelled",
			testFlow(api.FlowCancelled, "cancelled by its submitter",
				flowStep("a", true, api.FlowCancelled, nil, inst(0, "x", api.FlowCompleted),
					api.FlowInstance{Index: 1, Key: "y", State: api.FlowCancelled, Reason: "cancelled by its submitter"}),
				flowStep("b", false, api.FlowCancelled, []string{"a"})),
			`
flow f-1 (wordcount): cancelled, 2.5s
  a     cancelled  1/2 done, 1 cancelled: [y] cancelled by its submitter
  └─ b  skipped
reason: cancelled by its submitter`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := strings.Join(flowLines(c.flow, flowT0.Add(1500*time.Millisecond)), "\n")
			if want := strings.TrimPrefix(c.want, "\n"); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestStepLine(t *testing.T) {
	run := api.FlowRunning
	cases := []struct {
		step api.FlowStep
		want string
	}{
		{flowStep("split", false, run, nil, inst(0, "", "cached")), "split: completed (cached)"},
		{flowStep("split", false, run, nil, inst(0, "", run)), "split: running"},
		{flowStep("count", true, run, nil, fanInsts(4, 2, 1, 2)...), "count: running, 2/4 done, 1 cached, 2 running"},
		{flowStep("count", true, run, nil, inst(0, "a", api.FlowCompleted), failedInst(1, "b", "boom")), "count: failed, 1/2 done, 1 failed: [b] boom"},
		{flowStep("reduce", false, api.FlowFailed, nil), "reduce: skipped"},
	}
	for _, c := range cases {
		if got := stepLine(c.step); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

// TestFlowViewCounts applies instance events one by one and checks each
// step's counts and state against the daemon's sum over its instances.
func TestFlowViewCounts(t *testing.T) {
	run := api.FlowRunning
	start := testFlow(run, "",
		flowStep("split", false, run, nil),
		flowStep("count", true, run, []string{"split"}))
	var v flowView
	v.apply(api.FlowEvent{Flow: &start, State: run})
	events := []api.FlowEvent{
		{Step: "split", Instance: &api.FlowInstance{Index: 0, State: api.FlowPending}},
		{Step: "split", Instance: &api.FlowInstance{Index: 0, State: api.FlowRunning, JobID: "j-1"}},
		{Step: "split", Instance: &api.FlowInstance{Index: 0, State: api.FlowCompleted, JobID: "j-1"}},
		{Step: "count", Instance: &api.FlowInstance{Index: 1, Key: "b", State: api.FlowPending}}, // out of order: 0 is made pending
		{Step: "count", Instance: &api.FlowInstance{Index: 0, Key: "a", State: api.FlowPending}},
		{Step: "count", Instance: &api.FlowInstance{Index: 0, Key: "a", State: api.FlowCompleted, Cached: true}},
		{Step: "count", Instance: &api.FlowInstance{Index: 1, Key: "b", State: api.FlowRunning}},
		{Step: "nope", Instance: &api.FlowInstance{Index: 0, State: api.FlowRunning}}, // an unknown step: ignored
	}
	for i, ev := range events {
		v.apply(ev)
		for _, st := range v.flow.Steps {
			want := flowStep(st.Name, st.FanOut, v.flow.State, st.Needs, st.Instances...)
			if st.Counts != want.Counts || st.State != want.State {
				t.Fatalf("after event %d: %s counts %+v state %s, want %+v %s", i, st.Name, st.Counts, st.State, want.Counts, want.State)
			}
		}
	}
	if got := stepLine(v.flow.Steps[1]); got != "count: running, 1/2 done, 1 cached, 1 running" {
		t.Fatalf("count: %q", got)
	}
	v.apply(api.FlowEvent{State: api.FlowCancelled, Reason: "cancelled by its submitter", At: flowT0.Add(time.Minute)})
	if v.flow.State != api.FlowCancelled || v.flow.Steps[1].State != api.FlowCancelled || !v.flow.UpdatedAt.Equal(flowT0.Add(time.Minute)) {
		t.Fatalf("after the flow's end: %+v", v.flow)
	}
	again := testFlow(api.FlowCompleted, "")
	v.apply(api.FlowEvent{Flow: &again})
	if len(v.flow.Steps) != 0 || v.flow.State != api.FlowCompleted {
		t.Fatalf("a flow in an event replaces the view: %+v", v.flow)
	}
}

// TestLiveTreeRedraws draws a tree on a pretend terminal: in place (the
// cursor goes up over the last drawing), at most once per interval however
// many events come, clipped to the width.
func TestLiveTreeRedraws(t *testing.T) {
	var buf bytes.Buffer
	lt := newLive(&buf, 40, (*flowView).lines)
	run := api.FlowRunning
	f := testFlow(run, "",
		flowStep("split", false, run, nil, inst(0, "", run)),
		flowStep("count-the-words-of-every-part", true, run, []string{"split"}))
	var v flowView
	v.apply(api.FlowEvent{Flow: &f})
	lt.changed(&v, flowT0)
	first := buf.String()
	if cursorUp.MatchString(first) {
		t.Fatalf("the first drawing moves the cursor up: %q", first)
	}
	if n := strings.Count(first, "\n"); n != 3 || !strings.Contains(first, "split                             ru…\n") {
		t.Fatalf("first drawing: %d lines: %q", n, first)
	}
	for _, line := range strings.Split(strings.TrimSuffix(first, "\n"), "\n") {
		if text := strings.TrimPrefix(line, "\r\x1b[2K"); len([]rune(text)) > 39 {
			t.Errorf("line not clipped to the width: %q", text)
		}
	}
	buf.Reset()
	v.apply(api.FlowEvent{Step: "split", Instance: &api.FlowInstance{State: api.FlowCompleted}})
	lt.changed(&v, flowT0.Add(10*time.Millisecond))
	lt.tick(&v, flowT0.Add(50*time.Millisecond))
	if buf.Len() != 0 {
		t.Fatalf("redrawn within %s of the last drawing: %q", redrawEvery, buf.String())
	}
	lt.tick(&v, flowT0.Add(redrawEvery))
	if got := buf.String(); !strings.HasPrefix(got, "\x1b[3A\r\x1b[2K") || !strings.Contains(got, "split                             co…\n") {
		t.Fatalf("redraw: %q", got)
	}
	buf.Reset()
	lt.tick(&v, flowT0.Add(redrawEvery+500*time.Millisecond))
	if buf.Len() != 0 {
		t.Fatalf("redrawn with nothing new within a second: %q", buf.String())
	}
	lt.tick(&v, flowT0.Add(redrawEvery+time.Second))
	if !strings.Contains(buf.String(), "running, 1.1s") {
		t.Fatalf("the running time is not redrawn every second: %q", buf.String())
	}
	buf.Reset()
	short := testFlow(api.FlowCompleted, "", flowStep("split", false, api.FlowCompleted, nil, inst(0, "", api.FlowCompleted)))
	v.apply(api.FlowEvent{Flow: &short})
	lt.changed(&v, flowT0.Add(5*time.Second))
	if got := buf.String(); !strings.HasPrefix(got, "\x1b[3A") || !strings.HasSuffix(got, "\x1b[J") {
		t.Fatalf("a shorter drawing does not clear the rest of the last: %q", got)
	}
}

func TestProgressBar(t *testing.T) {
	for _, c := range []struct {
		done, total int
		want        string
	}{{0, 100, "[..........]"}, {37, 100, "[###.......]"}, {99, 100, "[#########.]"}, {100, 100, "[##########]"}, {5, 0, "[..........]"}} {
		if got := progressBar(c.done, c.total, 10); got != c.want {
			t.Errorf("%d/%d: %s, want %s", c.done, c.total, got, c.want)
		}
	}
}

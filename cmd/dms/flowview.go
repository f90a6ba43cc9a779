package main

import (
	"bytes"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/opendms/dms/dms/api"
)

// flowView follows a flow through the events of its watches: the first
// event of a watch carries the whole flow, later ones an instance's new
// state or the flow's. It keeps each step's counts and state as the
// daemon would report them. Pure: no I/O, no clock.
type flowView struct {
	flow  api.Flow
	steps map[string]int // step name -> index in flow.Steps
}

// apply folds one event into the view.
func (v *flowView) apply(ev api.FlowEvent) {
	switch {
	case ev.Flow != nil:
		v.flow = *ev.Flow
		v.steps = make(map[string]int, len(v.flow.Steps))
		for i, st := range v.flow.Steps {
			v.steps[st.Name] = i
		}
		return
	case ev.Instance != nil:
		v.setInstance(ev.Step, *ev.Instance)
	}
	if ev.State != "" && ev.State != v.flow.State {
		v.flow.State, v.flow.Reason = ev.State, ev.Reason
		for i := range v.flow.Steps {
			st := &v.flow.Steps[i]
			st.State = st.Counts.State(v.flow.State)
		}
	}
	if ev.At.After(v.flow.UpdatedAt) {
		v.flow.UpdatedAt = ev.At
	}
}

// started reports whether the view took the first event of a watch.
func (v *flowView) started() bool { return v.flow.ID != "" }

// ended reports whether the flow ended.
func (v *flowView) ended() bool { return api.FlowEnded(v.flow.State) }

// lines is the flow's picture (flowLines); none before the first event.
func (v *flowView) lines(now time.Time) []string {
	if !v.started() {
		return nil
	}
	return flowLines(v.flow, now)
}

// setInstance records an instance's new state and updates its step's
// counts by the difference, so that a fan-out of n instances costs O(1)
// per event, not O(n).
func (v *flowView) setInstance(step string, in api.FlowInstance) {
	i, ok := v.steps[step]
	if !ok || in.Index < 0 {
		return
	}
	st := &v.flow.Steps[i]
	for len(st.Instances) <= in.Index {
		p := api.FlowInstance{Index: len(st.Instances), State: api.FlowPending}
		st.Instances = append(st.Instances, p)
		st.Counts.Add(p)
	}
	var old api.FlowCounts
	old.Add(st.Instances[in.Index])
	st.Counts = subCounts(st.Counts, old)
	st.Counts.Add(in)
	st.Instances[in.Index] = in
	st.State = st.Counts.State(v.flow.State)
}

func subCounts(a, b api.FlowCounts) api.FlowCounts {
	return api.FlowCounts{
		Total: a.Total - b.Total, Pending: a.Pending - b.Pending, Running: a.Running - b.Running,
		Completed: a.Completed - b.Completed, Cached: a.Cached - b.Cached, Failed: a.Failed - b.Failed,
		Cancelled: a.Cancelled - b.Cancelled,
	}
}

// barMin is the number of instances above which a fan-out gets a
// progress bar; barWidth is the bar's width in characters.
const (
	barMin   = 20
	barWidth = 20
)

// stepStatus describes a step: its state ("completed (cached)" for a
// single instance served from the cache, "completed (cached from …3xYz)"
// when another node's shared cache gave it), for a fan-out its counts
// (and a progress bar over barMin instances), and why it failed or was
// cancelled.
func stepStatus(st api.FlowStep) (state, counts, why string) {
	state = st.State
	c := st.Counts
	if !st.FanOut && st.State == api.FlowCompleted && c.Cached > 0 {
		from := ""
		if len(st.Instances) == 1 && st.Instances[0].CachedFrom != "" {
			from = " from " + shortID(st.Instances[0].CachedFrom)
		}
		state += " (cached" + from + ")"
	}
	if st.FanOut && c.Total > 0 {
		parts := []string{fmt.Sprintf("%d/%d done", c.Completed, c.Total)}
		for _, n := range []struct {
			n    int
			what string
		}{{c.Cached, "cached"}, {c.Running, "running"}, {c.Failed, "failed"}, {c.Cancelled, "cancelled"}} {
			if n.n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n.n, n.what))
			}
		}
		counts = strings.Join(parts, ", ")
		if c.Total > barMin {
			counts += " " + progressBar(c.Completed, c.Total, barWidth)
		}
	}
	if st.State == api.FlowFailed || st.State == api.FlowCancelled {
		why = stepReason(st)
	}
	return state, counts, why
}

// stepReason is the reason of the step's first failed instance, else of
// its first cancelled one; a fan-out's names the instance.
func stepReason(st api.FlowStep) string {
	for _, want := range []string{api.FlowFailed, api.FlowCancelled} {
		for _, in := range st.Instances {
			if in.State != want || in.Reason == "" {
				continue
			}
			if st.FanOut && in.Key != "" {
				return "[" + in.Key + "] " + in.Reason
			}
			return in.Reason
		}
	}
	return ""
}

// progressBar draws done of total as [#####.....] of width characters.
func progressBar(done, total, width int) string {
	n := 0
	if total > 0 {
		n = min(width, max(0, done*width/total))
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// stepLine is one line about a step, for logs: "count: running, 3/10 done"
// or "reduce: failed: job j-3 exited with code 1".
func stepLine(st api.FlowStep) string {
	state, counts, why := stepStatus(st)
	line := st.Name + ": " + state
	if counts != "" {
		line += ", " + counts
	}
	if why != "" {
		line += ": " + why
	}
	return line
}

// flowHeader is the first line of a flow's tree: its ID, name, state and
// how long it ran (until now while it runs).
func flowHeader(f api.Flow, now time.Time) string {
	return fmt.Sprintf("flow %s (%s): %s", f.ID, f.Name, f.State) + ranFor(f.CreatedAt, f.UpdatedAt, api.FlowEnded(f.State), now)
}

// ranFor is ", " and how long something created at created ran: until
// updated once it ended, until now while it runs; "" when unknown.
func ranFor(created, updated time.Time, ended bool, now time.Time) string {
	end := updated
	if !ended {
		end = now
	}
	if created.IsZero() || end.Before(created) {
		return ""
	}
	return ", " + roundDuration(end.Sub(created)).String()
}

// roundDuration keeps two or three significant figures: 1.234s, 12.3s, 1m2s.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < 10*time.Second:
		return d.Round(10 * time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// treeLines renders a flow's steps as a tree in their (topological)
// order: a step needing one step sits under it; a step needing several
// is a root and names them after its own name, "(needs a, b)". Columns
// are name, state, counts and reason.
func treeLines(f api.Flow) []string {
	children := map[string][]int{}
	known := map[string]bool{}
	for _, st := range f.Steps {
		known[st.Name] = true
	}
	var roots []int
	for i, st := range f.Steps {
		if len(st.Needs) == 1 && known[st.Needs[0]] && st.Needs[0] != st.Name {
			children[st.Needs[0]] = append(children[st.Needs[0]], i)
			continue
		}
		roots = append(roots, i)
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	seen := map[int]bool{}
	var walk func(i int, lead, under string)
	walk = func(i int, lead, under string) {
		if seen[i] { // needs that loop (a malformed flow): draw each step once
			return
		}
		seen[i] = true
		st := f.Steps[i]
		name := st.Name
		if len(st.Needs) > 1 {
			name += " (needs " + strings.Join(st.Needs, ", ") + ")"
		}
		state, counts, why := stepStatus(st)
		switch {
		case why != "" && counts != "":
			counts += ": " + why
		case why != "":
			counts = why
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", lead, name, state, counts)
		kids := children[st.Name]
		for k, child := range kids {
			if k == len(kids)-1 {
				walk(child, under+"└─ ", under+"   ")
			} else {
				walk(child, under+"├─ ", under+"│  ")
			}
		}
	}
	for _, i := range roots {
		walk(i, "", "")
	}
	for i := range f.Steps { // steps on a loop of needs, never reached
		walk(i, "", "")
	}
	_ = tw.Flush()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	if len(f.Steps) == 0 {
		return nil
	}
	return lines
}

// flowLines is the whole picture of a flow: its header, its steps, and
// why it failed.
func flowLines(f api.Flow, now time.Time) []string {
	lines := append([]string{flowHeader(f, now)}, indent(treeLines(f), "  ")...)
	if f.Reason != "" && f.State != api.FlowCompleted {
		lines = append(lines, "reason: "+f.Reason)
	}
	return lines
}

func indent(lines []string, by string) []string {
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return lines
}

// clipLine cuts s to at most width characters (runes), ending with "…"
// when it cut; width 0 leaves s whole.
func clipLine(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

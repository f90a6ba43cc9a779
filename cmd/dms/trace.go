package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/api"
)

func (c *cli) jobTraceCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "trace ID",
		Short: "Show a job's spans on every node it touched, as a tree with timings",
		Long: `Show a job's trace: the spans of this node (the requester) and of every node
the job touched (that bid, declined, locked or ran it), gathered over the
network, as a tree. Each line names the span, the node that recorded it (the
end of its PeerID), when it started after the trace's first span, and how
long it took. Nodes that did not answer are listed at the end; their spans are
missing. docs/observability.md says what each span times.`,
		Args: oneArg("ID"),
		RunE: c.runTrace((*api.Client).JobTrace),
	}
}

func (c *cli) gatewayTraceCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "trace TRACE-ID",
		Short: "Show a traced call's spans on the gateway and the provider that ran it, as a tree with timings",
		Long: `Show a trace of calls through the local daemon's gateway: its spans (the
call, its queue wait, the hop to the instance) and those of each provider the
calls were sent to (its run of the call), gathered over the network, as a tree
like dms job trace's. A call is traced when its caller sends a W3C traceparent
header, or when traces.call_sample picks it; the traceparent header of its
answer names the trace: TRACE-ID is its second field, 32 hex digits.
docs/observability.md says what each span times.`,
		Args: oneArg("TRACE-ID"),
		RunE: c.runTrace((*api.Client).CallTrace),
	}
}

// writeTrace prints a trace as a tree: children under their parent,
// indented, each level in order of start.
func writeTrace(w io.Writer, t api.Trace) error {
	answered := 0
	for _, n := range t.Nodes {
		if n.Error == "" {
			answered++
		}
	}
	what := "trace " + t.TraceID
	if t.Job != "" {
		what = "job " + t.Job + ", " + what
	}
	fmt.Fprintf(w, "%s: %d spans from %d of %d nodes\n", what, len(t.Spans), answered, len(t.Nodes))
	rows := traceRows(t.Spans)
	if err := writeTable(w, []string{"SPAN", "NODE", "START", "DURATION", "NOTE"}, rows); err != nil {
		return err
	}
	for _, n := range t.Nodes {
		switch {
		case n.Error != "":
			fmt.Fprintf(w, "missing: node %s did not answer: %s\n", n.Node, n.Error)
		case n.Truncated:
			fmt.Fprintf(w, "incomplete: node %s keeps more spans of this trace than it sent\n", n.Node)
		}
	}
	return nil
}

// traceRows lays out spans depth first: a span whose parent is not among
// them is a root.
func traceRows(spans []api.Span) [][]string {
	if len(spans) == 0 {
		return nil
	}
	ids := make(map[string]bool, len(spans))
	first := spans[0].Start
	for _, s := range spans {
		ids[s.ID] = true
		if s.Start.Before(first) {
			first = s.Start
		}
	}
	children := make(map[string][]api.Span, len(spans))
	var roots []api.Span
	for _, s := range spans {
		if s.Parent != "" && ids[s.Parent] && s.Parent != s.ID {
			children[s.Parent] = append(children[s.Parent], s)
		} else {
			roots = append(roots, s)
		}
	}
	rows := make([][]string, 0, len(spans))
	seen := make(map[string]bool, len(spans)) // a peer's spans may name each other as parents in a loop
	var walk func(s api.Span, depth int)
	walk = func(s api.Span, depth int) {
		if seen[s.ID] {
			return
		}
		seen[s.ID] = true
		rows = append(rows, []string{strings.Repeat("  ", depth) + s.Name, shortID(s.Node),
			spanTime(s.Start.Sub(first)), spanDuration(s), spanNote(s)})
		for _, c := range children[s.ID] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return rows
}

func spanDuration(s api.Span) string {
	if s.End.IsZero() {
		return "running"
	}
	return spanTime(s.End.Sub(s.Start))
}

// spanTime shows a duration to three significant figures or so: 420µs,
// 12.3ms, 1.23s.
func spanTime(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return roundDuration(d).String()
}

// maxNote bounds the NOTE column.
const maxNote = 60

// spanNote is a span's error, or else its attributes, in short.
func spanNote(s api.Span) string {
	note := ""
	if s.Error != "" {
		note = "error: " + s.Error
	} else {
		parts := make([]string, 0, len(s.Attrs))
		for _, k := range slices.Sorted(maps.Keys(s.Attrs)) {
			v := s.Attrs[k]
			if k == "allocation" || k == "node" || k == "peer" {
				v = shortID(v) // the tree already names the job and the nodes
			}
			parts = append(parts, k+"="+v)
		}
		note = strings.Join(parts, " ")
	}
	note = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, note)
	if r := []rune(note); len(r) > maxNote {
		note = string(r[:maxNote-1]) + "…"
	}
	return note
}

// runTrace runs a trace command: fetch gathers the trace its argument
// names through the daemon, printed as a tree (writeTrace) or as JSON.
func (c *cli) runTrace(fetch func(*api.Client, context.Context, string) (api.Trace, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		svc, err := c.client()
		if err != nil {
			return err
		}
		t, err := fetch(svc, cmd.Context(), args[0])
		if err != nil {
			return err
		}
		return c.print(t, func(w io.Writer) error { return writeTrace(w, t) })
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

// print writes v as indented JSON with --output json, else calls table.
func (c *cli) print(v any, table func(io.Writer) error) error {
	if c.output == "json" {
		return writeJSON(c.stdout, v)
	}
	return table(c.stdout)
}

// printID prints what --detach submitted: its ID, or {"id": ID} with
// --output json.
func (c *cli) printID(id string) error {
	return c.print(map[string]string{"id": id}, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, id)
		return err
	})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeTable writes rows under a header, in aligned columns.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// writeFields writes one object as aligned "key: value" lines; a field with
// several values gets one line per value.
func writeFields(w io.Writer, fields []field) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range fields {
		for i, v := range f.values {
			key := f.key + ":"
			if i > 0 {
				key = ""
			}
			fmt.Fprintf(tw, "%s\t%s\n", key, v)
		}
	}
	return tw.Flush()
}

type field struct {
	key    string
	values []string
}

func kv(key, value string) field { return field{key, []string{value}} }

func jobFields(j api.Job) []field {
	fs := []field{kv("id", j.ID), kv("name", j.Name), kv("state", string(j.State))}
	if j.Reason != "" {
		fs = append(fs, kv("reason", j.Reason))
	}
	fs = append(fs, kv("node", orDash(j.Node)), attemptsField(j.Attempts),
		kv("created", formatTime(j.CreatedAt)), kv("updated", formatTime(j.UpdatedAt)))
	if j.Result != nil {
		fs = append(fs, resultFields(*j.Result)...)
	}
	return fs
}

// attemptsField counts a job's attempts, then gives one line to each: its
// outcome, its node, the budget it was charged to and why it ended.
//
//	attempts:  2
//	           1 failed on …Xk9vT2aB, charged to reschedule: lost node 12D3KooW…: no heartbeat for 1s
//	           2 completed on …Hq3mPzQe (late bid)
func attemptsField(list []api.Attempt) field {
	lines := []string{strconv.Itoa(len(list))}
	for i, a := range list {
		line := fmt.Sprintf("%d %s", i+1, a.State)
		if a.Node != "" {
			line += " on " + shortID(a.Node)
		}
		if a.Late {
			line += " (late bid)"
		}
		if a.Charge != "" {
			line += ", charged to " + a.Charge
		}
		if a.Reason != "" && a.State != string(types.JobCompleted) {
			line += ": " + a.Reason
		}
		lines = append(lines, line)
	}
	return field{"attempts", lines}
}

func resultFields(r types.Result) []field {
	fs := []field{
		kv("exit code", strconv.Itoa(r.ExitCode)),
		kv("duration", formatMillis(r.DurationMillis)),
		kv("stdout", r.Stdout+truncated(r.StdoutTruncated)),
		kv("stderr", r.Stderr+truncated(r.StderrTruncated)),
	}
	if r.Usage != nil {
		fs = append(fs, kv("used", usageLine(*r.Usage)))
	}
	var files []string
	for _, path := range slices.Sorted(maps.Keys(r.Files)) {
		files = append(files, path+"  "+r.Files[path])
	}
	if len(files) > 0 {
		fs = append(fs, field{"files", files})
	}
	return fs
}

// nodeFields describes a running node: identity, addresses, load, capability.
func nodeFields(n api.NodeInfo) []field {
	fs := append(identityFields(n),
		field{"addrs", orNone(n.Addrs)}, kv("gateway", orDash(n.Gateway)),
		kv("registered", n.Registered.String()), kv("available", n.Available.String()),
		kv("running", strconv.Itoa(n.Running)),
		kv("holds", fmt.Sprintf("%d (%s)", n.Holds, n.Held)))
	if n.Idle != nil {
		fs = append(fs, kv("idle only", idleLine(*n.Idle)))
	}
	if c := n.Capability; c != nil {
		fs = append(fs, capabilityFields(*c)...)
	}
	return fs
}

// idleLine describes an idle-only node's host:
//
//	bidding since 2026-12-01 12:00:31: other processes use 3% CPU (at most 25%); units stopped for the owner: 1
//	not bidding since 2026-12-01 12:04:02: host busy: other processes use 63% CPU > 25%; units stopped for the owner: 1
func idleLine(h api.IdleInfo) string {
	line := "bidding since " + formatTime(h.Since) + fmt.Sprintf(": other processes use %.0f%% CPU (at most %.0f%%)", h.Others*100, h.Threshold*100)
	if !h.Idle {
		line = "not bidding since " + formatTime(h.Since) + ": " + h.Reason
	}
	return line + fmt.Sprintf("; units stopped for the owner: %d", h.Stopped)
}

// identityFields names a node.
func identityFields(n api.NodeInfo) []field {
	return []field{kv("uuid", n.ID.UUID), kv("peer id", n.PeerID), kv("did", n.DID), kv("compute", strconv.FormatBool(n.Compute))}
}

func capabilityFields(c types.CapabilityRecord) []field {
	hw := c.Hardware
	return []field{
		kv("hardware", fmt.Sprintf("%d cores %s, memory %s, disk %s, %s/%s", hw.Cores, hw.CPUModel, hw.Memory, hw.Disk, hw.OS, hw.Arch)),
		kv("benchmark", fmt.Sprintf("cpu %.1f (1 core %.1f), memory %.0f MB/s, disk %.0f MB/s",
			c.Benchmark.CPUAll, c.Benchmark.CPUSingle, c.Benchmark.MemoryMBps, c.Benchmark.DiskWriteMBps)),
		kv("offered", c.Offered.String()),
		kv("price", fmt.Sprintf("%s per core-hour", c.Price)),
		kv("executors", orDash(strings.Join(c.Executors, ", "))),
	}
}

func jobRows(list []api.Job) [][]string {
	rows := make([][]string, 0, len(list))
	for _, j := range list {
		rows = append(rows, []string{j.ID, orDash(j.Name), string(j.State), orDash(shortID(j.Node)), formatTime(j.CreatedAt)})
	}
	return rows
}

func peerRows(list []api.Peer) [][]string {
	rows := make([][]string, 0, len(list))
	for _, p := range list {
		latency := "-"
		if p.LatencyMillis > 0 {
			latency = fmt.Sprintf("%.2fms", p.LatencyMillis)
		}
		execs, offered, price, flags := "?", "?", "?", "?"
		if o := p.Offer; o != nil {
			execs, offered, price = orDash(strings.Join(o.Executors, ",")), o.Offered.String(), o.Price.String()
			var fl []string
			if o.Renewable {
				fl = append(fl, "renewable")
			}
			if o.IdleOnly {
				fl = append(fl, "idle-only")
			}
			flags = orDash(strings.Join(fl, ","))
		}
		rows = append(rows, []string{p.ID, latency, execs, offered, price, flags, orDash(strings.Join(p.Addrs, " "))})
	}
	return rows
}

func reputationRows(list []api.PeerReputation) [][]string {
	rows := make([][]string, 0, len(list))
	yes := map[bool]string{true: "yes", false: "no"}
	for _, p := range list {
		var events []string
		for _, ev := range slices.Sorted(maps.Keys(p.Events)) {
			events = append(events, fmt.Sprintf("%s=%d", ev, p.Events[ev]))
		}
		last := "-"
		if p.LastEvent != "" {
			last = p.LastEvent + " " + p.LastAt.Local().Format(time.DateTime)
		}
		trust := "-"
		switch {
		case p.Distrusted:
			trust = "distrusted"
		case p.Trusted:
			trust = "trusted"
		}
		rows = append(rows, []string{p.ID, fmt.Sprintf("%.2f", p.Penalty), yes[p.Poor], yes[p.Unheard],
			strconv.Itoa(p.Agreed), strconv.Itoa(p.Disagreed), trust, last, orDash(strings.Join(events, " "))})
	}
	return rows
}

// shortID abbreviates a PeerID for tables: its last 8 characters.
func shortID(id string) string {
	if len(id) <= 12 {
		return id
	}
	return "…" + id[len(id)-8:]
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func formatMillis(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

// usageLine says what an allocation used, as its node metered it:
//
//	cpu 12ms, wall 15ms, memory peak 2 MiB (limit 64 MiB), output 1.2 KiB
func usageLine(u types.Usage) string {
	line := fmt.Sprintf("cpu %s, wall %s, memory peak %s (limit %s), output %s",
		fineDuration(u.CPU), fineDuration(u.Wall), u.MemoryPeak, u.MemoryLimit, types.Bytes(u.OutputBytes))
	if u.Calls > 0 {
		line += fmt.Sprintf(", %d calls", u.Calls)
	}
	return line
}

// fineDuration is roundDuration, to the microsecond under a millisecond:
// a small run's CPU time is not 0s.
func fineDuration(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return roundDuration(d)
}

func truncated(t bool) string {
	if t {
		return " (truncated)"
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(list []string) []string { return orList(list, "(none)") }

// orList is list, or one line saying what none means.
func orList(list []string, none string) []string {
	if len(list) == 0 {
		return []string{none}
	}
	return list
}

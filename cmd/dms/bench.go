package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/bench"
)

// benchFlags are the flags of `dms bench`.
type benchFlags struct {
	scenario string
	quick    bool
	list     bool
	dir      string
	logLevel string
	cpuprof  string
}

func (c *cli) benchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench --scenario NAME",
		Short: "Run a benchmark scenario on a network it starts on loopback, and print its figures",
		Long: `Run a benchmark scenario: it starts its own network of real nodes on
loopback (in this process, or as daemon processes), measures, stops
everything and prints its figures, as a table or, with --output json, as
one JSON object per line: {"scenario": NAME, "results": {...}}. Times are
in milliseconds. --scenario all runs every scenario in turn. Run it from
the repository: some scenarios read modules from examples/.

Scenarios:
` + scenarioList(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.bench(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.scenario, "scenario", "s", "", "scenario to run, or all")
	fl.BoolVar(&f.quick, "quick", false, "shrink every scenario to seconds: checks that it runs; the figures mean little")
	fl.BoolVar(&f.list, "list", false, "list the scenarios and exit")
	fl.StringVar(&f.dir, "dir", "", "keep the nodes' homes under DIR (default: a temporary directory, removed)")
	fl.StringVar(&f.logLevel, "log-level", "info", "progress on stderr: debug, info, warn or error")
	fl.StringVar(&f.cpuprof, "cpuprofile", "", "write a CPU profile of the whole run (every node of this process) to FILE, for go tool pprof")
	return cmd
}

// scenarioList is one "  name  what" line per scenario.
func scenarioList() string {
	var b strings.Builder
	for _, s := range bench.Scenarios() {
		fmt.Fprintf(&b, "  %-12s %s\n", s.Name, s.What)
	}
	return b.String()
}

func scenarioNames() []string {
	var names []string
	for _, s := range bench.Scenarios() {
		names = append(names, s.Name)
	}
	return names
}

// bench runs the scenarios f names; one that fails is reported on stderr
// and the others still run, and the exit status is then 1.
func (c *cli) bench(ctx context.Context, f benchFlags) (err error) {
	if f.list {
		_, err := io.WriteString(c.stdout, scenarioList())
		return err
	}
	names, err := f.scenarios()
	if err != nil {
		return err
	}
	logger, err := newLogger(c.stderr, f.logLevel, "text")
	if err != nil {
		return err
	}
	if f.cpuprof != "" {
		stop, err := startCPUProfile(f.cpuprof)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stop()) }()
	}
	failed := 0
	for _, name := range names {
		logger.Info("running", "scenario", name, "quick", f.quick)
		res, err := bench.Run(ctx, name, bench.Options{Quick: f.quick, Dir: f.dir, Log: logger.With("scenario", name)})
		if err == nil {
			err = c.printBench(res, len(names) > 1)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "dms: bench %s: %s\n", name, strings.TrimPrefix(err.Error(), "bench: "))
			failed++
		}
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

// startCPUProfile profiles this process into path until stop.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, errors.Join(fmt.Errorf("--cpuprofile: %w", err), f.Close())
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// scenarios are the names --scenario selects, checked.
func (f benchFlags) scenarios() ([]string, error) {
	names := scenarioNames()
	switch {
	case f.scenario == "":
		return nil, fmt.Errorf("no --scenario: give one of %s, or all (`dms bench --list` describes them)", strings.Join(names, ", "))
	case f.scenario == "all":
		return names, nil
	case !slices.Contains(names, f.scenario):
		return nil, fmt.Errorf("--scenario %q: no such scenario: want one of %s, or all", f.scenario, strings.Join(names, ", "))
	}
	return []string{f.scenario}, nil
}

// printBench prints one result: a JSON object on one line, or a table of
// its figures (after a blank line and its name when several are printed).
func (c *cli) printBench(res bench.Result, several bool) error {
	if c.output == "json" {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.stdout, "%s\n", b)
		return err
	}
	if several {
		fmt.Fprintf(c.stdout, "\n%s\n", res.Scenario)
	}
	var rows [][]string
	flatten("", res.Results, &rows)
	return writeTable(c.stdout, []string{"KEY", "VALUE"}, rows)
}

// flatten appends one row per figure: nested maps and lists become keys
// joined by dots (steps.0.p99_ms), in key order.
func flatten(key string, v any, rows *[][]string) {
	join := func(k string) string {
		if key == "" {
			return k
		}
		return key + "." + k
	}
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			flatten(join(k), v[k], rows)
		}
	case map[string]float64:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			flatten(join(k), v[k], rows)
		}
	case []map[string]any:
		for i, m := range v {
			flatten(join(strconv.Itoa(i)), m, rows)
		}
	case float64:
		*rows = append(*rows, []string{key, strconv.FormatFloat(v, 'f', -1, 64)})
	default:
		*rows = append(*rows, []string{key, fmt.Sprint(v)})
	}
}

package bench

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
)

// Options tune a run. Zero values are each scenario's defaults (the sizes
// the issue names and docs/benchmarks.md reports).
type Options struct {
	// Quick shrinks every scenario to seconds, for the test suite: the
	// figures are then meaningless, but every code path runs.
	Quick bool
	// Dir holds the nodes' homes; "" makes a temporary directory, removed
	// at the end.
	Dir string
	// Bin is the dms binary, for scenarios that run daemons as processes;
	// "" means the running executable.
	Bin string
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// Result is one scenario's outcome, as `dms bench --output json` prints it.
type Result struct {
	Scenario string         `json:"scenario"`
	Results  map[string]any `json:"results"`
}

// Scenario is one benchmark: it starts its own network on loopback,
// measures, stops the network, and returns its figures by key.
type Scenario struct {
	Name string
	What string // one line, for `dms bench --help`
	Run  func(ctx context.Context, o Options) (map[string]any, error)
}

// scenarios holds every scenario, in the order `dms bench` lists them.
var scenarios []Scenario

// register adds a scenario; each scenario file calls it from init.
func register(s Scenario) { scenarios = append(scenarios, s) }

// Scenarios lists every scenario by name.
func Scenarios() []Scenario {
	out := slices.Clone(scenarios)
	slices.SortStableFunc(out, func(a, b Scenario) int { return order(a.Name) - order(b.Name) })
	return out
}

// order is a scenario's place in the table; unknown names go last.
func order(name string) int {
	i := slices.Index([]string{"sequential", "burst", "throughput", "scale", "node-loss", "memory", "large-wasm", "placement", "simulate", "disk", "gateway", "flow", "batch"}, name)
	if i < 0 {
		return 1 << 20
	}
	return i
}

// Run runs the named scenario.
func Run(ctx context.Context, name string, o Options) (Result, error) {
	for _, s := range scenarios {
		if s.Name == name {
			if o.Log == nil {
				o.Log = slog.New(slog.DiscardHandler)
			}
			res, err := s.Run(ctx, o)
			return Result{Scenario: name, Results: res}, err
		}
	}
	names := make([]string, 0, len(scenarios))
	for _, s := range Scenarios() {
		names = append(names, s.Name)
	}
	return Result{}, fmt.Errorf("bench: no scenario %q (have %v)", name, names)
}

// Package bench runs the scenarios of `dms bench`: each starts its own
// network of real nodes on loopback (in this process, or as daemon
// processes), measures one thing, stops everything it started, and
// returns its figures as a flat map (docs/benchmarks.md lists the keys and
// targets). StartNetwork starts such a network of real nodes on loopback;
// `dms devstack` uses it too.
//
// Invariants:
//   - A scenario leaves nothing running and, unless Options.Dir is set,
//     nothing on disk.
//   - Figures are measured, never assumed: a scenario that cannot measure
//     something returns an error rather than a zero.
//   - Targets are checked by people reading the figures (and by
//     docs/benchmarks.md), never by tests: tests run every scenario with
//     Options.Quick only to show it works.
package bench

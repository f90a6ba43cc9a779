// Package jobs holds what a job is and how it runs, apart from any network:
// the job spec (YAML or JSON) and its validation, the allocation lifecycle
// state machine, and the Executor interface that runs one task (the Wasm
// executor is in jobs/wasm, the container executor in jobs/docker).
//
// Invariants:
//   - Parse returns a complete, valid Spec or a *SpecError (matching
//     ErrInvalidSpec) listing every problem with its field path and line;
//     it never panics, whatever the input. Unknown fields are errors.
//   - A parsed Spec marshals to JSON that Parse reads back to an equal Spec
//     (FuzzParse checks this); the API sends specs so, with the module
//     replaced by its CID.
//   - Transition is the only judge of allocation state changes: locked ->
//     running -> completed | failed | cancelled, locked -> failed |
//     cancelled; terminal states have no exits. It is pure; the provider's
//     machine (package node) calls it on every change of an allocation.
//   - An Executor reports a program's non-zero exit in Output.ExitCode, and
//     an error only when the program could not run to an exit.
//
// Nothing here starts goroutines, reads the clock or does I/O, except
// ParseFile, which reads the spec file.
package jobs

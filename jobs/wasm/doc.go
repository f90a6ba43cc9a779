// Package wasm is the executor that runs WebAssembly programs (WASI preview 1,
// "wasi_snapshot_preview1") with wazero, inside the limits of a job.
//
// Invariants:
//   - A module is compiled once per Executor, keyed by its ModuleID, however
//     many jobs run it and however many start at once; the cache holds at
//     most Config.MaxCachedModules modules, least recently used first out,
//     and never drops a module a run is using.
//   - A run never grows its linear memory past Input.Memory: growth past it
//     fails inside the guest, and a guest that then exits non-zero or traps
//     is reported as jobs.ErrMemoryLimit. The host is unaffected.
//   - A run ends at its timeout even in a busy loop or a sleep
//     (jobs.ErrTimeout, with the output so far).
//   - Stdout and stderr are kept up to Input.OutputLimit bytes each; the
//     guest may write more, which is counted and dropped.
//   - Every run is metered (Output.Usage): the CPU time of the OS thread
//     its guest ran on, locked to it for the run (wazero runs a guest on
//     the calling goroutine and starts no thread for it), which excludes
//     the time it slept; its linear memory at the end (a linear memory
//     only grows); its wall time; and its stdout and stderr as kept. A
//     warm instance sums its calls, and its memory peak is the most its
//     calls held at once. wazero's own per-instance structures (tables,
//     globals, the call stack) are not counted. CPU time is read on
//     Linux only; elsewhere it is 0.
//   - The guest sees only WASI: argv ("job" then Input.Args), Input.Env,
//     stdin, real clocks and randomness, and no files except Input.InputDir
//     read-only at /inputs and Input.OutputDir at /outputs. It has no network,
//     cannot create symbolic links, and cannot reach outside those directories.
//
// An Executor is safe for concurrent use; Close it to free compiled code.
package wasm

// Package docker is the executor that runs a job's program as a container on
// the node's Docker Engine, through the Engine API, inside the job's limits.
//
// An image is named (Input.Image, an image present on the node) or shipped
// as the bytes of a `docker save` archive (Input.Module, its CID in
// Input.ModuleID).
//
// Invariants:
//   - Images are never pulled. A named image missing on the node is
//     ErrNoImage.
//   - An archive is read once per CID and loaded only when the engine lacks
//     its image; concurrent runs of one archive load it once. It loads
//     without its tags (and is run by the ID its config hashes to), so an
//     archive can never replace an image another job names; it is tagged
//     dms-archive:<config digest> instead. An archive whose config does not
//     hash to its name is jobs.ErrBadModule.
//   - A container runs with the job's limits: memory (Input.Memory, no swap;
//     a container killed at it is jobs.ErrMemoryLimit), CPU (Input.CPU, at
//     most the engine's CPUs), processes and threads (Input.Pids), no
//     network unless Input.Network, a read-only root unless
//     Input.WritableRoot (/tmp is then a tmpfs charged to the memory limit),
//     every capability dropped, no-new-privileges, and no logging driver. It
//     runs as the user its image names.
//   - Input.InputDir, when set, is copied into /inputs before the start
//     (regular files and directories only; /inputs is writable by the
//     container, but the copy is its own). With Input.OutputDir set,
//     /outputs is writable by any user, and after an exit its regular files
//     and directories are copied into Input.OutputDir, bounded by
//     Config.MaxOutputFiles and Config.MaxOutputBytes, and never outside it.
//     Both are anonymous volumes of a never-started holder container, as an
//     engine copies files into a read-only container only inside its
//     volumes.
//   - Stdout and stderr are kept up to Input.OutputLimit bytes each; the
//     program may write more, which is counted and dropped, and runs on.
//   - A run ends at Input.Timeout (jobs.ErrTimeout) or when its context
//     ends: its container is killed, and the output so far comes back. The
//     timeout counts from the start of the container: loading an image and
//     creating the container do not count.
//   - A run is metered (Output.Usage) from the engine's stats of its
//     container, sampled while it runs (meter.go): CPU time and memory
//     peak as of the last sample, every Config.MeterEvery once the first
//     few (from 25ms) are taken, as the engine keeps no stats of a
//     container that has exited; wall time from the start to the exit;
//     stdout and stderr as kept. A warm instance is metered as a whole
//     (Instance.Usage): its container's CPU time and memory, its answered
//     calls' output and count, its wall time since Warm.
//   - Nothing is left behind: every container a run creates, and its
//     volumes, is removed when the run returns, however it ended. A
//     container is labelled dms.managed=true, dms.job=Input.Job,
//     dms.node=Config.Node, so RemoveLeftovers finds what a crashed node
//     left.
//
// # Warm containers: the call contract
//
// Warm (jobs.Warmer) starts a program as one long-running container that
// serves many calls, as OpenWhisk's actionloop proxy does. The container
// has Run's limits, sandbox and labels (dms.role=warm), its stdin open and
// no TTY, and DMS_WARM=1 in its environment (over Input.Env), so a program
// can tell a warm start from a run of one call. Input.InputDir,
// Input.OutputDir and Input.Stdin are ignored, as the wasm executor does:
// each call brings its stdin, and nothing else goes in or comes out. The
// executor attaches to the container's stdin, stdout and stderr:
//
//   - For each call it writes one line of JSON on stdin:
//     {"id":N,"env":{...},"stdin":"<base64>"}. N is the call's id, unique
//     on the instance and never 0; env is the call's environment over
//     Input.Env (the whole environment of the call, as CGI names it:
//     REQUEST_METHOD, PATH_INFO, QUERY_STRING, ...); stdin is the call's
//     stdin, the request's body. Base64 is the standard alphabet with
//     padding (RFC 4648 §4).
//   - The program answers each call with one line of JSON on stdout:
//     {"id":N,"stdout":"<base64>","stderr":"<base64>","exit_code":0}.
//     Missing fields are empty, unknown ones ignored. Answers may come in
//     any order: a program may serve several calls at once (how many at
//     once is the node's business). It writes each line in one piece and
//     nothing else on stdout; its own stderr is for its log.
//   - A call's stdout and stderr are each kept up to Input.OutputLimit
//     (Output.StdoutTruncated, StderrTruncated say what was cut). An answer
//     line over 3*OutputLimit+64 KiB breaks the instance: the executor never
//     holds more of a line.
//   - The last 64 KiB of the container's own stderr are kept and quoted in
//     the errors of a broken instance.
//
// A call runs under CallInput.Timeout, or Input.Timeout when that is
// shorter or not given. What breaks an instance fails the calls in flight
// and every later one with jobs.ErrInstanceBroken, wrapping why: the call
// over its timeout returns jobs.ErrTimeout (the program may be stuck, so
// the instance is broken and its container killed); the container's exit is jobs.ErrTrap
// with its exit code, or jobs.ErrMemoryLimit when it was killed at its
// memory limit; a line that is not an answer (or answers a call never
// made), a line too long, or the attach breaking are jobs.ErrTrap. A
// broken instance is of no more use: close it, and warm another. A call
// whose context ends returns at once and leaves the instance whole; the
// program's late answer is dropped.
//
// Instance.Close removes the container (calls in flight fail with
// ErrInstanceClosed) and is idempotent. Executor.Close closes every
// instance (calls in flight fail with ErrClosed).
//
// An Executor is safe for concurrent use. Close it to end every run and
// every warm instance.
package docker

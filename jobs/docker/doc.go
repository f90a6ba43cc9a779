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
//   - Nothing is left behind: every container a run creates, and its
//     volumes, is removed when the run returns, however it ended. A
//     container is labelled dms.managed=true, dms.job=Input.Job,
//     dms.node=Config.Node, so RemoveLeftovers finds what a crashed node
//     left.
//
// An Executor is safe for concurrent use. Close it to end every run.
package docker

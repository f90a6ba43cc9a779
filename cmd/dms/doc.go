// Command dms is the DMS binary: the daemon (dms run), the client commands
// that talk to a running daemon over its local API (dms job, dms flow,
// dms batch, dms node, dms peers), node setup (dms init) and an in-process test
// network (dms devstack).
//
// Every command takes --home (default $DMS_HOME, else ~/.dms) and
// --output table|json. Client commands find the daemon through
// <home>/api.json, which `dms run` writes.
//
// Exit status: 0 on success; 1 on any error (printed as "dms: <message>" on
// stderr), for `dms job run` when the job failed, was cancelled or its
// program exited with a non-zero code, for `dms flow run` (and
// `dms flow status --watch`) when the flow failed or was cancelled, and for
// `dms batch run` (and `dms batch status --watch`, `dms batch results
// --out`) when a unit failed or the batch was cancelled.
package main

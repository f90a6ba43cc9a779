// Package gateway serves functions over HTTP: accounts and their API keys,
// functions with immutable revisions and a default one, endpoints with
// policies (from which addresses, when, how many calls a day), tags, and
// one task per call. A call runs on a warm instance of its function's
// revision (pool.go: a queue per revision and a scaler that auctions
// instances as warm jobs); callers reach the gateway only, never a provider.
//
// The parts:
//   - Gateway (gateway.go) keeps all state in the node's badger store,
//     under gw/ (store.go lays out the keys), and runs calls through a
//     Runner (the job half of the node's api.Service). It is the Go API:
//     Admin for the operator, As(account) for one account's Service,
//     CallEndpoint for published endpoints. accounts.go, keys.go,
//     functions.go, endpoints.go (quota.go), tags.go and query.go, tasks.go
//     hold one resource each; calls.go runs a call through a Caller,
//     and outcome.go decides, in one function (classifyCall), what an
//     instance's reply answers. credits.go keeps the accounts' credits in
//     a ledger.Book; invoices.go builds an account's invoice for a month
//     from it (invoice_render.go: as CSV and HTML).
//   - The HTTP handler (handler.go) is thin: it authenticates (an API key,
//     or the node's admin token and an account name on the local API),
//     turns requests into Calls and errors into statuses through dms/api's
//     one table.
//   - Client (client.go) speaks to that handler and is itself a Service.
//   - Pure parts live below: package policy decides endpoint policies,
//     package cgi is the call contract (WAGI: CGI variables in, stdout out).
//   - A group of gateways (member.go; package group is its raft): every
//     change of the records the group shares is a command of one state
//     machine (replica.go), applied at once by a gateway alone and in log
//     order by every member. Each function's queue is led by one member,
//     to which the others forward its calls.
//
// Invariants:
//   - Every function, revision, endpoint, tag and task belongs to one
//     account; an account never sees or calls another's (a foreign name is
//     not found, exactly as a missing one).
//   - A key's secret is never stored: only its argon2id hash. The secret is
//     shown once, when the key is made.
//   - A revision is immutable and pins its module: the node's collector
//     keeps every blob a revision names, and the output of every async
//     task kept (BlobIndexes).
//   - A task's state moves only along scheduled -> running -> completed |
//     failed | stopped (TaskState.Next), checked in one place.
//   - Everything a caller was told is in the database before the reply:
//     a task ID returned, a quota count, an account or key made; in a
//     group, in a majority's log and applied on the member that answers.
//   - Shared records change only through the state machine, which alone
//     decides admissions (quota counts, kept tasks, Idempotency-Keys); a
//     change applies only if what its writer read still holds. Plain
//     synchronous calls write nothing of the group's.
//   - A closed invoice is a record of its own and never changes; an open
//     one is worked out from the ledger each time.
//   - Endpoint names are global (they are the URL namespace /e/NAME/);
//     every other name is per account.
//   - A call is counted against its endpoint's daily quota before it runs,
//     by the state machine: calls at once, on any members, never pass the
//     quota, an admission applied twice counts once, and a call the policy
//     refuses is not counted.
//   - A call that fails after its task was saved fails with a *CallError
//     naming the task; its error wraps the dms/api sentinel of its status,
//     the same whether the call waited or reads it with TaskResult.
//   - Close detaches the calls in flight without ending their tasks and
//     releases every warm instance; Start runs async tasks again (calls
//     are at-least-once) and fails synchronous ones.
//   - Calls in flight are bounded, MaxCallsInFlight in all and
//     MaxAccountInFlight an account; past them a call is refused (429 with
//     Retry-After), never queued without end.
//   - A reason a caller reads names a provider by peer ID at most, never by
//     address (redact).
package gateway

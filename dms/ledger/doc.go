// Package ledger keeps a node's money: accounts of credits and the entries
// that moved them, as a double-entry ledger in the node's database.
//
// An entry moves credits between accounts: its postings add to some and
// take from others, and sum to zero. Each entry has an ID naming what it
// accounts for (a receipt, a top-up, a payout); posting the same ID again
// changes nothing, so a retry, a restart or a replay never counts twice.
// A hold reserves part of an account's available credits for work not yet
// billed (a job placed, a batch of calls): admission control checks the
// available credits before any provider is engaged, and the entry that
// bills the work releases its hold.
//
// A Book is one ledger, named by the key prefix of its records: a node's
// own, or the one a gateway group replicates. Every method takes a
// transaction, so that the caller writes an entry in the same commit as
// the state change it accounts for (the receipt it stores, the task it
// ends): a crash keeps both or neither.
//
// Invariants:
//   - the balances of all accounts sum to zero;
//   - an entry is posted at most once under its ID, and an entry with the
//     ID of another but other postings is refused (ErrMismatch);
//   - amounts are exact (types.Credits); an entry or hold whose arithmetic
//     would overflow is refused whole;
//   - Held is the sum of an account's holds, and a hold is taken only when
//     it leaves Available (Balance + Limit - Held) at zero or more.
package ledger

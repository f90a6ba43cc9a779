package gateway

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opendms/dms/dms/internal/store"
)

// The gateway's records in the node's database, all under gw/. Names are
// checked against their patterns before they make a key, and none holds a
// '/', so a prefix ending in '/' holds one account's (or one function's)
// records only.
const (
	accountPrefix  = "gw/acct/"  // gw/acct/<account>: Account (Keys left 0: counted from the keys)
	keyPrefix      = "gw/key/"   // gw/key/<key ID>: keyRecord
	functionPrefix = "gw/fn/"    // gw/fn/<account>/<function>: Function (Calls left 0: kept apart)
	callsPrefix    = "gw/calls/" // gw/calls/<account>/<function>: the function's call count
	revisionPrefix = "gw/rev/"   // gw/rev/<account>/<function>/<%010d>: Revision
	endpointPrefix = "gw/ep/"    // gw/ep/<endpoint>: Endpoint (quota fields left 0); names are global
	quotaPrefix    = "gw/quota/" // gw/quota/<endpoint>/<day>: calls admitted that quota day, the latest day's only
	taskPrefix     = "gw/task/"  // gw/task/<account>/<task ID>: Task; IDs sort newest first
	inputPrefix    = "gw/input/" // gw/input/<account>/<task ID>: callInput of an async task until it ends
	idemPrefix     = "gw/idem/"  // gw/idem/<account>/<sha-256 of endpoint, NUL, key>: the task of an Idempotency-Key
	// gw/epcalls/<endpoint>/<day>: calls of an endpoint with no quota that
	// day, through this gateway (a group does not count them together:
	// no write of the group's for a call that needs none); the latest
	// day's only.
	epCallsPrefix = "gw/epcalls/"
	// gw/ledger/...: the accounts' credits, a ledger.Book (credits.go).
	ledgerPrefix = "gw/ledger/"
	// gw/settled/<receipt charge's entry ID>: the payout statement that
	// settled it (payouts.go).
	settledPrefix = "gw/settled/"
	// gw/statement/<statement ID>: a payout's Statement.
	statementPrefix = "gw/statement/"
)

func accountKey(name string) string      { return accountPrefix + name }
func keyKey(id string) string            { return keyPrefix + id }
func functionsOf(acct string) string     { return functionPrefix + acct + "/" }
func functionKey(acct, fn string) string { return functionsOf(acct) + fn }
func callsOf(acct string) string         { return callsPrefix + acct + "/" }
func callsKey(acct, fn string) string    { return callsOf(acct) + fn }
func revisionsOf(acct, fn string) string { return revisionPrefix + acct + "/" + fn + "/" }
func revisionKey(acct, fn string, n int) string {
	return fmt.Sprintf("%s%010d", revisionsOf(acct, fn), n)
}
func endpointKey(name string) string   { return endpointPrefix + name }
func quotasOf(ep string) string        { return quotaPrefix + ep + "/" }
func quotaKey(ep, day string) string   { return quotasOf(ep) + day }
func epCallsOf(ep string) string       { return epCallsPrefix + ep + "/" }
func epCallsKey(ep, day string) string { return epCallsOf(ep) + day }
func tasksOf(acct string) string       { return taskPrefix + acct + "/" }
func taskKey(acct, id string) string   { return tasksOf(acct) + id }
func inputKey(acct, id string) string  { return inputPrefix + acct + "/" + id }

// errStop ends a scan early; each does not return it.
var errStop = errors.New("gateway: stop the scan")

// each decodes every record under prefix, in key order, and calls fn with
// it; fn returns errStop to end the scan early.
func each[T any](db *store.DB, prefix string, fn func(key string, v T) error) error {
	err := db.Scan(prefix, func(key string, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("gateway: decoding %s: %w", key, err)
		}
		return fn(key, v)
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// find reads the record of the thing of a kind named name, stored under
// key; ErrNotFound if valid is false (the name breaks its pattern, so it
// makes no key) or there is none.
func find[T any](db *store.DB, valid bool, key, kind, name string) (T, error) {
	var v T
	if !valid {
		return v, notFound(kind, name)
	}
	found, err := db.Lookup(key, &v)
	if err == nil && !found {
		err = notFound(kind, name)
	}
	return v, err
}

// all decodes every record under prefix, in key order.
func all[T any](db *store.DB, prefix string) ([]T, error) {
	var out []T
	err := each(db, prefix, func(_ string, v T) error {
		out = append(out, v)
		return nil
	})
	return out, err
}

// keys lists the keys under prefix.
func keys(db *store.DB, prefix string) ([]string, error) {
	var out []string
	err := db.Scan(prefix, func(key string, _ []byte) error {
		out = append(out, key)
		return nil
	})
	return out, err
}

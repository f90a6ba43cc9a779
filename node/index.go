package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/opendms/dms/types"
)

// The node's indices: secondary keys derived from its primary records
// (alloc/ and bid/), so that a provider's views list them newest first, a
// page at a time, filtered by state or outcome, however many there are,
// without reading them all. Each index key is written in the same write as
// its record and deleted with it; none holds anything the records do not:
// RebuildIndex derives them all again, which a node does when it starts and
// finds IndexVersionKey missing or older than IndexVersion.
//
//	idx/alloc/t/<inv>/<allocation ID>           every allocation record
//	idx/alloc/s/<state>/<inv>/<allocation ID>   by its state now
//	idx/bid/t/<inv>/<bid ID>                    every bid record
//	idx/bid/o/<outcome>/<inv>/<bid ID>          by outcome (bid, declined)
//
// <inv> is 20 digits that fall as the record's time rises (an allocation's
// LockedAt, a bid record's ReceivedAt): a forward scan reads the newest
// first. An index key's value is its record's key.
const (
	IndexPrefix = "idx/"
	// IndexVersionKey holds the IndexVersion the indices were built
	// with.
	IndexVersionKey = "node/index_version"
	// IndexVersion changes when the index keys do: a node that finds an
	// older one rebuilds them all.
	IndexVersion = 1

	allocTimeIndex  = IndexPrefix + "alloc/t/"
	allocStateIndex = IndexPrefix + "alloc/s/"
	bidTimeIndex    = IndexPrefix + "bid/t/"
	bidOutcomeIndex = IndexPrefix + "bid/o/"
)

// ErrBadQuery means a listing was asked with a state, an outcome, a limit
// or a cursor that is not valid; the error says which and what would be.
var ErrBadQuery = errors.New("node: bad query")

// allocStates are the states an allocation record can have.
var allocStates = []types.AllocationState{types.AllocLocked, types.AllocRunning, types.AllocCompleted, types.AllocFailed, types.AllocCancelled}

// AllocationStates names the states an allocation listing can filter on.
func AllocationStates() []types.AllocationState {
	return append([]types.AllocationState(nil), allocStates...)
}

// inverted is t as 20 digits that sort newest first.
func inverted(t time.Time) string { return fmt.Sprintf("%020d", math.MaxInt64-t.UnixNano()) }

// allocCursor is the position of rec in the allocation indices.
func allocCursor(rec *Allocation) string {
	return inverted(rec.LockedAt) + "/" + string(rec.AllocationID)
}

// allocIndex returns the index keys of rec as it is now, and those of
// the state it came from, for the same write to delete: a record is
// written locked (with its time key, which never changes), then running,
// then ended; one that ends without starting is discarded instead. (A
// listing by state also checks each record's state, so a key left by a
// write that failed shows nothing wrong.)
func allocIndex(rec *Allocation) (put map[string]any, stale []string) {
	c := allocCursor(rec)
	put = map[string]any{allocStateIndex + string(rec.State) + "/" + c: rec.Key()}
	switch {
	case rec.State == types.AllocLocked:
		put[allocTimeIndex+c] = rec.Key()
	case rec.State == types.AllocRunning || rec.StartedAt.IsZero():
		stale = []string{allocStateIndex + string(types.AllocLocked) + "/" + c}
	default:
		stale = []string{allocStateIndex + string(types.AllocRunning) + "/" + c}
	}
	return put, stale
}

// allocIndexAll returns every index key of rec as it is now: what a
// rebuild writes.
func allocIndexAll(rec *Allocation) map[string]any {
	put, _ := allocIndex(rec)
	put[allocTimeIndex+allocCursor(rec)] = rec.Key()
	return put
}

// allocIndexKeys returns every index key rec may have: those to delete
// with it.
func allocIndexKeys(rec *Allocation) []string {
	c := allocCursor(rec)
	keys := []string{allocTimeIndex + c}
	for _, s := range allocStates {
		keys = append(keys, allocStateIndex+string(s)+"/"+c)
	}
	return keys
}

// Ranger reads the node's records by ranges of keys, in key order; an error
// from fn stops the scan and is returned. *store.DB implements it.
type Ranger interface {
	ScanRange(from, to string, fn func(key string, value []byte) error) error
	Lookup(key string, v any) (bool, error)
}

// Query asks for a page of a listing: at most Limit records (1 to
// MaxPage; 0 means DefaultPage), those with Filter (a state, an outcome;
// "" for all), after the record the cursor After names ("" from the
// newest).
type Query struct {
	Filter string
	Limit  int
	After  string
}

// Pages of a listing.
const (
	DefaultPage = 50
	MaxPage     = 1000
)

// errStop ends a scan that has its page.
var errStop = errors.New("node: page full")

// page reads up to q.Limit records from the index under base, after
// q.After, decoding each into a T with read; it returns them and the
// cursor of the next page ("" after the last one). An index key whose
// record is gone (deleted since the scan began) is skipped.
func page[T any](st Ranger, base string, q Query, read func(key string) (T, bool, error)) ([]T, string, error) {
	limit := q.Limit
	if limit == 0 {
		limit = DefaultPage
	}
	if limit < 1 || limit > MaxPage {
		return nil, "", fmt.Errorf("%w: limit %d: want 1 to %d", ErrBadQuery, q.Limit, MaxPage)
	}
	from := base
	if q.After != "" {
		if err := checkCursor(q.After); err != nil {
			return nil, "", err
		}
		from = base + q.After + "\x00"
	}
	var out []T
	var last, next string
	err := st.ScanRange(from, base+"\xff", func(key string, v []byte) error {
		if len(out) == limit {
			next = last
			return errStop
		}
		var primary string
		if err := json.Unmarshal(v, &primary); err != nil {
			return fmt.Errorf("node: index key %s: %w", key, err)
		}
		rec, ok, err := read(primary)
		if err != nil || !ok {
			return err
		}
		out, last = append(out, rec), strings.TrimPrefix(key, base)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, "", err
	}
	return out, next, nil
}

// checkCursor refuses a cursor that is not "<20 digits>/<ID>".
func checkCursor(c string) error {
	inv, id, ok := strings.Cut(c, "/")
	if !ok || len(inv) != 20 || strings.Trim(inv, "0123456789") != "" || id == "" {
		return fmt.Errorf("%w: cursor %.60q: want the next value of an earlier page", ErrBadQuery, c)
	}
	return nil
}

// ListAllocations returns a page of the node's allocation records, newest
// (by LockedAt) first: every allocation that started, and the locks not
// ended yet. q.Filter is a state ("" for all).
func ListAllocations(st Ranger, q Query) ([]Allocation, string, error) {
	base := allocTimeIndex
	if q.Filter != "" {
		s := types.AllocationState(q.Filter)
		if !isAllocState(s) {
			return nil, "", fmt.Errorf("%w: state %.40q: want one of %s", ErrBadQuery, q.Filter, joinStates())
		}
		base = allocStateIndex + q.Filter + "/"
	}
	return page(st, base, q, func(key string) (Allocation, bool, error) {
		var rec Allocation
		ok, err := st.Lookup(key, &rec)
		return rec, ok && (q.Filter == "" || string(rec.State) == q.Filter), err
	})
}

func isAllocState(s types.AllocationState) bool {
	for _, v := range allocStates {
		if v == s {
			return true
		}
	}
	return false
}

func joinStates() string {
	names := make([]string, len(allocStates))
	for i, s := range allocStates {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// rebuildChunk is how many keys one write of RebuildIndex puts or deletes.
const rebuildChunk = 1024

// RebuildIndex deletes every index key and derives them again from the
// alloc/ and bid/ records, then sets IndexVersionKey to IndexVersion. It
// writes rebuildChunk keys at a time, so memory stays bounded however
// many records there are; interrupted, it leaves the version older, and
// the next start rebuilds again. A record it cannot read is left out of
// the indices (no listing could show it) and counted in skipped.
func RebuildIndex(st Store) (skipped int, err error) {
	c := &chunked{st: st}
	err = st.Scan(IndexPrefix, func(key string, _ []byte) error { return c.del(key) })
	if err == nil {
		err = c.flush() // every deletion before any put: a write deletes after it puts
	}
	if err == nil {
		err = st.Scan(AllocationPrefix, func(key string, v []byte) error {
			var rec Allocation
			if json.Unmarshal(v, &rec) != nil {
				skipped++
				return nil
			}
			return c.put(allocIndexAll(&rec))
		})
	}
	if err == nil {
		err = st.Scan(BidPrefix, func(key string, v []byte) error {
			var rec BidRecord
			if json.Unmarshal(v, &rec) != nil {
				skipped++
				return nil
			}
			return c.put(rec.index())
		})
	}
	if err == nil {
		err = c.flush()
	}
	if err == nil {
		err = st.Put(IndexVersionKey, IndexVersion)
	}
	if err != nil {
		return skipped, fmt.Errorf("node: rebuilding the index: %w", err)
	}
	return skipped, nil
}

// ensureIndex rebuilds the indices unless IndexVersionKey says they are
// current. A rebuild that fails is logged and does not keep the node
// from starting: its listings may miss records until a later start
// rebuilds them.
func ensureIndex(st Store, log *slog.Logger) {
	var v int
	if _, err := st.Lookup(IndexVersionKey, &v); err != nil {
		log.Warn("reading the index version: rebuilding the index", "err", err)
	}
	if v >= IndexVersion {
		return
	}
	start := time.Now()
	skipped, err := RebuildIndex(st)
	if err != nil {
		log.Warn("listings of allocations and bids may be incomplete until the next start", "err", err)
		return
	}
	log.Info("rebuilt the index of allocation and bid records", "from_version", v, "version", IndexVersion,
		"unreadable_skipped", skipped, "took", time.Since(start))
}

// chunked writes keys to put and delete rebuildChunk at a time.
type chunked struct {
	st   Store
	puts map[string]any
	dels []string
}

func (c *chunked) put(kvs map[string]any) error {
	if c.puts == nil {
		c.puts = map[string]any{}
	}
	for k, v := range kvs {
		c.puts[k] = v
	}
	return c.full()
}

func (c *chunked) del(key string) error {
	c.dels = append(c.dels, key)
	return c.full()
}

func (c *chunked) full() error {
	if len(c.puts)+len(c.dels) < rebuildChunk {
		return nil
	}
	return c.flush()
}

func (c *chunked) flush() error {
	if len(c.puts)+len(c.dels) == 0 {
		return nil
	}
	err := c.st.Write(c.puts, c.dels)
	c.puts, c.dels = nil, nil
	return err
}

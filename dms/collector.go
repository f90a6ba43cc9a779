package dms

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/node"
)

// The collector keeps a node's disk bounded (docs/architecture.md, State).
// One goroutine, started by Start and stopped by Close, runs every pass.
// It wakes every collectEvery; when CollectGarbage asks; when a Put takes
// the blobs over budget (or finds the disk full), if its last pass left
// them within budget; and, if that pass kept blobs over budget for their
// age only, when the first of those is old enough to go. A pass:
//  1. compacts the records of jobs and allocations that ended more than
//     store.retention ago, and deletes the bid records (node.BidRecord)
//     received before then (every compactEvery, and when asked);
//  2. when the blobs are over budget (or when asked), removes the least
//     recently used that nothing references (references);
//  3. keeps the compiled modules of the Wasm executor (compiled.go) to a
//     twentieth of the budget, the longest compiled first;
//  4. after the first two freed something (or every compactEvery), runs
//     badger's value-log GC.
const (
	collectEvery = time.Minute
	compactEvery = time.Hour
	// minWake spaces the passes of a collector whose blobs stay over
	// budget, all too recent to go, while more keep coming.
	minWake = time.Second
)

// Database keys of the collector.
const (
	pinPrefix         = "pin/"
	lastCollectionKey = "store/last_collection"
)

// pinRecord is what a pin/<cid> record holds.
type pinRecord struct {
	PinnedAt time.Time `json:"pinned_at"`
}

// collector is the state of the collector's goroutine; last is shared
// with StoreInfo.
type collector struct {
	d    *DMS
	conf StoreConfig // with its defaults
	over <-chan struct{}
	asks chan chan<- api.Collection // CollectGarbage's: each gets the pass it asked for

	compacted time.Time   // when records were last compacted; zero: due at the first pass
	indexes   []*refIndex // of job/, alloc/, batch/, mbatch/ and flow/ records, and the gateway's

	mu   sync.Mutex
	last *api.Collection
}

func newCollector(d *DMS) *collector {
	c := &collector{d: d, conf: d.conf.Store.withDefaults(), asks: make(chan chan<- api.Collection), indexes: []*refIndex{
		{prefix: jobPrefix, read: jobRefs},
		{prefix: allocPrefix, read: allocRefs},
		{prefix: batchPrefix, read: batchRefs},
		{prefix: managedPrefix, read: managedRefs},
		{prefix: flowPrefix, read: flowRefs},
	}}
	for _, x := range gateway.BlobIndexes() {
		c.indexes = append(c.indexes, &refIndex{prefix: x.Prefix, read: x.Blobs})
	}
	budget, err := c.blobBudget()
	if err != nil {
		d.log.Warn("measuring the home", "err", err)
	}
	c.over = d.blobs.Watch(budget)
	var last api.Collection
	if found, err := d.db.Lookup(lastCollectionKey, &last); err != nil {
		d.log.Warn("reading the last collection", "err", err)
	} else if found {
		c.last = &last
	}
	return c
}

// goCollect starts the collector's goroutine.
func (d *DMS) goCollect() {
	d.goDo(d.gc.run)
}

func (c *collector) run(ctx context.Context) {
	timer := time.NewTimer(collectEvery)
	defer timer.Stop()
	over := c.over // nil while the blobs are over budget: the timer wakes the collector then
	for {
		var reply chan<- api.Collection
		select {
		case <-ctx.Done():
			return
		case <-over:
		case <-timer.C:
		case reply = <-c.asks:
		}
		col, ran, retryAt := c.pass(reply != nil)
		if ran {
			c.record(col) // before the reply: who asked then reads it in StoreInfo
		}
		if reply != nil {
			reply <- col
		}
		over = c.over
		if col.BlobBytesAfter > col.BlobBudget || col.Error != "" {
			over = nil // a Put would only wake it to find the same
		}
		wait := collectEvery
		if !retryAt.IsZero() {
			wait = min(wait, max(retryAt.Sub(c.d.opts.clock()), minWake))
		}
		timer.Reset(wait)
	}
}

// pass runs one collection; forced, it compacts and collects whatever is
// due. It reports whether it did anything worth recording, and when the
// blobs it kept for their age become old enough to go (zero if none had
// to stay).
func (c *collector) pass(forced bool) (col api.Collection, ran bool, retryAt time.Time) {
	began := time.Now()
	now := c.d.opts.clock()
	col = api.Collection{At: now}
	var errs []string
	compact := forced || now.Sub(c.compacted) >= compactEvery
	if compact {
		n, err := c.compact(now.Add(-c.conf.Retention))
		col.RecordsCompacted = n
		if err != nil {
			errs = append(errs, err.Error())
		}
		col.BidRecordsExpired, err = node.ExpireBids(c.d.db, now.Add(-c.conf.Retention), bidExpiryChunk)
		if err != nil {
			errs = append(errs, fmt.Sprintf("dms: dropping bid records past retention: %v", err))
		}
		c.compacted = now
	}
	if c.d.exec != nil { // a node that computes has compiled modules
		freed, err := pruneCompiled(filepath.Join(c.d.home, compiledDir), compiledBudget(int64(c.conf.MaxBytes)), time.Now())
		col.CompiledFreedBytes = freed
		if err != nil {
			errs = append(errs, fmt.Sprintf("dms: pruning compiled modules: %v", err))
		}
	}
	budget, err := c.blobBudget()
	if err != nil {
		errs = append(errs, err.Error())
	}
	c.d.blobs.Watch(budget)
	_, bytes := c.d.blobs.Stats()
	col.BlobBudget, col.BlobBytesBefore, col.BlobBytesAfter = budget, bytes, bytes
	if forced || bytes > budget {
		retryAt, err = c.collectBlobs(&col)
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	if compact || col.FreedBytes > 0 {
		n, err := c.d.db.CollectValueLog()
		col.ValueLogRewrites = n
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	col.Error = strings.Join(errs, "; ")
	col.DurationMillis = time.Since(began).Milliseconds()
	ran = forced || col.RecordsCompacted > 0 || col.BidRecordsExpired > 0 || col.BlobsRemoved > 0 || col.CompiledFreedBytes > 0 || col.Error != ""
	if ran {
		level := slog.LevelDebug
		if forced || col.Error != "" {
			level = slog.LevelInfo
		}
		c.d.log.Log(context.Background(), level, "store collected", "removed", col.BlobsRemoved, "freed", col.FreedBytes, "blob_bytes", col.BlobBytesAfter,
			"referenced", col.Referenced, "recent", col.Recent, "compacted", col.RecordsCompacted, "bids_expired", col.BidRecordsExpired, "err", col.Error)
	}
	return col, ran, retryAt
}

// blobBudget is what the blobs may take of the store's budget: what the
// records (the database) and the compiled modules leave, measured as the
// disk blocks they take.
func (c *collector) blobBudget() (int64, error) {
	var rest int64
	for _, dir := range []string{dbDir, compiledDir} {
		n, err := diskUsage(filepath.Join(c.d.home, dir))
		if err != nil {
			return int64(c.conf.MaxBytes), fmt.Errorf("dms: measuring %s: %w", dir, err)
		}
		rest += n
	}
	return max(int64(c.conf.MaxBytes)-rest, 0), nil
}

// collectBlobs removes the least recently used blobs that nothing
// references until the rest fit the budget. When it cannot tell what is
// referenced, it removes nothing.
func (c *collector) collectBlobs(col *api.Collection) (time.Time, error) {
	refs, err := c.references()
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: no blob removed, so that none a live job needs is lost", err)
	}
	plan, removed, err := c.d.blobs.Collect(c.conf.policy(col.BlobBudget), func(c string) bool { return refs[c] })
	col.BlobsRemoved, col.FreedBytes = removed.Blobs, removed.Bytes
	col.BlobBytesAfter = col.BlobBytesBefore - removed.Bytes
	col.Referenced, col.Recent = plan.Referenced, plan.Recent
	return plan.RetryAt, err
}

// compact compacts the records of jobs and allocations that ended before
// cutoff (retention.go). A record that cannot be read is logged and left.
func (c *collector) compact(cutoff time.Time) (int, error) {
	total := 0
	for prefix, compact := range map[string]func([]byte, time.Time) ([]byte, bool, error){jobPrefix: compactJob, allocPrefix: compactAlloc} {
		n, err := c.d.db.Rewrite(prefix, func(key string, v []byte) ([]byte, bool, error) {
			out, changed, err := compact(v, cutoff)
			if err != nil {
				c.d.log.Warn("record left uncompacted: cannot read it", "key", key, "err", err)
				return nil, false, nil
			}
			return out, changed, nil
		})
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// record keeps col as the last collection, in memory and in the database.
func (c *collector) record(col api.Collection) {
	c.mu.Lock()
	c.last = &col
	c.mu.Unlock()
	if err := c.d.db.Put(lastCollectionKey, col); err != nil {
		c.d.log.Warn("recording the collection", "err", err)
	}
}

func (c *collector) lastCollection() *api.Collection {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		return nil
	}
	last := *c.last
	return &last
}

// references returns the blobs the collector must keep: those named by
// the unfinished jobs this node submitted (their job/ records), by the
// allocations it runs that have not ended (alloc/ records), by the batches
// it runs or manages (batch/ and mbatch/ records: their units' program
// and files, which wait in the store until the units run), by the flows
// it runs (flow/ records: their steps' programs and files) and by the
// gateway's records (gateway.BlobIndexes: revisions' modules, async
// tasks' outputs), the pinned ones, and the node's signed capability
// record. A record it cannot read
// is an error: what it references is unknown.
func (c *collector) references() (map[string]bool, error) {
	refs := map[string]bool{}
	add := func(cs ...string) {
		for _, s := range cs {
			if id, err := cid.Decode(s); err == nil {
				s = id.String()
			}
			refs[s] = true
		}
	}
	for _, x := range c.indexes {
		if err := x.scan(c.d.db, add); err != nil {
			return nil, err
		}
	}
	pins, err := c.d.pins()
	if err != nil {
		return nil, err
	}
	add(pins...)
	if s, ok := c.d.recordCID.Load().(string); ok {
		add(s)
	}
	return refs, nil
}

// refIndex remembers, of one kind of record, the blobs each record named
// at the last scan, so that a scan reads keys and versions and decodes
// only the records written since: a record that names no blob (a finished
// one) is skipped until it changes, and any change gives it a new version.
type refIndex struct {
	prefix string
	read   func([]byte) ([]string, error) // the blobs a record names; none once it ended
	readTs uint64                         // the last scan's read timestamp
	refs   map[string][]string            // by key: the records that named blobs then
}

// scan adds the blobs the records name now; on error the index stays as
// it was, so the next scan reads again what this one could not.
func (x *refIndex) scan(db *store.DB, add func(...string)) error {
	refs := make(map[string][]string, len(x.refs))
	ts, err := db.ScanVersions(x.prefix, func(key string, version uint64, value func() ([]byte, error)) error {
		cs := x.refs[key]
		if version > x.readTs {
			v, err := value()
			if err != nil {
				return err
			}
			if cs, err = x.read(v); err != nil {
				return fmt.Errorf("dms: cannot read record %s: %w", key, err)
			}
		}
		if len(cs) > 0 {
			refs[key] = cs
			add(cs...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	x.readTs, x.refs = ts, refs
	return nil
}

// pins lists the pinned blobs, sorted.
func (d *DMS) pins() ([]string, error) {
	var pins []string
	err := d.db.Scan(pinPrefix, func(key string, _ []byte) error {
		pins = append(pins, strings.TrimPrefix(key, pinPrefix))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dms: reading pins: %w", err)
	}
	return pins, nil
}

// CollectGarbage runs a collection now: it compacts the records past
// retention, removes the least recently used blobs that nothing references
// while the blobs are over budget, and runs badger's value-log GC. It
// returns what the pass did; its Error says why it stopped short.
func (d *DMS) CollectGarbage(ctx context.Context) (api.Collection, error) {
	if err := d.running(); err != nil {
		return api.Collection{}, err
	}
	reply := make(chan api.Collection, 1)
	select {
	case d.gc.asks <- reply:
	case <-ctx.Done():
		return api.Collection{}, ctx.Err()
	case <-d.ctx.Done():
		return api.Collection{}, ErrClosed
	}
	select {
	case col := <-reply:
		return col, nil
	case <-ctx.Done():
		return api.Collection{}, ctx.Err()
	}
}

// StoreInfo describes what the node keeps on disk.
func (d *DMS) StoreInfo(ctx context.Context) (api.StoreInfo, error) {
	n, bytes := d.blobs.Stats()
	info := api.StoreInfo{
		Home: d.home, Blobs: n, BlobBytes: bytes, MaxBytes: int64(d.gc.conf.MaxBytes),
		MinBlobAgeMillis: d.gc.conf.MinBlobAge.Milliseconds(), RetentionMillis: d.gc.conf.Retention.Milliseconds(),
		LastCollection: d.gc.lastCollection(),
	}
	var err error
	if info.Pins, err = d.pins(); err != nil {
		return info, err
	}
	if info.Pins == nil {
		info.Pins = []string{}
	}
	if info.Records, err = d.db.Count(); err != nil {
		return info, err
	}
	if info.HomeBytes, err = diskUsage(d.home); err != nil {
		return info, fmt.Errorf("dms: measuring the home: %w", err)
	}
	return info, nil
}

// Pin keeps a blob whatever the budget, fetching it first if this node
// does not hold it.
func (d *DMS) Pin(ctx context.Context, c string) error {
	id, err := cid.Decode(c)
	if err != nil {
		return fmt.Errorf("%w: bad CID %q: %w", api.ErrBadRequest, c, err)
	}
	c = id.String()
	if err := d.holdBlob(ctx, c); err != nil { // a use: the blob is kept for the minimum age
		return fmt.Errorf("dms: pinning %s: %w", c, err)
	}
	return d.db.Put(pinPrefix+c, pinRecord{PinnedAt: d.opts.clock()})
}

// Unpin lets a pinned blob be collected again.
func (d *DMS) Unpin(ctx context.Context, c string) error {
	id, err := cid.Decode(c)
	if err != nil {
		return fmt.Errorf("%w: bad CID %q: %w", api.ErrBadRequest, c, err)
	}
	c = id.String()
	found, err := d.db.Lookup(pinPrefix+c, new(pinRecord))
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: blob %s is not pinned", api.ErrNotFound, c)
	}
	return d.db.Delete(pinPrefix + c)
}

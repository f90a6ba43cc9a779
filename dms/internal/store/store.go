package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	badgeropts "github.com/dgraph-io/badger/v4/options"
)

// DB is a node's database: records in badger, blobs in files (or both in
// memory, OpenInMemory).
type DB struct {
	db       *badger.DB
	blobs    *blobStore
	maxValue int // 0: no limit but badger's
}

// Options say where a database lives.
type Options struct {
	// Dir is badger's directory: the records.
	Dir string
	// BlobDir holds the blobs, one file each. OpenInMemory keeps them in
	// memory instead.
	BlobDir string
	// Logger receives badger's logs; nil discards them.
	Logger *slog.Logger
	// Clock stamps every use of a blob (default time.Now).
	Clock func() time.Time
}

func (o Options) clock() func() time.Time {
	if o.Clock == nil {
		return time.Now
	}
	return o.Clock
}

// Open opens (creating if needed) the database in o.Dir and o.BlobDir.
// Memory use is kept small: a daemon idles in tens of megabytes, not
// hundreds. Blobs that earlier versions kept in badger are moved to files.
func Open(o Options) (*DB, error) {
	d, err := openRecords(o)
	if err != nil {
		return nil, err
	}
	files, err := openDirFS(o.BlobDir)
	if err == nil {
		err = d.migrateBlobs(files)
	}
	if err == nil {
		d.blobs, err = newBlobStore(files, o.clock())
	}
	if err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// openRecords opens the badger database in o.Dir, without blobs.
func openRecords(o Options) (*DB, error) {
	opts := options(o.Dir, o.Logger).
		WithMemTableSize(2 << 20).    // an 8 MiB table held 10 MiB of a 17 MiB idle heap
		WithBaseTableSize(512 << 10). // a compaction reserves twice a table: 2 MiB ones kept 6-9 MB more heap after 10,000 jobs
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", o.Dir, err)
	}
	return &DB{db: db}, nil
}

func options(dir string, logger *slog.Logger) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(badgerLogger{logger}).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithValueThreshold(valueThreshold).
		WithNumCompactors(2)
}

// MaxInMemoryValue bounds a record of a database opened with OpenInMemory:
// badger keeps every value of such a database in its LSM tree, which holds
// only values below valueThreshold (it would send a larger one to the value
// log such a database does not have, and panic).
const MaxInMemoryValue = valueThreshold - 1

// valueThreshold is the largest value kept in the LSM tree; larger ones go
// to the value log, which a database in memory does not have.
const valueThreshold = 64 << 10

// OpenInMemory opens a database held in memory only, starting as a copy of
// the records (not the blobs: seed.BlobDir is not read) of the database in
// seed.Dir, which it opens, reads and closes: nothing written to it survives Close, and a record over
// MaxInMemoryValue is refused (ErrTooLarge). Its tables are small: it is
// meant for the many nodes of a simulation or a benchmark, running tiny
// jobs.
func OpenInMemory(seed Options) (*DB, error) {
	src, err := openRecords(seed)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	db, err := badger.Open(options("", seed.Logger).WithInMemory(true).WithCompression(badgeropts.None).
		WithMemTableSize(512 << 10).WithBlockCacheSize(0).WithIndexCacheSize(0))
	if err != nil {
		return nil, fmt.Errorf("store: opening in memory: %w", err)
	}
	d := &DB{db: db, maxValue: MaxInMemoryValue}
	if d.blobs, err = newBlobStore(newMemFS(), seed.clock()); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	err = src.Scan("", func(key string, value []byte) error {
		if strings.HasPrefix(key, blobPrefix) {
			return nil // an earlier version's blob: Open moves it to a file
		}
		return d.putRaw([]byte(key), value)
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: copying %s: %w", seed.Dir, err), d.Close())
	}
	return d, nil
}

// Close flushes and closes the database.
func (d *DB) Close() error {
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Put stores v as JSON under key.
func (d *DB) Put(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encoding %s: %w", key, err)
	}
	return d.putRaw([]byte(key), b)
}

func (d *DB) putRaw(key, val []byte) error {
	if d.maxValue > 0 && len(val) > d.maxValue {
		return fmt.Errorf("%w: writing %s: %d bytes, limit %d in memory", ErrTooLarge, key, len(val), d.maxValue)
	}
	err := d.db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) })
	if err != nil {
		return fmt.Errorf("store: writing %s: %w", key, err)
	}
	return nil
}

// PutAll stores each value as JSON under its key, in as few writes as the
// database allows: one for a few hundred small records.
func (d *DB) PutAll(kvs map[string]any) error {
	wb := d.db.NewWriteBatch()
	defer wb.Cancel()
	for key, v := range kvs {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("store: encoding %s: %w", key, err)
		}
		if d.maxValue > 0 && len(b) > d.maxValue {
			return fmt.Errorf("%w: writing %s: %d bytes, limit %d in memory", ErrTooLarge, key, len(b), d.maxValue)
		}
		if err := wb.Set([]byte(key), b); err != nil {
			return fmt.Errorf("store: writing %s: %w", key, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: writing %d records: %w", len(kvs), err)
	}
	return nil
}

// Get decodes the JSON stored under key into v; ErrNotFound if absent.
func (d *DB) Get(key string, v any) error {
	b, err := d.getRaw([]byte(key))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("store: decoding %s: %w", key, err)
	}
	return nil
}

func (d *DB) getRaw(key []byte) ([]byte, error) {
	var out []byte
	err := d.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading %s: %w", key, err)
	}
	return out, nil
}

// has reports whether key is stored, reading its index entry only.
func (d *DB) has(key []byte) (bool, error) {
	err := d.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(key) // finds the key; the value is read only by Value or ValueCopy
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: reading %s: %w", key, err)
	}
	return true, nil
}

// Lookup is Get that reports absence as false rather than an error.
func (d *DB) Lookup(key string, v any) (bool, error) {
	err := d.Get(key, v)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Write stores each value of put as JSON under its key and deletes the
// keys of del, in one transaction: all of it is written, or none.
func (d *DB) Write(put map[string]any, del []string) error {
	vals := make(map[string][]byte, len(put))
	for key, v := range put {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("store: encoding %s: %w", key, err)
		}
		if d.maxValue > 0 && len(b) > d.maxValue {
			return fmt.Errorf("%w: writing %s: %d bytes, limit %d in memory", ErrTooLarge, key, len(b), d.maxValue)
		}
		vals[key] = b
	}
	err := d.db.Update(func(txn *badger.Txn) error {
		for key, b := range vals {
			if err := txn.Set([]byte(key), b); err != nil {
				return err
			}
		}
		for _, key := range del {
			if err := txn.Delete([]byte(key)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: writing %d records, deleting %d: %w", len(put), len(del), err)
	}
	return nil
}

// Delete removes key; deleting an absent key is not an error.
func (d *DB) Delete(key string) error {
	err := d.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) })
	if err != nil {
		return fmt.Errorf("store: deleting %s: %w", key, err)
	}
	return nil
}

// Scan calls fn with every key under prefix, in key order, and its JSON value.
// An error from fn stops the scan and is returned.
func (d *DB) Scan(prefix string, fn func(key string, value []byte) error) error {
	return d.scan(prefix, prefix, "", fn)
}

// ScanRange is Scan of the keys from from (included) to to (excluded): it
// reads those keys only, however many there are around them.
func (d *DB) ScanRange(from, to string, fn func(key string, value []byte) error) error {
	if from >= to {
		return nil
	}
	n := 0
	for n < len(from) && from[n] == to[n] { // from < to: to is not a prefix of from
		n++
	}
	return d.scan(from[:n], from, to, fn)
}

// scan calls fn with every key under prefix from from on, up to to
// ("": to the prefix's last key), in a read-only transaction.
func (d *DB) scan(prefix, from, to string, fn func(key string, value []byte) error) error {
	return d.View(func(tx *Tx) error { return tx.scan(prefix, from, to, fn) })
}

// badgerLogger sends badger's chatter to slog at debug level, warnings and
// errors at their own.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug, f, a) }

func (b badgerLogger) log(level slog.Level, f string, a []any) {
	if b.l != nil {
		b.l.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
	}
}

// LookupRaw returns the bytes stored under key as they are, and whether
// there are any.
func (d *DB) LookupRaw(key string) ([]byte, bool, error) {
	b, err := d.getRaw([]byte(key))
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	return b, err == nil, err
}

// Size returns the bytes of badger's LSM tree and value log as badger
// last measured them (it does so every minute), so it is cheap to call.
func (d *DB) Size() (lsm, vlog int64) { return d.db.Size() }

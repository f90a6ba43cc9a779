package store

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// rewriteBatch bounds the records Rewrite writes in one transaction.
const rewriteBatch = 256

// Rewrite calls fn with every record under prefix, in key order, and
// stores the value it returns when it reports a change. A record written
// by someone else between fn's read and the rewrite is left as it is (its
// badger version changed), and so is a batch whose transaction conflicts:
// the next Rewrite sees them again. It returns how many records it
// rewrote; an error from fn stops it.
func (d *DB) Rewrite(prefix string, fn func(key string, value []byte) ([]byte, bool, error)) (int, error) {
	type change struct {
		key     []byte
		version uint64
		value   []byte
	}
	var batch []change
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		written := 0
		err := d.db.Update(func(txn *badger.Txn) error {
			written = 0
			for _, c := range batch {
				item, err := txn.Get(c.key)
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if item.Version() != c.version {
					continue
				}
				if err := txn.Set(c.key, c.value); err != nil {
					return err
				}
				written++
			}
			return nil
		})
		batch = batch[:0]
		if errors.Is(err, badger.ErrConflict) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: rewriting records under %s: %w", prefix, err)
		}
		n += written
		return nil
	}
	_, err := d.ScanVersions(prefix, func(key string, version uint64, value func() ([]byte, error)) error {
		v, err := value()
		if err != nil {
			return err
		}
		nv, changed, err := fn(key, v)
		if err != nil || !changed {
			return err
		}
		if d.maxValue > 0 && len(nv) > d.maxValue {
			return fmt.Errorf("%w: rewriting %s: %d bytes, limit %d in memory", ErrTooLarge, key, len(nv), d.maxValue)
		}
		batch = append(batch, change{key: []byte(key), version: version, value: nv})
		if len(batch) == rewriteBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return n, err
}

// CollectValueLog runs badger's value-log GC until it rewrites nothing,
// and returns how many value-log files it rewrote. A file is rewritten
// only once compactions have reported half of it discardable; a database
// in memory has no value log.
func (d *DB) CollectValueLog() (int, error) {
	for n := 0; ; n++ {
		err := d.db.RunValueLogGC(0.5)
		switch {
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrGCInMemoryMode), errors.Is(err, badger.ErrRejected):
			return n, nil // nothing (more) to rewrite, no value log, or a GC already running
		case err != nil:
			return n, fmt.Errorf("store: value-log GC: %w", err)
		}
	}
}

// Count returns how many records there are of each kind, the part of the
// key before its first '/' ("job", "alloc", ...). It reads keys only.
func (d *DB) Count() (map[string]int, error) {
	counts := map[string]int{}
	err := d.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			kind, _, _ := strings.Cut(string(it.Item().Key()), "/")
			counts[kind]++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: counting records: %w", err)
	}
	return counts, nil
}

// ScanVersions calls fn with every key under prefix, in key order, and
// its version, reading no value unless fn calls value. It returns the
// scan's read timestamp: a record a later scan finds at a version at or
// below it has not changed since this scan. An error from fn stops it.
func (d *DB) ScanVersions(prefix string, fn func(key string, version uint64, value func() ([]byte, error)) error) (uint64, error) {
	var ts uint64
	err := d.db.View(func(txn *badger.Txn) error {
		ts = txn.ReadTs()
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = []byte(prefix), false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			value := func() ([]byte, error) {
				v, err := item.ValueCopy(nil)
				if err != nil {
					return nil, fmt.Errorf("store: reading %s: %w", item.Key(), err)
				}
				return v, nil
			}
			if err := fn(string(item.Key()), item.Version(), value); err != nil {
				return err
			}
		}
		return nil
	})
	return ts, err
}

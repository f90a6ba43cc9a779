package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

var (
	// ErrNotFound is returned for a key or blob that is not stored.
	ErrNotFound = errors.New("store: not found")
	// ErrTooLarge is returned for a blob over the store's size limit.
	ErrTooLarge = errors.New("store: blob too large")
)

// DB is a node's database.
type DB struct {
	db *badger.DB
}

// Open opens (creating if needed) the database in dir. Memory use is kept
// small: a daemon idles in tens of megabytes, not hundreds.
func Open(dir string, logger *slog.Logger) (*DB, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{logger}).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(64 << 10).
		WithNumCompactors(2)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", dir, err)
	}
	return &DB{db: db}, nil
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
	err := d.db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) })
	if err != nil {
		return fmt.Errorf("store: writing %s: %w", key, err)
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

// Lookup is Get that reports absence as false rather than an error.
func (d *DB) Lookup(key string, v any) (bool, error) {
	err := d.Get(key, v)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
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
	return d.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("store: reading %s: %w", item.Key(), err)
			}
			if err := fn(string(item.Key()), v); err != nil {
				return err
			}
		}
		return nil
	})
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

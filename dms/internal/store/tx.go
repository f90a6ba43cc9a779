package store

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Tx is a read-write transaction: what it reads is one snapshot, what it
// writes is committed all together or not at all (Update).
type Tx struct {
	d   *DB
	txn *badger.Txn
}

// updateAttempts bounds how often Update runs a function whose reads
// another transaction changed before it could commit.
const updateAttempts = 8

// Update runs fn in a transaction and commits what it wrote. If another
// transaction changed a key fn read before this one committed, fn runs
// again on a fresh snapshot (up to a few times, then ErrConflict): fn must
// not have effects outside the transaction. An error from fn discards
// everything it wrote, and is returned.
func (d *DB) Update(fn func(*Tx) error) error {
	for range updateAttempts {
		err := d.db.Update(func(txn *badger.Txn) error { return fn(&Tx{d: d, txn: txn}) })
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("%w: %d attempts", ErrConflict, updateAttempts)
}

// Lookup decodes the JSON under key into v and reports whether there was
// any.
func (t *Tx) Lookup(key string, v any) (bool, error) {
	item, err := t.txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: reading %s: %w", key, err)
	}
	err = item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
	if err != nil {
		return false, fmt.Errorf("store: decoding %s: %w", key, err)
	}
	return true, nil
}

// Put stores v as JSON under key when the transaction commits.
func (t *Tx) Put(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encoding %s: %w", key, err)
	}
	if t.d.maxValue > 0 && len(b) > t.d.maxValue {
		return fmt.Errorf("%w: writing %s: %d bytes, limit %d in memory", ErrTooLarge, key, len(b), t.d.maxValue)
	}
	if err := t.txn.Set([]byte(key), b); err != nil {
		return fmt.Errorf("store: writing %s: %w", key, err)
	}
	return nil
}

// Delete removes key when the transaction commits.
func (t *Tx) Delete(key string) error {
	if err := t.txn.Delete([]byte(key)); err != nil {
		return fmt.Errorf("store: deleting %s: %w", key, err)
	}
	return nil
}

// Scan calls fn with every key under prefix from the key from on (all of
// them when from is ""), in key order, and its JSON value, as the
// transaction sees them; an error from fn stops the scan and is returned.
func (t *Tx) Scan(prefix, from string, fn func(key string, value []byte) error) error {
	return t.scan(prefix, max(from, prefix), "", fn)
}

// scan calls fn with every key under prefix from from on, up to to ("":
// to the prefix's last key).
func (t *Tx) scan(prefix, from, to string, fn func(key string, value []byte) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefix)
	it := t.txn.NewIterator(opts)
	defer it.Close()
	for it.Seek([]byte(from)); it.Valid(); it.Next() {
		item := it.Item()
		if to != "" && string(item.Key()) >= to {
			return nil
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("store: reading %s: %w", item.Key(), err)
		}
		if err := fn(string(item.Key()), v); err != nil {
			return err
		}
	}
	return nil
}

// View runs fn in a read-only transaction: one snapshot of the records.
func (d *DB) View(fn func(*Tx) error) error {
	return d.db.View(func(txn *badger.Txn) error { return fn(&Tx{d: d, txn: txn}) })
}

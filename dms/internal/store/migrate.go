package store

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// blobPrefix is where earlier versions kept blobs, as badger records.
const blobPrefix = "blob/"

// migrateBlobs moves the blobs earlier versions kept in badger to files:
// each is written to its file, then its record deleted, so a crash halfway
// loses none and the next open goes on. The space the moved blobs took in
// badger's value log stays there (badger's GC does not reclaim it: see
// dirFS), until a new home is made.
func (d *DB) migrateBlobs(f blobFS) error {
	var moved [][]byte
	err := d.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = []byte(blobPrefix), false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().KeyCopy(nil)
			err := it.Item().Value(func(v []byte) error {
				st, err := f.stage(v)
				if err != nil {
					return err
				}
				defer st.discard()
				return st.commit(string(key[len(blobPrefix):]))
			})
			if err != nil {
				return fmt.Errorf("store: moving blob %s to a file: %w", key[len(blobPrefix):], err)
			}
			moved = append(moved, key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	wb := d.db.NewWriteBatch()
	defer wb.Cancel()
	for _, key := range moved {
		if err := wb.Delete(key); err != nil {
			return fmt.Errorf("store: deleting moved blob %s: %w", key, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: deleting %d moved blobs: %w", len(moved), err)
	}
	return nil
}

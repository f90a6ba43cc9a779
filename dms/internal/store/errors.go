package store

import "errors"

var (
	// ErrNotFound is returned for a key or blob that is not stored.
	ErrNotFound = errors.New("store: not found")
	// ErrTooLarge is returned for a blob over its Blobs' size limit, and
	// for a record over MaxInMemoryValue in a database in memory.
	ErrTooLarge = errors.New("store: blob too large")
	// ErrNoSpace is returned when a blob cannot be stored because the
	// disk is full.
	ErrNoSpace = errors.New("store: no space left on the disk")
	// ErrConflict is returned by Update when other transactions kept
	// changing what its function read.
	ErrConflict = errors.New("store: transaction conflict")
)

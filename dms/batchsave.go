package dms

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// recordWriter writes records in one write (store.DB.PutAll).
type recordWriter interface {
	PutAll(kvs map[string]any) error
}

// unitWriter saves the unit records of a batch its node runs alone, off
// the batch's loop: the loop hands it the records a command changed
// without waiting (put), and a goroutine writes whatever is pending in one
// write, the latest record of each key. A replica's job is submitted only
// once the record that issued it is durable (saved), so that a restart
// finds every replica issued. A write that fails is logged and tried
// again until the node closes: no record is dropped.
//
// At most one goroutine writes at a time; it is started when records are
// pending and returns once none are, so an idle batch holds none. Its
// methods are safe for concurrent use.
type unitWriter struct {
	db   recordWriter
	log  *slog.Logger
	goDo func(func(context.Context)) // starts the writing goroutine; its context ends when the node closes

	mu       sync.Mutex
	pending  map[string]any // by key, the latest record
	queued   uint64         // puts so far
	written  uint64         // of those, the puts whose records are durable
	writing  bool           // a goroutine writes
	progress chan struct{}  // closed, and replaced, when written grows
}

// Retries of a failed write back off from retryFirst to retryMax.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 5 * time.Second
)

func newUnitWriter(db recordWriter, log *slog.Logger, goDo func(func(context.Context))) *unitWriter {
	return &unitWriter{db: db, log: log, goDo: goDo, pending: map[string]any{}, progress: make(chan struct{})}
}

// put queues records, replacing the pending ones of the same keys: a
// put's records are written in the write of those of earlier puts, or in
// a later one. It never waits for the database.
func (w *unitWriter) put(recs map[string]any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	maps.Copy(w.pending, recs)
	w.queued++
	if !w.writing {
		w.writing = true
		w.goDo(w.write)
	}
}

// write writes what is pending until nothing is; a failed write is
// retried, its records pending again unless a later put replaced them.
func (w *unitWriter) write(ctx context.Context) {
	wait := retryFirst
	for {
		w.mu.Lock()
		if len(w.pending) == 0 {
			w.writing = false
			w.mu.Unlock()
			return
		}
		recs, upto := w.pending, w.queued
		w.pending = make(map[string]any, len(recs))
		w.mu.Unlock()
		err := w.db.PutAll(recs)
		w.mu.Lock()
		if err == nil {
			w.written = upto
			close(w.progress)
			w.progress = make(chan struct{})
			w.mu.Unlock()
			wait = retryFirst
			continue
		}
		for k, v := range recs {
			if _, newer := w.pending[k]; !newer {
				w.pending[k] = v
			}
		}
		w.mu.Unlock()
		w.log.Error("saving a batch's units: trying again", "units", len(recs), "in", wait, "err", err)
		select {
		case <-ctx.Done(): // the node is closing: what is pending is lost, and no replica waiting for it was submitted
			w.mu.Lock()
			w.writing = false
			w.mu.Unlock()
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// saved waits until the records of every put before it are durable, or
// ctx ends.
func (w *unitWriter) saved(ctx context.Context) error {
	w.mu.Lock()
	want := w.queued
	for w.written < want {
		progress := w.progress
		w.mu.Unlock()
		select {
		case <-progress:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		w.mu.Lock()
	}
	w.mu.Unlock()
	return nil
}

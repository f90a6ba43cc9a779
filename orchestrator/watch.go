package orchestrator

import (
	"context"
	"sync"
)

// watcher delivers one Watch's snapshots. The loop pushes without ever
// blocking; the watcher's own goroutine forwards them to the reader, in
// order, none dropped (a job has a bounded number of changes).
type watcher struct {
	out  chan JobInfo
	wake chan struct{} // capacity 1: "the queue grew"

	mu    sync.Mutex
	queue []JobInfo
	done  bool // the goroutine returned: pushes are dropped
}

func newWatcher() *watcher {
	return &watcher{out: make(chan JobInfo), wake: make(chan struct{}, 1)}
}

func (w *watcher) push(info JobInfo) {
	w.mu.Lock()
	if !w.done {
		w.queue = append(w.queue, info)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) gone() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

func (w *watcher) take() []JobInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

// run forwards snapshots until the terminal one, or until the reader's ctx
// or the orchestrator's stop ends. It closes out.
func (w *watcher) run(ctx, stop context.Context) {
	defer func() {
		w.mu.Lock()
		w.done, w.queue = true, nil
		w.mu.Unlock()
		close(w.out)
	}()
	for {
		for _, info := range w.take() {
			select {
			case w.out <- info:
			case <-ctx.Done():
				return
			case <-stop.Done():
				return
			}
			if info.State.Terminal() {
				return
			}
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		case <-stop.Done():
			return
		}
	}
}

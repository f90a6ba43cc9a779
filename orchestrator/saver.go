package orchestrator

import (
	"log/slog"
	"sync"

	"github.com/opendms/dms/types"
)

// saver persists job snapshots off the loop, so that a slow disk never
// holds up auctions: the loop hands it each changed job's latest snapshot
// without blocking, and one goroutine writes them. A snapshot superseded
// before it was written is skipped; the latest one of every job is always
// written, at the latest when the orchestrator closes.
type saver struct {
	store Store
	log   *slog.Logger
	wake  chan struct{} // capacity 1: "something is pending"

	mu      sync.Mutex
	pending map[types.JobID]JobInfo
	order   []types.JobID // jobs with a pending snapshot, oldest first
}

func newSaver(store Store, log *slog.Logger) *saver {
	return &saver{store: store, log: log, wake: make(chan struct{}, 1), pending: make(map[types.JobID]JobInfo)}
}

// put queues info, replacing an older pending snapshot of the same job.
// It never blocks.
func (s *saver) put(info JobInfo) {
	s.mu.Lock()
	if _, queued := s.pending[info.ID]; !queued {
		s.order = append(s.order, info.ID)
	}
	s.pending[info.ID] = info
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes pending snapshots until stop closes, then writes what is left
// and returns. stop must close only once no more put calls can come.
func (s *saver) run(stop <-chan struct{}) {
	for {
		select {
		case <-s.wake:
			s.flush()
		case <-stop:
			s.flush()
			return
		}
	}
}

func (s *saver) flush() {
	for {
		s.mu.Lock()
		if len(s.order) == 0 {
			s.mu.Unlock()
			return
		}
		id := s.order[0]
		s.order = s.order[1:]
		info := s.pending[id]
		delete(s.pending, id)
		s.mu.Unlock()
		if err := s.store.SaveJob(info); err != nil {
			s.log.Error("saving job", "job", info.ID, "err", err)
		}
	}
}

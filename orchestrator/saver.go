package orchestrator

import (
	"log/slog"
	"sync"

	"github.com/opendms/dms/types"
)

// saver persists job records off the loop, so that a slow disk never holds
// up auctions: the loop hands it each changed job's latest record without
// blocking, and one goroutine writes them. A record superseded before it
// was written is skipped; the latest one of every job is always written,
// at the latest when the orchestrator closes.
type saver struct {
	store Store
	log   *slog.Logger
	wake  chan struct{} // capacity 1: "something is pending"

	mu      sync.Mutex
	pending map[types.JobID]pendingRecord
	order   []types.JobID // jobs with a pending record, oldest first
}

// pendingRecord is a record waiting to be written, and who waits for it.
type pendingRecord struct {
	rec   Record
	saved []chan<- error // each told the outcome of the write; capacity 1
}

func newSaver(store Store, log *slog.Logger) *saver {
	return &saver{store: store, log: log, wake: make(chan struct{}, 1), pending: make(map[types.JobID]pendingRecord)}
}

// put queues rec, replacing an older pending record of the same job, whose
// waiters then wait for rec. Each of saved is told the outcome of the write
// that covers rec: rec, or a later record of its job. put never blocks.
func (s *saver) put(rec Record, saved ...chan<- error) {
	s.mu.Lock()
	p, queued := s.pending[rec.ID]
	if !queued {
		s.order = append(s.order, rec.ID)
	}
	p.rec = rec
	p.saved = append(p.saved, saved...)
	s.pending[rec.ID] = p
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes pending records until stop closes, then writes what is left
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

// flush writes every pending record in one call of the Store, oldest
// first, and tells their waiters.
func (s *saver) flush() {
	s.mu.Lock()
	batch := make([]pendingRecord, 0, len(s.order))
	for _, id := range s.order {
		batch = append(batch, s.pending[id])
		delete(s.pending, id)
	}
	s.order = s.order[:0]
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	recs := make([]Record, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	err := s.store.SaveJobs(recs)
	if err != nil {
		s.log.Error("saving jobs", "jobs", len(recs), "err", err)
	}
	for _, p := range batch {
		for _, c := range p.saved {
			c <- err
		}
	}
}

package orchestrator

import (
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/opendms/dms/types"
)

// saver persists job records, and peer records when the Store is a
// PeerStore, off the loop, so that a slow disk never holds up auctions:
// the loop hands it each changed job's or peer's latest record without
// blocking, and one goroutine writes them. A record superseded before it
// was written is skipped; the latest one of every job and peer is always
// written, at the latest when the orchestrator closes.
type saver struct {
	store Store
	log   *slog.Logger
	wake  chan struct{} // capacity 1: "something is pending"

	mu      sync.Mutex
	pending map[types.JobID]pendingRecord
	order   []types.JobID          // jobs with a pending record, oldest first
	peers   map[string]*PeerRecord // peers with a pending change; nil: forget the peer
}

// pendingRecord is a record waiting to be written, and who waits for it.
type pendingRecord struct {
	rec   Record
	saved []chan<- error // each told the outcome of the write; capacity 1
}

func newSaver(store Store, log *slog.Logger) *saver {
	return &saver{store: store, log: log, wake: make(chan struct{}, 1), pending: make(map[types.JobID]pendingRecord), peers: make(map[string]*PeerRecord)}
}

// putPeer queues a peer's record, and the peers dropped from the
// reputation, if the Store keeps peers. It never blocks.
func (s *saver) putPeer(rec PeerRecord, dropped []string) {
	if _, ok := s.store.(PeerStore); !ok {
		return
	}
	s.mu.Lock()
	s.peers[rec.Peer] = &rec
	for _, p := range dropped {
		s.peers[p] = nil
	}
	s.mu.Unlock()
	s.signal()
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
	s.signal()
}

func (s *saver) signal() {
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

// flush writes every pending job record in one call of the Store, oldest
// first, and tells their waiters; then the pending peer changes.
func (s *saver) flush() {
	s.mu.Lock()
	batch := make([]pendingRecord, 0, len(s.order))
	for _, id := range s.order {
		batch = append(batch, s.pending[id])
		delete(s.pending, id)
	}
	s.order = s.order[:0]
	var peers map[string]*PeerRecord // taken whole: puts go to a fresh map
	if len(s.peers) > 0 {
		peers, s.peers = s.peers, make(map[string]*PeerRecord)
	}
	s.mu.Unlock()
	s.saveJobs(batch)
	s.savePeers(peers)
}

// saveJobs writes a batch of job records, and tells their waiters.
func (s *saver) saveJobs(batch []pendingRecord) {
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

// savePeers writes peer changes taken from s.peers. A failure is only
// logged: a reputation is a hint, and the peer's next change writes its
// whole record again.
func (s *saver) savePeers(peers map[string]*PeerRecord) {
	ps, ok := s.store.(PeerStore)
	if !ok || len(peers) == 0 {
		return
	}
	var put []PeerRecord
	var drop []string
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		if rec := peers[id]; rec != nil {
			put = append(put, *rec)
		} else {
			drop = append(drop, id)
		}
	}
	if err := ps.SavePeers(put, drop); err != nil {
		s.log.Error("saving peers", "peers", len(peers), "err", err)
	}
}

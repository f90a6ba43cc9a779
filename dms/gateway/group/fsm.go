package group

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// fsm adapts the caller's FSM to raft's and keeps the index applied here,
// which WaitApplied waits on. A snapshot starts with that index (8 bytes,
// big-endian), so a member restored from one knows how far it is.
type fsm struct {
	user    FSM
	changed func() // a configuration entry was applied: the monitor looks again

	mu      sync.Mutex
	applied uint64
	moved   chan struct{} // closed and replaced whenever applied moves
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

func newFSM(user FSM, changed func()) *fsm {
	return &fsm{user: user, changed: changed, moved: make(chan struct{})}
}

func (f *fsm) Apply(l *raft.Log) any {
	res := f.user.Apply(l.Index, l.Data)
	f.advance(l.Index)
	return res
}

// StoreConfiguration is called, in log order, for each configuration entry
// applied: the index moves on as for a command.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.advance(index)
	f.changed()
}

func (f *fsm) advance(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index > f.applied {
		f.applied = index
		close(f.moved)
		f.moved = make(chan struct{})
	}
}

// state returns the applied index and a channel closed when it moves.
func (f *fsm) state() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.moved
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.user.Snapshot()
	if err != nil {
		return nil, err
	}
	index, _ := f.state()
	return &fsmSnapshot{user: s, index: index}, nil
}

func (f *fsm) Restore(r io.ReadCloser) error {
	defer r.Close()
	var head [8]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return fmt.Errorf("group: reading a snapshot's index: %w", err)
	}
	if err := f.user.Restore(r); err != nil {
		return err
	}
	index := binary.BigEndian.Uint64(head[:])
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = index // a restore may move it back: the state is the snapshot's
	close(f.moved)
	f.moved = make(chan struct{})
	return nil
}

type fsmSnapshot struct {
	user  Snapshot
	index uint64
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := binary.Write(sink, binary.BigEndian, s.index)
	if err == nil {
		err = s.user.Persist(sink)
	}
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.user.Release() }

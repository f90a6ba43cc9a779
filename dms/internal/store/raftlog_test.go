package store

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func raftEntries(lo, hi uint64, size int) []*raft.Log {
	var logs []*raft.Log
	for i := lo; i <= hi; i++ {
		logs = append(logs, &raft.Log{
			Index: i, Term: i / 3, Type: raft.LogCommand,
			Data: bytes.Repeat([]byte{byte(i)}, size), Extensions: []byte("x"),
			AppendedAt: time.Unix(1700000000, int64(i)),
		})
	}
	return logs
}

func checkBounds(t *testing.T, l *RaftLog, first, last uint64) {
	t.Helper()
	f, err := l.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	la, err := l.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || la != last {
		t.Fatalf("bounds %d-%d, want %d-%d", f, la, first, last)
	}
}

// TestRaftLogContract checks raft's LogStore semantics: an empty log has
// bounds 0, a missing entry is raft.ErrLogNotFound, entries read back as
// stored, and deleting a prefix or a suffix moves the bounds.
func TestRaftLogContract(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	l, err := db.RaftLog("raft/g/")
	if err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 0, 0)
	var got raft.Log
	if err := l.GetLog(1, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on empty: %v, want ErrLogNotFound", err)
	}
	want := raftEntries(1, 20, 10)
	if err := l.StoreLogs(want); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 20)
	for _, w := range want {
		if err := l.GetLog(w.Index, &got); err != nil {
			t.Fatal(err)
		}
		if got.Index != w.Index || got.Term != w.Term || got.Type != w.Type || !bytes.Equal(got.Data, w.Data) ||
			!bytes.Equal(got.Extensions, w.Extensions) || !got.AppendedAt.Equal(w.AppendedAt) {
			t.Fatalf("entry %d read back as %+v, stored %+v", w.Index, got, *w)
		}
	}
	if err := l.DeleteRange(0, 5); err != nil { // compaction of a prefix
		t.Fatal(err)
	}
	checkBounds(t, l, 6, 20)
	if err := l.GetLog(5, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog of deleted: %v", err)
	}
	if err := l.DeleteRange(15, 1<<63); err != nil { // a follower's conflicting suffix
		t.Fatal(err)
	}
	checkBounds(t, l, 6, 14)
	if err := l.StoreLog(&raft.Log{Index: 100, Term: 9}); err != nil { // after a snapshot: a gap
		t.Fatal(err)
	}
	checkBounds(t, l, 6, 100)
	if err := l.DeleteRange(6, 14); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 100, 100)
	if err := l.DeleteRange(100, 100); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 0, 0)
}

// TestRaftLogSurvivesReopen: bounds and stable values are read back after
// the database is closed and opened again, and two prefixes do not mix.
func TestRaftLogSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	l, err := db.RaftLog("raft/a/")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.StoreLogs(raftEntries(3, 9, 4)); err != nil {
		t.Fatal(err)
	}
	if v, err := l.Get([]byte("absent")); err != nil || len(v) != 0 {
		t.Fatalf("Get of absent key: %q, %v; want empty, nil", v, err)
	}
	if v, err := l.GetUint64([]byte("absent")); err != nil || v != 0 {
		t.Fatalf("GetUint64 of absent key: %d, %v; want 0, nil", v, err)
	}
	if err := l.Set([]byte("LastVoteCand"), []byte("n1")); err != nil {
		t.Fatal(err)
	}
	if err := l.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, dir)
	defer db.Close()
	if l, err = db.RaftLog("raft/a/"); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 3, 9)
	if v, err := l.Get([]byte("LastVoteCand")); err != nil || string(v) != "n1" {
		t.Fatalf("Get: %q, %v", v, err)
	}
	if v, err := l.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("GetUint64: %d, %v", v, err)
	}
	other, err := db.RaftLog("raft/b/")
	if err != nil {
		t.Fatal(err)
	}
	checkBounds(t, other, 0, 0)
}

// TestRaftLogLargeBatch stores a batch larger than one badger transaction
// takes with this database's small tables, and reads all of it back.
func TestRaftLogLargeBatch(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	l, err := db.RaftLog("raft/g/")
	if err != nil {
		t.Fatal(err)
	}
	logs := raftEntries(1, 64, 30<<10) // 64 x 30 KiB: past badger's ~300 KiB batch
	if err := l.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, l, 1, 64)
	var got raft.Log
	for _, w := range logs {
		if err := l.GetLog(w.Index, &got); err != nil || !bytes.Equal(got.Data, w.Data) {
			t.Fatalf("entry %d: %v", w.Index, err)
		}
	}
}

func FuzzDecodeRaftLog(f *testing.F) {
	for _, e := range raftEntries(1, 3, 5) {
		f.Add(encodeRaftLog(e))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e raft.Log
		if decodeRaftLog(b, &e) != nil {
			return
		}
		again := encodeRaftLog(&e)
		var e2 raft.Log
		if err := decodeRaftLog(again, &e2); err != nil || e2.Index != e.Index || !bytes.Equal(e2.Data, e.Data) {
			t.Fatalf("re-encoding %+v failed: %v", e, err)
		}
	})
}

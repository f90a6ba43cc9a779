package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// RaftLog is a raft log and stable store kept in the database under one
// prefix: log entries at prefix+"log/"+index (8 bytes, big-endian, so key
// order is index order) and stable values at prefix+"stable/"+key.
//
// It implements raft.LogStore and raft.StableStore and is safe for
// concurrent use. The first and last index are read from badger once, when
// it is made, and kept in memory after that; nothing else may write under
// its prefix.
type RaftLog struct {
	db     *DB
	log    []byte // prefix+"log/"
	stable []byte // prefix+"stable/"

	mu          sync.Mutex // guards first and last, and orders writes with them
	first, last uint64     // 0, 0: empty
}

var (
	_ raft.LogStore    = (*RaftLog)(nil)
	_ raft.StableStore = (*RaftLog)(nil)
)

// RaftLog opens the raft log and stable store under prefix (which should
// end in "/", e.g. "raft/gw/").
func (d *DB) RaftLog(prefix string) (*RaftLog, error) {
	l := &RaftLog{db: d, log: []byte(prefix + "log/"), stable: []byte(prefix + "stable/")}
	if err := l.loadBounds(); err != nil {
		return nil, err
	}
	return l, nil
}

// loadBounds reads the first and last index from badger: one seek from
// each end of the log's keys. The caller holds mu, or owns l alone.
func (l *RaftLog) loadBounds() error {
	return l.db.db.View(func(txn *badger.Txn) error {
		var err error
		if l.first, err = l.seekIndex(txn, false); err != nil {
			return err
		}
		l.last, err = l.seekIndex(txn, true)
		return err
	})
}

// seekIndex returns the lowest (or, reverse, highest) index stored; 0 if none.
func (l *RaftLog) seekIndex(txn *badger.Txn, reverse bool) (uint64, error) {
	opts := badger.IteratorOptions{PrefetchValues: false, Reverse: reverse, Prefix: l.log}
	it := txn.NewIterator(opts)
	defer it.Close()
	seek := l.logKey(0)
	if reverse {
		seek = l.logKey(^uint64(0))
	}
	it.Seek(seek)
	if !it.Valid() {
		return 0, nil
	}
	key := it.Item().Key()
	if len(key) != len(l.log)+8 {
		return 0, fmt.Errorf("store: raft log: malformed key %q", key)
	}
	return binary.BigEndian.Uint64(key[len(l.log):]), nil
}

func (l *RaftLog) logKey(index uint64) []byte {
	k := make([]byte, len(l.log)+8)
	copy(k, l.log)
	binary.BigEndian.PutUint64(k[len(l.log):], index)
	return k
}

// FirstIndex returns the first index stored, 0 for an empty log.
func (l *RaftLog) FirstIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first, nil
}

// LastIndex returns the last index stored, 0 for an empty log.
func (l *RaftLog) LastIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, nil
}

// GetLog reads the entry at index into out; raft.ErrLogNotFound if absent.
func (l *RaftLog) GetLog(index uint64, out *raft.Log) error {
	b, err := l.db.getRaw(l.logKey(index))
	if errors.Is(err, ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return err
	}
	if err := decodeRaftLog(b, out); err != nil {
		return fmt.Errorf("store: raft log %d: %w", index, err)
	}
	return nil
}

// StoreLog stores one entry.
func (l *RaftLog) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores entries in one badger transaction. A batch larger than
// badger takes in one transaction (ErrTxnTooBig: with this database's small
// tables, a few hundred KiB of small values) is written in several, in
// index order, so a crash in the middle leaves a prefix of the batch:
// raft acknowledged none of it, and a prefix keeps the log contiguous.
func (l *RaftLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	txn := l.db.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	lo, hi := logs[0].Index, logs[0].Index
	for _, e := range logs {
		key, val := l.logKey(e.Index), encodeRaftLog(e)
		if l.db.maxValue > 0 && len(val) > l.db.maxValue {
			return fmt.Errorf("%w: raft log %d: %d bytes, limit %d in memory", ErrTooLarge, e.Index, len(val), l.db.maxValue)
		}
		err := txn.Set(key, val)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = txn.Commit(); err == nil {
				txn = l.db.db.NewTransaction(true)
				err = txn.Set(key, val)
			}
		}
		if err != nil {
			return errors.Join(fmt.Errorf("store: raft log %d: %w", e.Index, err), l.loadBounds())
		}
		lo, hi = min(lo, e.Index), max(hi, e.Index)
	}
	if err := txn.Commit(); err != nil {
		return errors.Join(fmt.Errorf("store: raft log %d-%d: %w", lo, hi, err), l.loadBounds())
	}
	if l.first == 0 || lo < l.first {
		l.first = lo
	}
	l.last = max(l.last, hi)
	return nil
}

// DeleteRange deletes the entries from lo to hi inclusive. Only the keys
// that can exist (within the first and last index) are deleted, without
// reading them; then both bounds are sought again (a log may have gaps
// after a snapshot was installed).
func (l *RaftLog) DeleteRange(lo, hi uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	lo, hi = max(lo, l.first), min(hi, l.last)
	if l.first == 0 || lo > hi {
		return nil
	}
	wb := l.db.db.NewWriteBatch()
	defer wb.Cancel()
	for i := lo; i <= hi; i++ {
		if err := wb.Delete(l.logKey(i)); err != nil {
			return fmt.Errorf("store: deleting raft log %d-%d: %w", lo, hi, err)
		}
		if i == hi { // hi may be the largest uint64
			break
		}
	}
	if err := wb.Flush(); err != nil {
		return errors.Join(fmt.Errorf("store: deleting raft log %d-%d: %w", lo, hi, err), l.loadBounds())
	}
	return l.loadBounds()
}

// Set stores a stable value.
func (l *RaftLog) Set(key, val []byte) error {
	return l.db.putRaw(append(append([]byte{}, l.stable...), key...), val)
}

// Get returns a stable value; an empty one (and no error) if absent, as
// raft.StableStore asks.
func (l *RaftLog) Get(key []byte) ([]byte, error) {
	b, err := l.db.getRaw(append(append([]byte{}, l.stable...), key...))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return b, err
}

// SetUint64 stores a stable number.
func (l *RaftLog) SetUint64(key []byte, val uint64) error {
	return l.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns a stable number, 0 if absent.
func (l *RaftLog) GetUint64(key []byte) (uint64, error) {
	b, err := l.Get(key)
	if err != nil || len(b) == 0 {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("store: raft stable %q: %d bytes, not a uint64", key, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// encodeRaftLog writes an entry as: uvarint index, uvarint term, one byte
// type, uvarint length and data, uvarint length and extensions, varint
// appendedAt in Unix nanoseconds (0: none).
func encodeRaftLog(e *raft.Log) []byte {
	b := make([]byte, 0, 3*binary.MaxVarintLen64+1+len(e.Data)+len(e.Extensions)+2*binary.MaxVarintLen32)
	b = binary.AppendUvarint(b, e.Index)
	b = binary.AppendUvarint(b, e.Term)
	b = append(b, byte(e.Type))
	b = binary.AppendUvarint(b, uint64(len(e.Data)))
	b = append(b, e.Data...)
	b = binary.AppendUvarint(b, uint64(len(e.Extensions)))
	b = append(b, e.Extensions...)
	var at int64
	if !e.AppendedAt.IsZero() {
		at = e.AppendedAt.UnixNano()
	}
	return binary.AppendVarint(b, at)
}

var errRaftLogCorrupt = errors.New("store: raft log entry corrupt")

func decodeRaftLog(b []byte, e *raft.Log) error {
	d := decoder{b: b}
	e.Index = d.uvarint()
	e.Term = d.uvarint()
	e.Type = raft.LogType(d.byte())
	e.Data = d.bytes()
	e.Extensions = d.bytes()
	at := d.varint()
	if d.bad || len(d.b) != 0 {
		return errRaftLogCorrupt
	}
	e.AppendedAt = time.Time{}
	if at != 0 {
		e.AppendedAt = time.Unix(0, at)
	}
	return nil
}

// decoder reads what encodeRaftLog wrote; bad is set at the first short or
// malformed field, after which every read returns zero.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

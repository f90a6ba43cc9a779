package wasm

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

const pageSize = 64 << 10

// memory is the linear memory of one run, handed to wazero through
// experimental.WithMemoryAllocator. It refuses to grow past limit, so the
// guest's memory.grow returns -1, and remembers that it refused. A module
// has at most one memory, so the allocator is also the memory.
type memory struct {
	limit   uint64
	buf     []byte
	refused uint64 // the largest size refused; 0 if none
	// size is the largest size handed out: a linear memory never
	// shrinks, so its size at the end, the run's peak.
	size uint64
	// used counts the growth in the memory of every run it is shared
	// with (a warm instance's calls); the run takes size back out of it
	// when it ends (done).
	used *gauge
}

// gauge is the linear memory of the runs in flight that share it, and the
// most it ever was.
type gauge struct{ now, peak atomic.Int64 }

func (g *gauge) add(n int64) {
	now := g.now.Add(n)
	for p := g.peak.Load(); now > p && !g.peak.CompareAndSwap(p, now); p = g.peak.Load() {
	}
}

// done takes the run's memory out of its gauge, once it has ended.
func (m *memory) done() { m.used.add(-int64(m.size)) }

var (
	_ experimental.MemoryAllocator = (*memory)(nil)
	_ experimental.LinearMemory    = (*memory)(nil)
)

// buffers recycles the backing arrays of finished runs' memories: a run of
// a Go module grows megabytes of memory, and allocating them afresh for
// every run was most of the garbage a run made.
var buffers sync.Pool // of *[]byte

// Allocate implements experimental.MemoryAllocator.
func (m *memory) Allocate(capacity, _ uint64) experimental.LinearMemory {
	want := min(capacity, m.limit)
	if p, ok := buffers.Get().(*[]byte); ok {
		if c := uint64(cap(*p)); c >= want && c <= m.limit { // never more than the run may use
			m.buf = (*p)[:0]
			return m
		}
		buffers.Put(p)
	}
	m.buf = make([]byte, 0, want)
	return m
}

// Reallocate implements experimental.LinearMemory. Like append, it leaves a
// quarter of room to grow into, so growth is amortized; never past the limit.
func (m *memory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.refused = max(m.refused, size)
		return nil
	}
	old := uint64(len(m.buf))
	if size > uint64(cap(m.buf)) {
		grown := make([]byte, size, min(size+size/4, m.limit))
		copy(grown, m.buf)
		m.buf = grown
	} else if size > old {
		clear(m.buf[old:size]) // a recycled array holds an earlier run's bytes
	}
	m.buf = m.buf[:size]
	if size > m.size {
		m.used.add(int64(size - m.size))
		m.size = size
	}
	return m.buf
}

// Free implements experimental.LinearMemory: the array goes back to the
// pool for the next run.
func (m *memory) Free() {
	if cap(m.buf) > 0 {
		buf := m.buf[:0]
		buffers.Put(&buf)
	}
	m.buf = nil
}

// errSections is returned by initialMemory for a module whose sections
// cannot be read.
var errSections = errors.New("truncated section")

// initialMemory returns the bytes a module's own memory starts with (0 when
// it defines none), read from the memory section of the binary. The run
// refuses to start a module that needs more than its limit, which the
// allocator could not refuse without wazero panicking.
func initialMemory(bin []byte) (uint64, error) {
	const memorySection = 5
	r := reader(bin[min(8, len(bin)):]) // skip the magic number and version
	for len(r) > 0 {
		id, size := r.byte(), r.uint()
		if uint64(len(r)) < size {
			return 0, errSections
		}
		section := r[:size]
		r = r[size:]
		if id != memorySection {
			continue
		}
		if section.uint() == 0 { // the count of memories
			return 0, nil
		}
		section.byte() // the limits' flags
		return section.uint() * pageSize, nil
	}
	return 0, nil
}

// reader reads a Wasm binary; reads past the end give zeros.
type reader []byte

func (r *reader) byte() byte {
	if len(*r) == 0 {
		return 0
	}
	b := (*r)[0]
	*r = (*r)[1:]
	return b
}

// uint reads an unsigned LEB128 number.
func (r *reader) uint() uint64 {
	v, n := binary.Uvarint(*r)
	if n <= 0 {
		*r = nil
		return 0
	}
	*r = (*r)[n:]
	return v
}

package wasm

import (
	"bytes"
	"testing"
)

func TestMemoryRefusesPastLimit(t *testing.T) {
	m := &memory{limit: 4 * pageSize, used: &gauge{}}
	lm := m.Allocate(pageSize, 1<<32)
	b := lm.Reallocate(pageSize)
	copy(b, "kept")
	if b = lm.Reallocate(3 * pageSize); len(b) != 3*pageSize || !bytes.HasPrefix(b, []byte("kept")) {
		t.Fatalf("grown to %d bytes, prefix %q", len(b), b[:4])
	}
	if cap(b) > 4*pageSize {
		t.Fatalf("capacity %d past the limit", cap(b))
	}
	if lm.Reallocate(5*pageSize) != nil || m.refused != 5*pageSize {
		t.Fatalf("growth past the limit allowed; refused %d", m.refused)
	}
	if b = lm.Reallocate(4 * pageSize); len(b) != 4*pageSize {
		t.Fatalf("growth to the limit refused: %d", len(b))
	}
	lm.Free()
	if m.buf != nil {
		t.Fatal("Free kept the buffer")
	}
	if m.size != 4*pageSize || m.used.peak.Load() != 4*pageSize {
		t.Fatalf("peak %d, gauge's %d; want %d", m.size, m.used.peak.Load(), 4*pageSize)
	}
}

// TestGaugeSumsMemoriesInFlight: memories that share a gauge count
// together while both live, and each leaves it when done.
func TestGaugeSumsMemoriesInFlight(t *testing.T) {
	g := &gauge{}
	a, b := &memory{limit: 8 * pageSize, used: g}, &memory{limit: 8 * pageSize, used: g}
	a.Allocate(pageSize, 1<<32).Reallocate(2 * pageSize)
	b.Allocate(pageSize, 1<<32).Reallocate(3 * pageSize)
	a.done()
	b.Reallocate(4 * pageSize)
	b.done()
	if now, peak := g.now.Load(), g.peak.Load(); now != 0 || peak != 5*pageSize {
		t.Fatalf("gauge now %d, peak %d; want 0 and %d", now, peak, 5*pageSize)
	}
}

func TestInitialMemory(t *testing.T) {
	cases := []struct {
		bin  []byte
		want uint64
	}{
		{command(7), 7 * pageSize},
		{command(300), 300 * pageSize}, // a two-byte LEB128
		{module(typeSection, funcSection, startExport, code()), 0},
		{module(typeSection, section(5, 0)), 0},
	}
	for _, c := range cases {
		if got, err := initialMemory(c.bin); err != nil || got != c.want {
			t.Errorf("initialMemory = %d, %v; want %d", got, err, c.want)
		}
	}
	if _, err := initialMemory(append(module(), 5, 10, 1)); err == nil {
		t.Error("a truncated section was read")
	}
}

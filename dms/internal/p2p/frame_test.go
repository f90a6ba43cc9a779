package p2p

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range [][]byte{{}, []byte("x"), bytes.Repeat([]byte("ab"), 300)} {
		if err := WriteFrame(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for _, want := range []int{0, 1, 600} {
		b, err := ReadFrame(r, 1000)
		if err != nil || len(b) != want {
			t.Fatalf("got %d bytes, %v; want %d", len(b), err, want)
		}
	}
	if _, err := ReadFrame(r, 1000); err != io.EOF {
		t.Fatalf("at end: got %v, want io.EOF", err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"over limit":     {binary.AppendUvarint(nil, 11), ErrFrameTooLarge},
		"truncated body": {append(binary.AppendUvarint(nil, 5), "abc"...), io.ErrUnexpectedEOF},
		"truncated len":  {[]byte{0x80}, io.ErrUnexpectedEOF},
		"len overflow":   {bytes.Repeat([]byte{0xff}, 11), nil},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ReadFrame(bufio.NewReader(bytes.NewReader(tc.in)), 10)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReadFrameDoesNotAllocateClaimedSize announces 64 MiB over a 1 KiB limit:
// the reader must refuse it from the prefix alone.
func TestReadFrameDoesNotAllocateClaimedSize(t *testing.T) {
	in := append(binary.AppendUvarint(nil, 64<<20), make([]byte, 16)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadFrame(bufio.NewReaderSize(bytes.NewReader(in), 16), 1024)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
		t.Fatalf("allocated %d bytes for a refused frame", d)
	}
}

// TestReadFrameLargeGrowsWithTheBytes reads a frame over frameChunk whole,
// and refuses one cut short having allocated about what arrived, not the
// 4 MiB it announced.
func TestReadFrameLargeGrowsWithTheBytes(t *testing.T) {
	const size = 4 << 20
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	var buf bytes.Buffer
	if err := WriteFrame(&buf, body); err != nil {
		t.Fatal(err)
	}
	b, err := ReadFrame(bufio.NewReader(&buf), size)
	if err != nil || !bytes.Equal(b, body) {
		t.Fatalf("got %d bytes, %v; want the %d sent", len(b), err, size)
	}
	short := append(binary.AppendUvarint(nil, size), make([]byte, 1000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = ReadFrame(bufio.NewReaderSize(bytes.NewReader(short), 16), size)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 256<<10 {
		t.Fatalf("allocated %d bytes for a frame of which 1000 bytes came", d)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0x00})
	f.Add(append([]byte{0x05}, "hello"...))
	f.Add(append([]byte{0x80, 0x01}, bytes.Repeat([]byte{'a'}, 128)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 256
		b, err := ReadFrame(bufio.NewReader(bytes.NewReader(data)), limit)
		if err != nil {
			return
		}
		if len(b) > limit {
			t.Fatalf("returned %d bytes over the %d limit", len(b), limit)
		}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, b); err != nil {
			t.Fatal(err)
		}
		again, err := ReadFrame(bufio.NewReader(&buf), limit)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

package p2p

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// A frame is a uvarint length followed by that many bytes. A zero-length
// frame on a request/response stream is an ack: "handled, no reply message".
// WriteFrame and ReadFrame are exported for the hostile test peer
// (dms/internal/hostile), which speaks the wire format itself.

// ByteReader is what ReadFrame needs: a *bufio.Reader satisfies it.
type ByteReader interface {
	io.Reader
	io.ByteReader
}

// WriteFrame writes b as one frame with a single Write.
func WriteFrame(w io.Writer, b []byte) error {
	buf := make([]byte, 0, binary.MaxVarintLen64+len(b))
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	buf = append(buf, b...)
	_, err := w.Write(buf)
	return err
}

// frameChunk is the largest frame read into a buffer of its announced
// length at once; a larger one (an invocation naming many input files)
// is read into a buffer that grows with the bytes received, so that a peer
// announcing large frames it never sends costs no memory.
const frameChunk = 64 << 10

// ReadFrame reads one frame of at most limit bytes. The length prefix is
// checked against limit before anything is allocated. It returns io.EOF only
// when the stream ends cleanly between frames.
func ReadFrame(r ByteReader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		return nil, fmt.Errorf("p2p: frame length: %w", err)
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, limit)
	}
	var b []byte
	if n <= frameChunk {
		b = make([]byte, n)
		_, err = io.ReadFull(r, b)
	} else {
		buf := bytes.NewBuffer(make([]byte, 0, frameChunk))
		_, err = io.CopyN(buf, r, int64(n))
		b = buf.Bytes()
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("p2p: frame body: %w", err)
	}
	return b, nil
}

// idleReader refreshes the stream's read deadline before every read, so a
// peer that stops sending for timeout is cut off.
type idleReader struct {
	s       network.Stream
	timeout time.Duration
}

func (r idleReader) Read(p []byte) (int, error) {
	if err := r.s.SetReadDeadline(time.Now().Add(r.timeout)); err != nil {
		return 0, err
	}
	return r.s.Read(p)
}

// idleWriter writes in chunks, refreshing the write deadline before each, so
// a large write is bounded by the peer's progress rather than a fixed total.
type idleWriter struct {
	s       network.Stream
	timeout time.Duration
}

const writeChunk = 64 << 10

func (w idleWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		c := p[:min(len(p), writeChunk)]
		if err := w.s.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
			return n, err
		}
		m, err := w.s.Write(c)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

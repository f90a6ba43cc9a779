package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/opendms/dms/types"
)

// BlobStore holds content-addressed blobs. Implementations must be safe for
// concurrent use.
type BlobStore interface {
	// Put stores data and returns its CID (types.CIDOf).
	Put(data []byte) (string, error)
	// Get returns the blob named cid; it is called only after Has is true.
	Get(cid string) ([]byte, error)
	// Has reports whether the blob is stored.
	Has(cid string) bool
}

// blobHeader precedes the raw bytes of a blob reply.
type blobHeader struct {
	Status blobStatus `json:"status"`
	Size   int64      `json:"size,omitempty"` // with blobFound: the number of raw bytes that follow
}

type blobStatus string

const (
	blobFound    blobStatus = "found"
	blobNotFound blobStatus = "not_found"
	blobTooLarge blobStatus = "too_large" // over the server's limit
)

// maxBlobHeader bounds the header frame.
const maxBlobHeader = 256

// ServeBlobs serves store on BlobProtocol to any peer whose signed
// BlobRequest verifies; blobs over maxSize bytes are refused.
func (h *Host) ServeBlobs(store BlobStore, maxSize int64) {
	kinds, _ := protocolKinds(BlobProtocol)
	h.host.SetStreamHandler(BlobProtocol, h.inbound(true, func(_ context.Context, s network.Stream) {
		h.serveBlob(s, kinds, store, maxSize)
	}))
}

func (h *Host) serveBlob(s network.Stream, kinds []types.Kind, store BlobStore, maxSize int64) {
	_, msg, err := h.readRequest(s, kinds)
	if err != nil {
		return
	}
	data, status, err := lookupBlob(store, msg.(*types.BlobRequest).CID, maxSize)
	if err != nil {
		h.cfg.Logger.Warn("p2p: blob store", "err", err)
		_ = s.Reset()
		return
	}
	if err := writeBlobReply(idleWriter{s: s, timeout: h.cfg.IOTimeout}, status, data); err != nil {
		_ = s.Reset()
		return
	}
	h.traffic.frame(BlobProtocol)
	_ = s.Close()
}

// writeBlobReply writes a blob reply: the header frame, then data.
func writeBlobReply(w io.Writer, status blobStatus, data []byte) error {
	hdr, err := json.Marshal(blobHeader{Status: status, Size: int64(len(data))})
	if err != nil {
		return err
	}
	if err := WriteFrame(w, hdr); err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// lookupBlob returns the blob to send, or the status saying why there is none.
func lookupBlob(store BlobStore, c string, maxSize int64) ([]byte, blobStatus, error) {
	if !store.Has(c) {
		return nil, blobNotFound, nil
	}
	data, err := store.Get(c)
	if err != nil {
		return nil, "", fmt.Errorf("p2p: get blob %s: %w", c, err)
	}
	if int64(len(data)) > maxSize {
		return nil, blobTooLarge, nil
	}
	return data, blobFound, nil
}

// FetchBlob fetches the blob c from peer from and verifies it against c.
// Errors: ErrBlobNotFound, ErrBlobTooLarge (over maxSize here, or over the
// peer's limit), types.ErrCIDMismatch, ErrBadCID, or a transport error. The
// buffer grows with the bytes received, not with the size the peer announced.
func (h *Host) FetchBlob(ctx context.Context, from string, addrs []string, c string, maxSize int64) ([]byte, error) {
	id, err := parseCID(c)
	if err != nil {
		return nil, err
	}
	s, err := h.openStream(ctx, from, addrs, BlobProtocol)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	data, err := h.fetch(s, c, maxSize)
	if err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("p2p: fetch blob %s from %s: %w", c, from, orCtx(ctx, err))
	}
	_ = s.Close()
	if err := types.VerifyCID(id, data); err != nil {
		return nil, fmt.Errorf("p2p: blob from %s: %w", from, err)
	}
	return data, nil
}

// fetch sends the request and reads the header and the bytes.
func (h *Host) fetch(s network.Stream, c string, maxSize int64) ([]byte, error) {
	if err := h.writeMessage(s, &types.BlobRequest{CID: c}); err != nil {
		return nil, err
	}
	_ = s.CloseWrite()
	return readBlobReply(bufio.NewReader(idleReader{s: s, timeout: h.cfg.IOTimeout}), maxSize)
}

// readBlobReply reads what writeBlobReply wrote: the header frame, then the
// bytes it announces, at most maxSize. Errors: ErrBlobNotFound,
// ErrBlobTooLarge, ErrBadReply (a header that does not parse or makes no
// sense) or ErrNoReply (the reply ended early).
func readBlobReply(r ByteReader, maxSize int64) ([]byte, error) {
	b, err := ReadFrame(r, maxBlobHeader)
	if err != nil {
		return nil, replyErr(err)
	}
	var hdr blobHeader
	if err := json.Unmarshal(b, &hdr); err != nil {
		return nil, fmt.Errorf("%w: blob header: %w", ErrBadReply, err)
	}
	switch {
	case hdr.Status == blobNotFound:
		return nil, ErrBlobNotFound
	case hdr.Status == blobTooLarge:
		return nil, fmt.Errorf("%w: over the peer's limit", ErrBlobTooLarge)
	case hdr.Status != blobFound || hdr.Size < 0:
		return nil, fmt.Errorf("%w: blob header %+v", ErrBadReply, hdr)
	case hdr.Size > maxSize:
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBlobTooLarge, hdr.Size, maxSize)
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, hdr.Size); err != nil {
		return nil, fmt.Errorf("%w: blob body: %w", ErrNoReply, err)
	}
	return buf.Bytes(), nil
}

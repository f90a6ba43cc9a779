package p2p

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

func TestBlobReplyRoundTrip(t *testing.T) {
	for name, tc := range map[string]struct {
		status blobStatus
		data   []byte
		want   error
	}{
		"found":     {blobFound, []byte("hello"), nil},
		"empty":     {blobFound, nil, nil},
		"not found": {blobNotFound, nil, ErrBlobNotFound},
		"too large": {blobTooLarge, nil, ErrBlobTooLarge},
		"over here": {blobFound, bytes.Repeat([]byte("x"), 11), ErrBlobTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeBlobReply(&buf, tc.status, tc.data); err != nil {
				t.Fatal(err)
			}
			got, err := readBlobReply(bufio.NewReader(&buf), 10)
			if !errors.Is(err, tc.want) || (tc.want == nil && !bytes.Equal(got, tc.data)) {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.data, tc.want)
			}
		})
	}
}

// FuzzReadBlobReply feeds the blob client arbitrary replies: it never
// panics, every error is one of the blob sentinels, and a blob it accepts is
// within the limit, is bytes the peer sent, and survives the server's
// encoding unchanged. Seeds are in testdata/fuzz/FuzzReadBlobReply.
func FuzzReadBlobReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, reply []byte) {
		const limit = 1 << 10
		data, err := readBlobReply(bufio.NewReader(bytes.NewReader(reply)), limit)
		if err != nil {
			for _, sentinel := range []error{ErrBlobNotFound, ErrBlobTooLarge, ErrBadReply, ErrNoReply} {
				if errors.Is(err, sentinel) {
					return
				}
			}
			t.Fatalf("error %v wraps no blob sentinel", err)
		}
		if len(data) > limit || !bytes.Contains(reply, data) {
			t.Fatalf("accepted %d bytes that are over the limit or not in the reply", len(data))
		}
		var buf bytes.Buffer
		if err := writeBlobReply(&buf, blobFound, data); err != nil {
			t.Fatal(err)
		}
		again, err := readBlobReply(bufio.NewReader(&buf), limit)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("round trip: %q, %v; want %q", again, err, data)
		}
	})
}

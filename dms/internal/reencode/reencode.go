// Package reencode writes a signed envelope in other bytes that decode to
// the same envelope under the same signature, as an attacker replaying
// copies of an honest message would: for the adversarial tests of the
// gossip validator (package p2p) and of whole networks (package dms, with
// the hostile peer). It is for tests only.
package reencode

import (
	"fmt"
	"maps"
	"slices"

	"github.com/fxamacker/cbor/v2"
)

// Envelope returns an encoding of the envelope in data that differs from
// data and from the other variants below 2,880, but decodes to the same
// envelope under the same signature: CBOR lets a writer give a map's size
// in a longer form than the shortest (variant%4 picks one of the four) and
// its keys in any order (variant/4 picks one of the 720 orders of the
// envelope's six). The body, which the signature covers byte for byte, is
// kept as it is.
func Envelope(data []byte, variant int) ([]byte, error) {
	var fields map[string]cbor.RawMessage
	if err := cbor.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("reencode: %w", err)
	}
	keys := slices.Sorted(maps.Keys(fields))
	n := len(keys)
	if n >= 24 {
		return nil, fmt.Errorf("reencode: a map of %d fields", n)
	}
	// A map of n < 24 pairs is 0xa0+n at its shortest; 0xb8..0xbb give n
	// in 1, 2, 4 or 8 bytes after them.
	width := 1 << (variant % 4)
	b := append([]byte{0xb8 + byte(variant%4)}, make([]byte, width-1)...)
	b = append(b, byte(n))
	for i := variant / 4; len(keys) > 0; i /= len(keys) + 1 { // the order numbered i
		k := keys[i%len(keys)]
		keys = slices.Delete(keys, i%len(keys), i%len(keys)+1)
		name, err := cbor.Marshal(k)
		if err != nil {
			return nil, err
		}
		b = append(append(b, name...), fields[k]...)
	}
	return b, nil
}

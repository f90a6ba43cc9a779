package types

import (
	"fmt"
	"math"

	"github.com/fxamacker/cbor/v2"
)

// Envelopes and message bodies travel as CBOR (RFC 8949), written by the
// same struct tags as their JSON (the API's encoding): map keys are the
// JSON field names, so `cbor2diag` or any CBOR reader shows a message as
// its JSON would. Measured on the project's messages (docs/benchmarks.md),
// encoding and decoding a bid request take 2 us instead of JSON's 18.
//
// Writing is deterministic (RFC 8949 section 4.2.1: shortest forms, map
// keys sorted), so encoding a message twice gives the same bytes: a
// receipt's digest (ReceiptDigest) is taken over its body, and the
// provider recomputes it from its own copy. Times are written as RFC 3339
// text with nanoseconds, exact as JSON wrote them (a reader also takes
// CBOR's other form, seconds since the epoch); durations, sizes,
// millicores and credits are integers, a negative size or CPU refused.
//
// Reading is strict, as JSON's was with DisallowUnknownFields: an unknown
// field, a key given twice, an indefinite length, a tag or invalid UTF-8
// is an error, as is anything after the message. A reader does not insist
// on the shortest forms: two encodings of one envelope may differ, which
// is why replay protection keys on the nonce, never on the bytes.
var (
	encoding = func() cbor.EncMode {
		o := cbor.CoreDetEncOptions()
		o.Time = cbor.TimeRFC3339Nano
		m, err := o.EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decoding = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
			MaxNestedLevels:   16,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// EncodeBody encodes msg as an envelope's body: how a message that is not
// signed (Signed) travels on a stream its connection authenticates, and
// the bytes a signature and a receipt's digest cover. Equal messages
// encode to equal bytes.
func EncodeBody(msg Message) ([]byte, error) {
	b, err := encoding.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("types: encoding %s: %w", msg.Kind(), err)
	}
	return b, nil
}

// UnmarshalCBOR reads millicores as an integer and refuses what ParseCPU
// refuses: a negative count or one beyond an int32.
func (m *MilliCPU) UnmarshalCBOR(data []byte) error {
	v, err := decodeCount(data, math.MaxInt32, "millicores")
	if err == nil {
		*m = MilliCPU(v)
	}
	return err
}

// UnmarshalCBOR reads a byte count as an integer and refuses a negative
// one, as ParseBytes does.
func (b *Bytes) UnmarshalCBOR(data []byte) error {
	v, err := decodeCount(data, math.MaxInt64, "bytes")
	if err == nil {
		*b = Bytes(v)
	}
	return err
}

// decodeCount reads an integer from 0 to limit, as strictly as a message.
func decodeCount(data []byte, limit int64, unit string) (int64, error) {
	var v int64
	if err := decoding.Unmarshal(data, &v); err != nil {
		return 0, err
	}
	if v < 0 || v > limit {
		return 0, fmt.Errorf("%w: %d %s", ErrBadSize, v, unit)
	}
	return v, nil
}

package types

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// MaxEnvelopeSize bounds an encoded envelope of every kind but those of
// MaxTaskEnvelopeSize. Anything larger is rejected before it is parsed:
// blobs travel outside envelopes.
const MaxEnvelopeSize = 256 << 10

// MaxTaskEnvelopeSize bounds an encoded Invocation or Status: a task names
// up to MaxInputFiles input files (MaxInputFilesSize as JSON), and a
// result up to 1,000 output files with their sizes. Only the streams that
// carry them (invocations, cancels, status queries) read frames this large.
const MaxTaskEnvelopeSize = 4 << 20

// EnvelopeLimit returns the largest encoded envelope of kind k.
func EnvelopeLimit(k Kind) int {
	if k == KindInvocation || k == KindStatus {
		return MaxTaskEnvelopeSize
	}
	return MaxEnvelopeSize
}

// Envelope carries one signed Message. The signature covers the kind, the
// sender, the nonce, the expiry and the body, under a domain-separation tag.
// On the wire it is a CBOR map of these six fields (codec.go), its body a
// byte string holding the message's CBOR (EncodeBody).
type Envelope struct {
	Kind   Kind   `json:"kind"`
	From   string `json:"from"`   // did:key of the signer
	Nonce  string `json:"nonce"`  // 16 random bytes, hex; replay protection is the receiver's
	Expiry int64  `json:"expiry"` // unix nanoseconds
	Body   []byte `json:"body"`
	Sig    []byte `json:"sig"`
}

const envelopeDomain = "dms/envelope/v1"

// Seal signs msg with key; the envelope expires ttl after now.
func Seal(key ed25519.PrivateKey, msg Message, now time.Time, ttl time.Duration) (*Envelope, error) {
	body, err := EncodeBody(msg)
	if err != nil {
		return nil, err
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("types: nonce: %w", err)
	}
	e := &Envelope{
		Kind:   msg.Kind(),
		From:   DIDFromPublicKey(key.Public().(ed25519.PublicKey)),
		Nonce:  hex.EncodeToString(nonce[:]),
		Expiry: now.Add(ttl).UnixNano(),
		Body:   body,
	}
	e.Sig = ed25519.Sign(key, e.signingBytes())
	return e, nil
}

// signingBytes is the length-prefixed concatenation of every signed field,
// so no two different envelopes share signing bytes.
func (e *Envelope) signingBytes() []byte {
	b := make([]byte, 0, 5*binary.MaxVarintLen64+len(envelopeDomain)+len(e.Kind)+len(e.From)+len(e.Nonce)+len(e.Body)+8)
	b = appendField(b, envelopeDomain)
	b = appendField(b, string(e.Kind))
	b = appendField(b, e.From)
	b = appendField(b, e.Nonce)
	b = binary.AppendUvarint(b, uint64(len(e.Body)))
	b = append(b, e.Body...)
	return binary.BigEndian.AppendUint64(b, uint64(e.Expiry))
}

func appendField(b []byte, f string) []byte {
	b = binary.AppendUvarint(b, uint64(len(f)))
	return append(b, f...)
}

// ExpiresAt returns the envelope's expiry.
func (e *Envelope) ExpiresAt() time.Time { return time.Unix(0, e.Expiry) }

// Verify checks the signature against From and the expiry against now.
func (e *Envelope) Verify(now time.Time) error {
	pub, err := PublicKeyFromDID(e.From)
	if err != nil {
		return err
	}
	if len(e.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, e.signingBytes(), e.Sig) {
		return fmt.Errorf("%w: %s from %s", ErrBadSignature, e.Kind, e.From)
	}
	return e.checkExpiry(now)
}

func (e *Envelope) checkExpiry(now time.Time) error {
	if !now.Before(e.ExpiresAt()) {
		return fmt.Errorf("%w: %s from %s expired at %s", ErrExpired, e.Kind, e.From, e.ExpiresAt().UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// Open verifies the envelope and decodes its message. Unknown kinds and
// unknown fields in the body are errors.
func (e *Envelope) Open(now time.Time) (Message, error) {
	if err := e.Verify(now); err != nil {
		return nil, err
	}
	return e.decode()
}

// OpenSealed is Open for an envelope this process sealed itself (Seal,
// then maybe Marshal and UnmarshalEnvelope): it checks the expiry and
// decodes the message, but does not verify the signature, which is its
// own. Never call it on an envelope that came from elsewhere.
func (e *Envelope) OpenSealed(now time.Time) (Message, error) {
	if err := e.checkExpiry(now); err != nil {
		return nil, err
	}
	return e.decode()
}

func (e *Envelope) decode() (Message, error) { return DecodeBody(e.Kind, e.Body) }

// DecodeBody decodes the body of a message of kind k, as an envelope's
// (unknown kinds and unknown fields are errors): how a message that is not
// signed (Signed) travels on a stream its connection authenticates.
func DecodeBody(k Kind, body []byte) (Message, error) {
	msg, ok := newMessage(k)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKind, k)
	}
	if err := decoding.Unmarshal(body, msg); err != nil {
		return nil, fmt.Errorf("%w: %s body: %w", ErrMalformed, k, err)
	}
	return msg, nil
}

// Signed reports whether msg must travel as a signed envelope (DESIGN.md,
// what is signed): a message a third party relays or someone may need
// later as evidence. Bid requests, bids (a price commitment), accepts and
// confirms (the contract), a final status (the result quorums and
// disputes rest on), receipts and their acks (invoices), capability
// records and invocations (what the provider was asked to run, under
// which epoch) are signed. Every other message on a direct stream
// (declines, rejects, cancels, status queries and non-final statuses,
// trace queries and spans) is authenticated by its connection.
func Signed(msg Message) bool {
	switch m := msg.(type) {
	case *Decline, *Reject, *Cancel, *StatusQuery, *TraceQuery, *TraceSpans:
		return false
	case *Status:
		return m.State.Terminal()
	}
	return true
}

// Marshal encodes the envelope for the wire.
func (e *Envelope) Marshal() ([]byte, error) {
	b, err := encoding.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("types: encoding envelope: %w", err)
	}
	if limit := EnvelopeLimit(e.Kind); len(b) > limit {
		return nil, fmt.Errorf("%w: %s envelope is %d bytes, limit %d", ErrTooLarge, e.Kind, len(b), limit)
	}
	return b, nil
}

// UnmarshalEnvelope decodes an envelope from the wire without verifying
// it. An envelope over its kind's limit (EnvelopeLimit) is refused; one
// over the largest is refused before it is parsed.
func UnmarshalEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxTaskEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxTaskEnvelopeSize)
	}
	var e Envelope
	if err := decoding.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	if e.Kind == "" || e.From == "" || e.Nonce == "" {
		return nil, fmt.Errorf("%w: envelope lacks kind, from or nonce", ErrMalformed)
	}
	if len(e.Sig) == 0 {
		return nil, fmt.Errorf("%w: %s from %s", ErrUnsigned, e.Kind, e.From)
	}
	if limit := EnvelopeLimit(e.Kind); len(b) > limit {
		return nil, fmt.Errorf("%w: %s envelope of %d bytes, limit %d", ErrTooLarge, e.Kind, len(b), limit)
	}
	return &e, nil
}

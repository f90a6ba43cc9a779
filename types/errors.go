package types

import (
	"errors"
	"fmt"
)

var (
	// ErrCIDMismatch means content did not hash to the CID it was fetched by.
	ErrCIDMismatch = errors.New("types: content does not match its CID")
	// ErrBadSignature means an envelope's signature does not verify.
	ErrBadSignature = errors.New("types: bad signature")
	// ErrExpired means an envelope's expiry has passed.
	ErrExpired = errors.New("types: message expired")
	// ErrTooLarge means a message or frame is over its size limit.
	ErrTooLarge = errors.New("types: message too large")
	// ErrMalformed means a message could not be decoded.
	ErrMalformed = errors.New("types: malformed message")
	// ErrUnsigned means an envelope names its kind and sender but carries
	// no signature: a message of a kind that travels bare, sent where an
	// envelope must be (ErrMalformed wraps it too).
	ErrUnsigned = fmt.Errorf("%w: envelope not signed", ErrMalformed)
	// ErrUnknownKind means an envelope names a message kind this version does not know.
	ErrUnknownKind = errors.New("types: unknown message kind")
	// ErrBadSize means a byte quantity could not be parsed.
	ErrBadSize = errors.New("types: bad size")
	// ErrBadCredits means an amount of credits could not be parsed, or a
	// cost was asked for a negative price or quantity.
	ErrBadCredits = errors.New("types: bad amount of credits")
	// ErrCreditsOverflow means arithmetic on credits went beyond their range.
	ErrCreditsOverflow = errors.New("types: credits overflow")
	// ErrBadUsage means a Usage cannot be a measurement (Usage.Check).
	ErrBadUsage = errors.New("types: impossible usage")
)

package policy

import (
	"errors"
	"strconv"
)

// ErrInvalid matches every error ParseWindow, ParsePrefix, LoadZone,
// ClientIP and Policy.Validate return: the input was malformed, so an HTTP
// layer answers 400.
var ErrInvalid = errors.New("policy: invalid")

// maxQuoted bounds how much of a bad input an error message repeats.
const maxQuoted = 64

// quote is s in Go quotes for an error message, cut to maxQuoted bytes so a
// huge input does not make a huge message.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + "..."
}

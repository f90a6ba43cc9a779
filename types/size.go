package types

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Bytes is a quantity of bytes. It reads and writes as a human size ("64MiB",
// "1.5GB", "4096"), so configs and job specs stay readable.
type Bytes int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	// Longest suffixes first so "MiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"PiB", 1 << 50},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15},
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15},
	{"B", 1},
}

// ParseBytes parses a size such as "64MiB", "1.5 GB", "512Ki" or "4096".
// Binary suffixes (KiB, MiB, ...) are powers of 1024, decimal ones (KB, MB, ...)
// powers of 1000. Negative sizes and sizes past 8 EiB are errors.
func ParseBytes(s string) (Bytes, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("%w: empty", ErrBadSize)
	}
	mult := 1.0
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%w: %q (want a number with an optional unit such as 64MiB or 2GB)", ErrBadSize, s)
	}
	if v < 0 {
		return 0, fmt.Errorf("%w: %q is negative", ErrBadSize, s)
	}
	n := v * mult
	if n >= math.MaxInt64 {
		return 0, fmt.Errorf("%w: %q is too large", ErrBadSize, s)
	}
	return Bytes(n), nil
}

// String formats b with the largest binary unit that keeps it at or above 1,
// e.g. "64 MiB", "900 TiB", "1.5 GiB".
func (b Bytes) String() string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(b)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%d %s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// MarshalJSON writes b as a plain byte count, so the wire stays exact.
func (b Bytes) MarshalJSON() ([]byte, error) { return []byte(strconv.FormatInt(int64(b), 10)), nil }

// UnmarshalJSON accepts a byte count (a JSON number) or a size string.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	return b.UnmarshalText([]byte(strings.Trim(string(data), `"`)))
}

// UnmarshalText accepts a byte count or any size ParseBytes accepts (YAML uses it).
func (b *Bytes) UnmarshalText(text []byte) error {
	v, err := ParseBytes(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

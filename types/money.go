package types

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Credits is an amount of money, or a price, in micro-credits: Credit is
// one credit, MicroCredit the smallest amount there is. Money is exact: it
// is never held in a float, it reads and writes as a decimal with at most
// six decimals ("12", "1.25", "0.000001"), and its arithmetic (Add, Sub,
// Mul, Cost) reports an overflow as an error wrapping ErrCreditsOverflow
// instead of wrapping around. Amounts may be negative (a balance, a
// refund); prices are checked to be 0 or more where they are used.
//
// As JSON, Credits is written as a string ("price": "0.5") and read from a
// string or a number ("price": 0.5), the number's literal read as a
// decimal, never through a float, so messages and specs written before
// Credits existed still read exactly. As YAML (MarshalText, UnmarshalText)
// it is the same decimal, quoted or not.
type Credits int64

// One credit, and the smallest amount.
const (
	MicroCredit Credits = 1
	Credit      Credits = 1_000_000
)

// creditDecimals is the number of decimals a Credits amount has.
const creditDecimals = 6

// ParseCredits reads a decimal amount of credits: an optional minus sign,
// digits, then optionally a point and one to six digits ("12", "0.5",
// "-3.000001"). Anything else (exponents, NaN, infinities, a plus sign,
// spaces, a bare point, more than six decimals) and amounts beyond Credits'
// range (about ±9.2 trillion credits) are errors wrapping ErrBadCredits.
func ParseCredits(s string) (Credits, error) {
	t, neg := strings.CutPrefix(s, "-")
	whole, frac, point := strings.Cut(t, ".")
	switch {
	case !decimalDigits(whole) || point && !decimalDigits(frac):
		return 0, fmt.Errorf("%w: %.40q (want a decimal number of credits such as 2.5 or 0.000001)", ErrBadCredits, s)
	case len(frac) > creditDecimals:
		return 0, fmt.Errorf("%w: %.40q has more than %d decimals (the smallest amount is 0.000001)", ErrBadCredits, s, creditDecimals)
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++ // -2^63 fits
	}
	var m uint64 // magnitude in micro-credits
	for _, c := range whole + frac + strings.Repeat("0", creditDecimals-len(frac)) {
		d := uint64(c - '0')
		if m > (limit-d)/10 {
			return 0, fmt.Errorf("%w: %.40q is out of range (amounts are within ±%s)", ErrBadCredits, s, Credits(math.MaxInt64))
		}
		m = m*10 + d
	}
	if neg {
		return Credits(-m), nil // two's complement: -2^63 too
	}
	return Credits(m), nil
}

// decimalDigits reports whether s is one or more ASCII digits.
func decimalDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// String formats c as a decimal of credits without trailing zeros, the
// form ParseCredits reads: "12", "1.25", "-0.000001".
func (c Credits) String() string {
	sign, m := "", uint64(c)
	if c < 0 {
		sign, m = "-", -m
	}
	whole, frac := m/uint64(Credit), m%uint64(Credit)
	s := sign + strconv.FormatUint(whole, 10)
	if frac == 0 {
		return s
	}
	return s + "." + strings.TrimRight(fmt.Sprintf("%0*d", creditDecimals, frac), "0")
}

// MarshalText writes c as String does; JSON writes it as a string.
func (c Credits) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads what ParseCredits reads (YAML uses it, with the
// scalar as written: `price: 1.5` reads exactly).
func (c *Credits) UnmarshalText(text []byte) error {
	v, err := ParseCredits(string(text))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// UnmarshalJSON reads a string or a number as ParseCredits does; null
// leaves c as it is.
func (c *Credits) UnmarshalJSON(data []byte) error {
	switch {
	case string(data) == "null":
		return nil
	case len(data) > 0 && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("%w: %w", ErrBadCredits, err)
		}
		data = []byte(s)
	}
	return c.UnmarshalText(data)
}

// Add returns c + d, or an error wrapping ErrCreditsOverflow.
func (c Credits) Add(d Credits) (Credits, error) {
	s := c + d
	if (d > 0 && s < c) || (d < 0 && s > c) {
		return 0, fmt.Errorf("%w: %s + %s", ErrCreditsOverflow, c, d)
	}
	return s, nil
}

// Sub returns c - d, or an error wrapping ErrCreditsOverflow.
func (c Credits) Sub(d Credits) (Credits, error) {
	s := c - d
	if (d > 0 && s > c) || (d < 0 && s < c) {
		return 0, fmt.Errorf("%w: %s - %s", ErrCreditsOverflow, c, d)
	}
	return s, nil
}

// Mul returns c * n (n units at price c), or an error wrapping
// ErrCreditsOverflow.
func (c Credits) Mul(n int64) (Credits, error) {
	if c == 0 || n == 0 {
		return 0, nil
	}
	p := c * Credits(n)
	if p/Credits(n) != c || (n == -1 && c == math.MinInt64) {
		return 0, fmt.Errorf("%w: %s * %d", ErrCreditsOverflow, c, n)
	}
	return p, nil
}

// microPerCoreHour is the denominator of Cost: a millicore for a
// nanosecond is 1/microPerCoreHour of a core-hour.
var microPerCoreHour = big.NewInt(1000 * int64(time.Hour))

// Cost is what cpu costs for d at perCoreHour credits per core-hour:
// perCoreHour × cpu/1000 × d/1h, computed exactly and then rounded once to
// the nearest micro-credit, a half rounding up. (A millisecond of one core
// at 1 credit per core-hour is 0.28 micro-credits and costs 0; two
// seconds cost 556.) A negative price, cpu or duration is an error
// wrapping ErrBadCredits, a cost beyond Credits' range one wrapping
// ErrCreditsOverflow.
func Cost(perCoreHour Credits, cpu MilliCPU, d time.Duration) (Credits, error) {
	if perCoreHour < 0 || cpu < 0 || d < 0 {
		return 0, fmt.Errorf("%w: no cost for %s credits per core-hour, %d millicores, %s: none may be negative", ErrBadCredits, perCoreHour, cpu, d)
	}
	num := new(big.Int).Mul(big.NewInt(int64(perCoreHour)), big.NewInt(int64(cpu)))
	num.Mul(num, big.NewInt(int64(d)))
	q, r := num.QuoRem(num, microPerCoreHour, new(big.Int))
	if r.Lsh(r, 1).Cmp(microPerCoreHour) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("%w: %s credits per core-hour for %s over %s", ErrCreditsOverflow, perCoreHour, cpu, d)
	}
	return Credits(q.Int64()), nil
}

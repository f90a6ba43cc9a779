package types

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"pgregory.net/rapid"
)

func TestParseCredits(t *testing.T) {
	cases := []struct {
		in   string
		want Credits
		out  string // String of the result; "" means in
	}{
		{"0", 0, ""},
		{"12", 12 * Credit, ""},
		{"1.25", 1_250_000, ""},
		{"0.000001", MicroCredit, ""},
		{"0.5", Credit / 2, ""},
		{"-3.5", -3_500_000, ""},
		{"-0.000001", -MicroCredit, ""},
		{"1.500000", 1_500_000, "1.5"},
		{"007.10", 7_100_000, "7.1"},
		{"-0", 0, "0"},
		{"-0.0", 0, "0"},
		{"9223372036854.775807", math.MaxInt64, ""},
		{"-9223372036854.775808", math.MinInt64, ""},
	}
	for _, c := range cases {
		got, err := ParseCredits(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseCredits(%q) = %d, %v; want %d", c.in, int64(got), err, int64(c.want))
			continue
		}
		want := c.out
		if want == "" {
			want = c.in
		}
		if s := got.String(); s != want {
			t.Errorf("ParseCredits(%q).String() = %q; want %q", c.in, s, want)
		}
	}
}

func TestParseCreditsRefuses(t *testing.T) {
	cases := map[string]string{
		"":                                       "want a decimal number",
		"-":                                      "want a decimal number",
		".5":                                     "want a decimal number",
		"5.":                                     "want a decimal number",
		"+1":                                     "want a decimal number",
		" 1":                                     "want a decimal number",
		"1 ":                                     "want a decimal number",
		"1,5":                                    "want a decimal number",
		"1.2.3":                                  "want a decimal number",
		"--1":                                    "want a decimal number",
		"1e3":                                    "want a decimal number",
		"2.5E-1":                                 "want a decimal number",
		"NaN":                                    "want a decimal number",
		"Inf":                                    "want a decimal number",
		"-Infinity":                              "want a decimal number",
		"0x10":                                   "want a decimal number",
		"１":                                      "want a decimal number", // a fullwidth digit
		"lots":                                   "want a decimal number",
		"0.0000001":                              "more than 6 decimals",
		"0.30000000000000004":                    "more than 6 decimals",
		"1.0000000":                              "more than 6 decimals",
		"9223372036854.775808":                   "out of range",
		"-9223372036854.775809":                  "out of range",
		"100000000000000":                        "out of range",
		"99999999999999999999999999999999999999": "out of range",
	}
	for in, want := range cases {
		_, err := ParseCredits(in)
		if !errors.Is(err, ErrBadCredits) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCredits(%q) err = %v; want ErrBadCredits saying %q", in, err, want)
		}
	}
}

func TestCreditsJSON(t *testing.T) {
	b, err := json.Marshal(struct {
		Price Credits `json:"price"`
		Max   Credits `json:"max,omitempty"`
	}{Price: 1_500_000})
	if err != nil || string(b) != `{"price":"1.5"}` {
		t.Fatalf("marshalled %s, %v; want {\"price\":\"1.5\"}", b, err)
	}
	reads := map[string]Credits{
		`"0.5"`: Credit / 2, `"12"`: 12 * Credit, `"0.000001"`: MicroCredit, `"-2"`: -2 * Credit, `"\u0031"`: Credit,
		// numbers, as prices were written before Credits
		`1`: Credit, `2.5`: 2_500_000, `0.000001`: MicroCredit, `0`: 0, `-0.25`: -250_000, `1234.567891`: 1_234_567_891,
	}
	for in, want := range reads {
		var c Credits
		if err := json.Unmarshal([]byte(in), &c); err != nil || c != want {
			t.Errorf("unmarshal %s = %s, %v; want %s", in, c, err, want)
		}
	}
	for _, in := range []string{`"1e3"`, `1e3`, `2.5E1`, `"0.0000001"`, `0.30000000000000004`, `true`, `{}`, `[]`, `""`, `"NaN"`, `"1`} {
		c := Credits(7)
		err := json.Unmarshal([]byte(in), &c)
		if err == nil || c != 7 {
			t.Errorf("unmarshal %s = %s, %v; want an error and no change", in, c, err)
		}
	}
	c := Credits(7)
	if err := json.Unmarshal([]byte(`null`), &c); err != nil || c != 7 {
		t.Errorf("unmarshal null = %s, %v; want 7 micro-credits left as they were", c, err)
	}
}

// TestCreditsReadOldFloats checks that a price an old node wrote as a
// float64 (encoding/json's shortest form) of up to 15 significant digits
// reads back as the decimal it meant, to the micro-credit.
func TestCreditsReadOldFloats(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		want := Credits(rapid.Int64Range(-999_999_999_999_999, 999_999_999_999_999).Draw(t, "micro"))
		old, err := json.Marshal(float64(want) / float64(Credit))
		if err != nil {
			t.Fatal(err)
		}
		var got Credits
		if err := json.Unmarshal(old, &got); err != nil || got != want {
			t.Fatalf("old %s read as %s, %v; want %s", old, got, err, want)
		}
	})
}

func TestCreditsYAML(t *testing.T) {
	type offer struct {
		Price    Credits `yaml:"price"`
		MaxPrice Credits `yaml:"max_price"`
	}
	var o offer
	if err := yaml.Unmarshal([]byte("price: 1.5\nmax_price: \"0.000001\"\n"), &o); err != nil || o.Price != 1_500_000 || o.MaxPrice != MicroCredit {
		t.Fatalf("decoded %+v, %v; want 1.5 and 0.000001", o, err)
	}
	out, err := yaml.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var back offer
	if err := yaml.Unmarshal(out, &back); err != nil || back != o {
		t.Fatalf("round trip through\n%s gave %+v, %v; want %+v", out, back, err, o)
	}
	for _, in := range []string{"price: 1e3", "price: .inf", "price: .nan", "price: 0.1234567", "price: [1]"} {
		if err := yaml.Unmarshal([]byte(in), &o); err == nil {
			t.Errorf("decoded %q as %+v; want an error", in, o)
		}
	}
}

func TestCreditsArithmetic(t *testing.T) {
	const maxC, minC = Credits(math.MaxInt64), Credits(math.MinInt64)
	adds := []struct {
		a, b Credits
		ok   bool
	}{
		{Credit, 2 * Credit, true}, {maxC, 0, true}, {maxC, 1, false}, {minC, -1, false},
		{minC, maxC, true}, {maxC, minC, true}, {-1, minC, false}, {maxC, maxC, false},
	}
	for _, c := range adds {
		got, err := c.a.Add(c.b)
		if ok := err == nil; ok != c.ok || ok && got != c.a+c.b || !ok && !errors.Is(err, ErrCreditsOverflow) {
			t.Errorf("%d.Add(%d) = %d, %v; want ok %v", int64(c.a), int64(c.b), int64(got), err, c.ok)
		}
	}
	subs := []struct {
		a, b Credits
		ok   bool
	}{
		{Credit, 2 * Credit, true}, {0, maxC, true}, {0, minC, false}, {-1, maxC, true}, {-2, maxC, false}, {maxC, -1, false}, {minC, 1, false},
	}
	for _, c := range subs {
		got, err := c.a.Sub(c.b)
		if ok := err == nil; ok != c.ok || ok && got != c.a-c.b || !ok && !errors.Is(err, ErrCreditsOverflow) {
			t.Errorf("%d.Sub(%d) = %d, %v; want ok %v", int64(c.a), int64(c.b), int64(got), err, c.ok)
		}
	}
	muls := []struct {
		a  Credits
		n  int64
		ok bool
	}{
		{Credit, 3, true}, {0, math.MaxInt64, true}, {maxC, 1, true}, {maxC, -1, true}, {minC, -1, false}, {-1, math.MinInt64, false},
		{minC, 1, true}, {maxC / 2, 2, true}, {maxC/2 + 1, 2, false}, {1 << 32, 1 << 30, true}, {-1 << 32, 1 << 31, true}, {1 << 32, 1 << 31, false},
	}
	for _, c := range muls {
		got, err := c.a.Mul(c.n)
		if ok := err == nil; ok != c.ok || ok && got != c.a*Credits(c.n) || !ok && !errors.Is(err, ErrCreditsOverflow) {
			t.Errorf("%d.Mul(%d) = %d, %v; want ok %v", int64(c.a), c.n, int64(got), err, c.ok)
		}
	}
}

func TestCost(t *testing.T) {
	cases := []struct {
		price Credits
		cpu   MilliCPU
		d     time.Duration
		want  Credits
	}{
		{Credit, 1000, time.Hour, Credit},
		{Credit, 500, 30 * time.Minute, Credit / 4},
		{2_500_000, 4000, 90 * time.Minute, 15 * Credit},
		{Credit, 1000, time.Millisecond, 0},        // 0.28 micro-credits
		{Credit, 1000, 2 * time.Second, 556},       // 555.56
		{Credit, 1000, 1800 * time.Microsecond, 1}, // exactly 0.5: half rounds up
		{Credit, 1000, 1799 * time.Microsecond, 0}, // 0.49972
		{Credit, 1000, 5400 * time.Microsecond, 2}, // exactly 1.5
		{MicroCredit, 1, time.Hour, 0},             // 0.001
		{0, 64000, time.Hour, 0},
		{Credit, 0, time.Hour, 0},
		{Credit, 1000, 0, 0},
		{Credit, 1000, math.MaxInt64, 2_562_047_788_015}, // 2562047.788015...h
	}
	for _, c := range cases {
		got, err := Cost(c.price, c.cpu, c.d)
		if err != nil || got != c.want {
			t.Errorf("Cost(%s, %d, %s) = %s, %v; want %s", c.price, c.cpu, c.d, got, err, c.want)
		}
	}
	if _, err := Cost(math.MaxInt64, 1000, 2*time.Hour); !errors.Is(err, ErrCreditsOverflow) {
		t.Errorf("Cost beyond the range: err = %v; want ErrCreditsOverflow", err)
	}
	for _, bad := range []struct {
		price Credits
		cpu   MilliCPU
		d     time.Duration
	}{{-1, 1000, time.Hour}, {Credit, -1, time.Hour}, {Credit, 1000, -time.Nanosecond}} {
		if _, err := Cost(bad.price, bad.cpu, bad.d); !errors.Is(err, ErrBadCredits) {
			t.Errorf("Cost(%s, %d, %s) err = %v; want ErrBadCredits", bad.price, bad.cpu, bad.d, err)
		}
	}
}

// drawCredits draws any amount, the extremes and round amounts often.
func drawCredits(t *rapid.T, label string) Credits {
	return rapid.OneOf(
		rapid.Map(rapid.Int64(), func(v int64) Credits { return Credits(v) }),
		rapid.Map(rapid.Int64Range(-1e7, 1e7), func(v int64) Credits { return Credits(v) * Credit }),
		rapid.SampledFrom([]Credits{0, 1, -1, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1}),
	).Draw(t, label)
}

func TestCreditsFormatParseProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := drawCredits(t, "c")
		back, err := ParseCredits(c.String())
		if err != nil || back != c {
			t.Fatalf("ParseCredits(%q) = %d, %v; want %d", c.String(), int64(back), err, int64(c))
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON Credits
		if err := json.Unmarshal(b, &fromJSON); err != nil || fromJSON != c {
			t.Fatalf("JSON %s read as %d, %v; want %d", b, int64(fromJSON), err, int64(c))
		}
	})
}

// TestParseCreditsProperty checks ParseCredits against math/big on decimal
// strings of any length, and that whatever it accepts of any string
// formats back to the same amount.
func TestParseCreditsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		neg := rapid.Bool().Draw(t, "neg")
		whole := rapid.StringMatching(`[0-9]{1,25}`).Draw(t, "whole")
		frac := rapid.StringMatching(`[0-9]{0,8}`).Draw(t, "frac")
		s := whole
		if frac != "" {
			s += "." + frac
		}
		if neg {
			s = "-" + s
		}
		got, err := ParseCredits(s)
		want, fits := new(big.Int), false
		if len(frac) <= creditDecimals {
			want.SetString(whole+frac+strings.Repeat("0", creditDecimals-len(frac)), 10)
			if neg {
				want.Neg(want)
			}
			fits = want.IsInt64()
		}
		switch {
		case fits && (err != nil || int64(got) != want.Int64()):
			t.Fatalf("ParseCredits(%q) = %d, %v; want %s", s, int64(got), err, want)
		case !fits && !errors.Is(err, ErrBadCredits):
			t.Fatalf("ParseCredits(%q) = %d, %v; want ErrBadCredits", s, int64(got), err)
		}
	})
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.String().Draw(t, "s")
		c, err := ParseCredits(s)
		if err != nil {
			if !errors.Is(err, ErrBadCredits) {
				t.Fatalf("ParseCredits(%q) err %v does not wrap ErrBadCredits", s, err)
			}
			return
		}
		if back, err := ParseCredits(c.String()); err != nil || back != c {
			t.Fatalf("%q read as %s, which reads as %s, %v", s, c, back, err)
		}
	})
}

// TestCreditsArithmeticProperty checks Add, Sub and Mul against math/big:
// each returns the exact result when it fits in Credits and an overflow
// error when it does not.
func TestCreditsArithmeticProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := drawCredits(t, "a"), drawCredits(t, "b")
		n := rapid.OneOf(rapid.Int64(), rapid.Int64Range(-1000, 1000),
			rapid.SampledFrom([]int64{-1, 2, -2, math.MaxInt64, math.MinInt64})).Draw(t, "n")
		x, y := big.NewInt(int64(a)), big.NewInt(int64(b))
		checkExact(t, "Add", new(big.Int).Add(x, y), func() (Credits, error) { return a.Add(b) })
		checkExact(t, "Sub", new(big.Int).Sub(x, y), func() (Credits, error) { return a.Sub(b) })
		checkExact(t, "Mul", new(big.Int).Mul(x, big.NewInt(n)), func() (Credits, error) { return a.Mul(n) })
	})
}

func checkExact(t *rapid.T, op string, want *big.Int, f func() (Credits, error)) {
	got, err := f()
	switch {
	case want.IsInt64() && (err != nil || int64(got) != want.Int64()):
		t.Fatalf("%s = %d, %v; want %s", op, int64(got), err, want)
	case !want.IsInt64() && !errors.Is(err, ErrCreditsOverflow):
		t.Fatalf("%s = %d, %v; want ErrCreditsOverflow (exact %s)", op, int64(got), err, want)
	}
}

// TestCostProperty checks Cost against a rational reference: the exact
// cost plus one half, floored.
func TestCostProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		price := Credits(rapid.OneOf(rapid.Int64Min(0), rapid.Int64Range(0, 100*int64(Credit))).Draw(t, "price"))
		cpu := MilliCPU(rapid.OneOf(rapid.Int64Min(0), rapid.Int64Range(0, 256_000)).Draw(t, "cpu"))
		d := time.Duration(rapid.OneOf(rapid.Int64Min(0), rapid.Int64Range(0, int64(48*time.Hour))).Draw(t, "d"))
		exact := new(big.Rat).SetFrac(
			new(big.Int).Mul(new(big.Int).Mul(big.NewInt(int64(price)), big.NewInt(int64(cpu))), big.NewInt(int64(d))),
			big.NewInt(1000*int64(time.Hour)))
		half := exact.Add(exact, big.NewRat(1, 2))
		want := new(big.Int).Quo(half.Num(), half.Denom())
		checkExact(t, "Cost", want, func() (Credits, error) { return Cost(price, cpu, d) })
	})
}

// TestSignedPrices: on the wire a price is an integer of micro-credits,
// read exactly however large; a float or a decimal as text is refused as
// malformed after the signature verified, never rounded.
func TestSignedPrices(t *testing.T) {
	open := func(kind Kind, body map[string]any) (Message, error) {
		env := &Envelope{Kind: kind, From: DIDFromPublicKey(fuzzKey().Public().(ed25519.PublicKey)), Nonce: "00",
			Expiry: fuzzNow.Add(time.Minute).UnixNano(), Body: cborOf(t, body)}
		env.Sig = ed25519.Sign(fuzzKey(), env.signingBytes())
		return env.Open(fuzzNow)
	}
	for _, want := range []Credits{0, MicroCredit, 1_250_000, math.MaxInt64, -3} {
		bid, err := open(KindBid, map[string]any{"job_id": "j", "price": int64(want)})
		if err != nil || bid.(*Bid).Price != want {
			t.Errorf("bid at %d micro-credits: %v %v", int64(want), bid, err)
		}
		req, err := open(KindBidRequest, map[string]any{"job_id": "j", "constraints": map[string]any{"max_price": int64(want)}})
		if err != nil || req.(*BidRequest).Constraints.MaxPrice != want {
			t.Errorf("bid request at %d micro-credits: %v %v", int64(want), req, err)
		}
	}
	for _, bad := range []any{1.25, "1.25", 1e300, []byte{1}} {
		if _, err := open(KindBid, map[string]any{"job_id": "j", "price": bad}); !errors.Is(err, ErrMalformed) {
			t.Errorf("a price of %v (%T) opened: %v; want ErrMalformed", bad, bad, err)
		}
	}
}

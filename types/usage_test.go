package types

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestMemoryTime(t *testing.T) {
	const mib = Bytes(1 << 20)
	for _, c := range []struct {
		b    Bytes
		d    time.Duration
		want int64
	}{
		{64 * mib, 15 * time.Millisecond, 960},
		{mib, time.Second, 1000},
		{1 << 30, time.Second, 1024 * 1000}, // a GiB-second
		{0, time.Hour, 0},
		{mib, 0, 0},
		{-mib, time.Second, 0},
		{mib, 499 * time.Microsecond, 0}, // under half a MiB·ms rounds down
		{mib, 500 * time.Microsecond, 1}, // half rounds up
		{mib / 2, time.Millisecond, 1},
		{mib/2 - 1, time.Millisecond, 0},
		{1 << 40, 100 * 365 * 24 * time.Hour, (1 << 20) * 100 * 365 * 24 * 3600 * 1000}, // a TiB for a century
		{math.MaxInt64, math.MaxInt64, math.MaxInt64},
	} {
		if got := MemoryTime(c.b, c.d); got != c.want {
			t.Errorf("MemoryTime(%d, %s) = %d, want %d", c.b, c.d, got, c.want)
		}
	}
}

// TestMemoryTimeExact checks MemoryTime against big integers.
func TestMemoryTimeExact(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := rapid.Int64Range(1, math.MaxInt64).Draw(t, "bytes")
		d := rapid.Int64Range(1, math.MaxInt64).Draw(t, "ns")
		// round(b*d / unit) = floor((2*b*d + unit) / (2*unit))
		unit := new(big.Int).SetUint64(mibMs)
		num := new(big.Int).Mul(big.NewInt(b), big.NewInt(d))
		num.Add(num.Lsh(num, 1), unit)
		want := num.Div(num, unit.Lsh(unit, 1))
		if !want.IsInt64() {
			want = big.NewInt(math.MaxInt64)
		}
		if got := MemoryTime(Bytes(b), time.Duration(d)); got != want.Int64() {
			t.Fatalf("MemoryTime(%d, %d) = %d, want %s", b, d, got, want)
		}
	})
}

// TestUsageJSON pins the wire form: integers under stable names.
func TestUsageJSON(t *testing.T) {
	u := Usage{CPU: 12 * time.Millisecond, Wall: 15 * time.Millisecond, MemoryPeak: 2 << 20, MemoryLimit: 64 << 20,
		OutputBytes: 1234, Calls: 3}.WithMemoryTime()
	got, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"cpu_ns":12000000,"wall_ns":15000000,"memory_peak":2097152,"memory_limit":67108864,` +
		`"memory_peak_mib_ms":30,"memory_limit_mib_ms":960,"output_bytes":1234,"calls":3}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	var back Usage
	if err := json.Unmarshal(got, &back); err != nil || back != u {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func drawUsage(t *rapid.T, label string) Usage {
	return Usage{
		CPU:         time.Duration(rapid.Int64Range(0, 1<<50).Draw(t, label+".cpu")),
		Wall:        time.Duration(rapid.Int64Range(0, 1<<50).Draw(t, label+".wall")),
		MemoryPeak:  Bytes(rapid.Int64Range(0, 1<<40).Draw(t, label+".peak")),
		MemoryLimit: Bytes(rapid.Int64Range(0, 1<<40).Draw(t, label+".limit")),
		OutputBytes: rapid.Int64Range(0, 1<<40).Draw(t, label+".output"),
		Calls:       rapid.Uint64Range(0, 1<<40).Draw(t, label+".calls"),
	}.WithMemoryTime()
}

// TestUsageSinceUndoesAdd: a running total taken in two periods gives
// each period back, and every period passes Check.
func TestUsageSinceUndoesAdd(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		first, second := drawUsage(t, "first"), drawUsage(t, "second")
		total := first.Add(second)
		got := total.Since(first)
		if got.CPU != second.CPU || got.Wall != second.Wall || got.OutputBytes != second.OutputBytes || got.Calls != second.Calls {
			t.Fatalf("(%+v + %+v).Since(first) = %+v", first, second, got)
		}
		if got.MemoryPeak != max(first.MemoryPeak, second.MemoryPeak) {
			t.Fatalf("peak %d, want the total's", got.MemoryPeak)
		}
		if err := got.Check(); err != nil {
			t.Fatal(err)
		}
		if back := first.Since(total); back.CPU != 0 || back.Wall != 0 || back.OutputBytes != 0 || back.Calls != 0 {
			t.Fatalf("an earlier total since a later one: %+v", back)
		}
	})
}

func TestUsageAddSaturates(t *testing.T) {
	big := Usage{CPU: math.MaxInt64 - 1, OutputBytes: math.MaxInt64, Calls: math.MaxUint64 - 1}
	got := big.Add(Usage{CPU: 5, OutputBytes: 1, Calls: 7})
	if got.CPU != math.MaxInt64 || got.OutputBytes != math.MaxInt64 || got.Calls != math.MaxUint64 {
		t.Fatalf("got %+v", got)
	}
}

func TestUsageCheck(t *testing.T) {
	ok := Usage{CPU: time.Second, Wall: 2 * time.Second, MemoryPeak: 1 << 20, MemoryLimit: 1 << 30, OutputBytes: 10}.WithMemoryTime()
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]func(*Usage){
		"negative cpu":    func(u *Usage) { u.CPU = -1 },
		"negative output": func(u *Usage) { u.OutputBytes = -1 },
		"negative peak":   func(u *Usage) { u.MemoryPeak = -1; u.PeakMiBms = 0 },
		"inflated limit":  func(u *Usage) { u.LimitMiBms++ },
		"peak not wall":   func(u *Usage) { u.Wall *= 2 },
	} {
		u := ok
		bad(&u)
		if err := u.Check(); !errors.Is(err, ErrBadUsage) {
			t.Errorf("%s: Check() = %v", name, err)
		}
	}
}

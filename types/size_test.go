package types

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParseBytes(t *testing.T) {
	cases := []struct {
		in   string
		want Bytes
	}{
		{"4096", 4096}, {"64MiB", 64 << 20}, {"64Mi", 64 << 20}, {"1.5GiB", 3 << 29},
		{"2GB", 2e9}, {"900TiB", 900 << 40}, {" 1 KiB ", 1024}, {"0", 0}, {"10B", 10},
	}
	for _, c := range cases {
		got, err := ParseBytes(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1MiB", "lots", "1e30GiB", "NaN", "12 parsecs"} {
		if _, err := ParseBytes(bad); !errors.Is(err, ErrBadSize) {
			t.Errorf("ParseBytes(%q) err = %v; want ErrBadSize", bad, err)
		}
	}
}

func TestBytesString(t *testing.T) {
	for b, want := range map[Bytes]string{0: "0 B", 1023: "1023 B", 64 << 20: "64 MiB", 900 << 40: "900 TiB", 3 << 29: "1.5 GiB"} {
		if got := b.String(); got != want {
			t.Errorf("Bytes(%d).String() = %q; want %q", int64(b), got, want)
		}
	}
}

func TestResourcesJSONRoundTrip(t *testing.T) {
	r := Resources{CPU: 1500, Memory: 64 << 20, Disk: 1 << 30, GPUs: 1}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Resources
	if err := json.Unmarshal(b, &back); err != nil || back != r {
		t.Fatalf("round trip %s -> %+v, %v", b, back, err)
	}
	var human Resources
	if err := json.Unmarshal([]byte(`{"cpu":"500m","memory":"64MiB","disk":"1GiB"}`), &human); err != nil {
		t.Fatal(err)
	}
	if human.CPU != 500 || human.Memory != 64<<20 || human.Disk != 1<<30 {
		t.Fatalf("human sizes decoded to %+v", human)
	}
}

func TestParseCPU(t *testing.T) {
	for in, want := range map[string]MilliCPU{"2": 2000, "0.5": 500, "500m": 500, "0.001": 1} {
		if got, err := ParseCPU(in); err != nil || got != want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "m", "two", "1e12"} {
		if _, err := ParseCPU(bad); err == nil {
			t.Errorf("ParseCPU(%q) accepted", bad)
		}
	}
}

func TestShortfall(t *testing.T) {
	need := Resources{CPU: 1000, Memory: 900 << 40}
	offered := Resources{CPU: 2000, Memory: 8 << 30, Disk: 10 << 30}
	got := need.Shortfall(offered)
	if len(got) != 1 || got[0] != "memory: need 900 TiB, offered 8 GiB" {
		t.Fatalf("Shortfall = %q", got)
	}
	if need.Fits(offered) {
		t.Fatal("900 TiB fits in 8 GiB")
	}
	small := Resources{CPU: 500, Memory: 1 << 20}
	if !small.Fits(offered) || len(small.Shortfall(offered)) != 0 {
		t.Fatal("small request does not fit")
	}
	if offered.Sub(small).Add(small) != offered {
		t.Fatal("Sub then Add is not the identity")
	}
}

package jobs

import "testing"

func TestLimitedBuffer(t *testing.T) {
	b := &LimitedBuffer{Limit: 5}
	for _, p := range []string{"abc", "defg", "hij"} {
		if n, err := b.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if string(b.Bytes()) != "abcde" || !b.Truncated() {
		t.Fatalf("kept %q, truncated %v", b.Bytes(), b.Truncated())
	}
	exact := &LimitedBuffer{Limit: 3}
	exact.Write([]byte("abc"))
	if exact.Truncated() {
		t.Fatal("a write that fits exactly is not truncated")
	}
}

func TestInputWithDefaults(t *testing.T) {
	in := Input{}.WithDefaults()
	if in.Memory != DefaultMemory || in.Timeout != DefaultTimeout || in.OutputLimit != DefaultOutputLimit {
		t.Fatalf("defaults: %+v", in)
	}
	set := Input{Memory: 1 << 20, Timeout: 1, OutputLimit: 1}.WithDefaults()
	if set.Memory != 1<<20 || set.Timeout != 1 || set.OutputLimit != 1 {
		t.Fatalf("set limits changed: %+v", set)
	}
}

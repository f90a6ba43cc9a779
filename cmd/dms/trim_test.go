package main

import (
	"testing"
	"time"
)

func TestShouldTrim(t *testing.T) {
	const mb = 1 << 20
	at := func(allocs, held uint64) memSample { return memSample{allocs: allocs * mb, held: held * mb} }
	tests := map[string]struct {
		prev, cur memSample
		every     time.Duration
		afterTrim uint64
		want      bool
	}{
		"quiet after growing":         {at(100, 60), at(100, 60), time.Second, 20 * mb, true},
		"still busy":                  {at(100, 60), at(150, 60), time.Second, 20 * mb, false},
		"quiet, grown under slack":    {at(100, 25), at(100, 25), time.Second, 20 * mb, false},
		"slow allocs over a long gap": {at(100, 60), at(101, 60), 2 * time.Second, 20 * mb, true},
		"fast allocs over a long gap": {at(100, 60), at(104, 60), 2 * time.Second, 20 * mb, false},
		"held shrank below the trim":  {at(100, 10), at(100, 10), time.Second, 20 * mb, false},
	}
	for name, tc := range tests {
		if got := shouldTrim(tc.prev, tc.cur, tc.every, tc.afterTrim); got != tc.want {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
}

// TestReadMemSample checks that the runtime metrics the trimmer reads
// exist and move: allocating grows the allocation count, and the runtime
// holds memory.
func TestReadMemSample(t *testing.T) {
	before := readMemSample()
	sink = make([]byte, 4<<20)
	after := readMemSample()
	if after.allocs < before.allocs+4<<20 {
		t.Fatalf("allocs went from %d to %d after allocating 4 MiB", before.allocs, after.allocs)
	}
	if after.held == 0 {
		t.Fatal("the runtime holds no memory")
	}
}

var sink []byte

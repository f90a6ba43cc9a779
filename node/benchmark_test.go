package node

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

func TestBenchmark(t *testing.T) {
	dir := t.TempDir()
	b, err := RunBenchmark(t.Context(), dir, BenchOptions{Duration: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("benchmark %+v", b)
	if b.CPUSingle <= 0 || b.CPUAll <= 0 || b.MemoryMBps <= 0 || b.DiskWriteMBps <= 0 || b.DurationMillis <= 0 || b.MeasuredAt.IsZero() {
		t.Fatalf("benchmark = %+v", b)
	}
	// Loose: the phases run one after the other on a machine that may be busy
	// with other work, but all cores together are never much slower than one.
	if b.CPUAll < 0.3*b.CPUSingle {
		t.Errorf("all cores %.2f, single %.2f", b.CPUAll, b.CPUSingle)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the disk benchmark left %d files", len(left))
	}
}

func TestBenchmarkCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := RunBenchmark(ctx, t.TempDir(), BenchOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestBenchmarkBadDir(t *testing.T) {
	if _, err := RunBenchmark(t.Context(), "/nonexistent/dms", BenchOptions{Duration: time.Millisecond}); err == nil {
		t.Fatal("benchmark into a missing directory succeeded")
	}
}

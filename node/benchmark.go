package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/opendms/dms/types"
)

// BenchOptions tunes RunBenchmark.
type BenchOptions struct {
	// Duration is how long each of the four phases runs (cpu single, cpu all,
	// memory, disk); 0 means 250ms, about 1-1.5s in all.
	Duration time.Duration
}

const (
	defaultBenchPhase = 250 * time.Millisecond
	hashBatch         = 1024     // hash rounds between clock reads
	memBenchBuffer    = 16 << 20 // past most per-core caches; small enough to fault in fast
	diskBenchChunk    = 4 << 20  // written and synced per step
)

// RunBenchmark measures the machine: SHA-256 rounds per second on one core
// and on GOMAXPROCS goroutines, memory copy bandwidth, and synced sequential
// write rate to a temporary file in dir (removed afterwards). It reads the
// clock itself: the result is a measurement. A done ctx stops it with an
// error.
func RunBenchmark(ctx context.Context, dir string, opt BenchOptions) (types.Benchmark, error) {
	d := opt.Duration
	if d <= 0 {
		d = defaultBenchPhase
	}
	// The file comes first, so that a directory we cannot write to fails at once.
	f, err := os.CreateTemp(dir, ".dms-bench-*")
	if err != nil {
		return types.Benchmark{}, fmt.Errorf("node: benchmark disk: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	start := time.Now()
	b := types.Benchmark{MeasuredAt: start}
	if b.CPUSingle, err = cpuScore(ctx, d, 1); err != nil {
		return types.Benchmark{}, fmt.Errorf("node: benchmark cpu: %w", err)
	}
	if b.CPUAll, err = cpuScore(ctx, d, runtime.GOMAXPROCS(0)); err != nil {
		return types.Benchmark{}, fmt.Errorf("node: benchmark cpu: %w", err)
	}
	if b.MemoryMBps, err = memoryBandwidth(ctx, d); err != nil {
		return types.Benchmark{}, fmt.Errorf("node: benchmark memory: %w", err)
	}
	if b.DiskWriteMBps, err = diskWriteRate(ctx, f, d); err != nil {
		return types.Benchmark{}, fmt.Errorf("node: benchmark disk: %w", err)
	}
	b.DurationMillis = time.Since(start).Milliseconds()
	return b, nil
}

// cpuScore runs workers goroutines chaining SHA-256 over a 32-byte digest (one
// compression per round) for d, and returns million rounds per second.
func cpuScore(ctx context.Context, d time.Duration, workers int) (float64, error) {
	start := time.Now()
	deadline := start.Add(d)
	counts := make([]int, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { counts[i] = hashUntil(ctx, deadline) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	return float64(total) / time.Since(start).Seconds() / 1e6, nil
}

// hashUntil hashes until deadline or ctx is done and returns the round count.
func hashUntil(ctx context.Context, deadline time.Time) int {
	var h [sha256.Size]byte
	n := 0
	for ctx.Err() == nil && time.Now().Before(deadline) {
		for range hashBatch {
			h = sha256.Sum256(h[:])
		}
		n += hashBatch
	}
	return n
}

// memoryBandwidth copies a buffer back and forth for d and returns MB/s copied.
func memoryBandwidth(ctx context.Context, d time.Duration) (float64, error) {
	src, dst := touched(memBenchBuffer), touched(memBenchBuffer)
	start := time.Now()
	copied := 0
	for time.Since(start) < d {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		copied += copy(dst, src)
		src, dst = dst, src
	}
	return float64(copied) / time.Since(start).Seconds() / 1e6, nil
}

// touched returns a buffer of n bytes with every page faulted in, so that
// page faults (slow in some sandboxes) stay out of the measurement and no
// page reads as the shared zero page.
func touched(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = byte(i >> 12)
	}
	return b
}

// diskWriteRate writes random chunks to f, syncing each, for d (at least one
// chunk), and returns MB/s.
func diskWriteRate(ctx context.Context, f *os.File, d time.Duration) (float64, error) {
	chunk := make([]byte, diskBenchChunk)
	rand.Read(chunk) // incompressible, so a compressing filesystem cannot flatter it
	start := time.Now()
	written := 0
	for written == 0 || time.Since(start) < d {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := writeSynced(f, chunk); err != nil {
			return 0, err
		}
		written += len(chunk)
	}
	return float64(written) / time.Since(start).Seconds() / 1e6, nil
}

func writeSynced(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Sync()
}

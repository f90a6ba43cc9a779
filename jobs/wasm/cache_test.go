package wasm

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
)

func TestCompileOnce(t *testing.T) {
	e := newExecutor(t, Config{})
	in := jobs.Input{ModuleID: "tiny", Module: command(1)}
	for range 5 {
		if _, err := run(t, e, in); err != nil {
			t.Fatal(err)
		}
	}
	if s := e.Stats(); s.Compiles != 1 || s.Hits != 4 || s.Cached != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestConcurrentFirstGetsCompileOnce holds the first compilation until every
// other caller waits for it: one compiles, the others get its program.
func TestConcurrentFirstGetsCompileOnce(t *testing.T) {
	const callers = 8
	gate := make(chan struct{})
	var compiles atomic.Int32
	c := newCache(4, func(context.Context, []byte) (*program, error) {
		compiles.Add(1)
		<-gate
		return &program{}, nil
	})
	progs := make(chan *program, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			p, release, err := c.get(context.Background(), "m", func() ([]byte, error) { return nil, nil })
			if err != nil {
				t.Error(err)
				return
			}
			release()
			progs <- p
		})
	}
	waitFor(t, func() bool { return c.snapshot().Hits == callers-1 })
	close(gate)
	wg.Wait()
	close(progs)
	first := <-progs
	for p := range progs {
		if p != first {
			t.Fatal("callers got different programs")
		}
	}
	if n := compiles.Load(); n != 1 {
		t.Fatalf("compiled %d times", n)
	}
}

// waitFor waits until cond holds, for at most 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		runtime.Gosched()
	}
}

func TestConcurrentRunsCompileOnce(t *testing.T) {
	e := newExecutor(t, Config{})
	const runs = 8
	var wg sync.WaitGroup
	for range runs {
		wg.Go(func() {
			if _, err := e.Run(context.Background(), jobs.Input{ModuleID: "tiny", Module: command(1)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if s := e.Stats(); s.Compiles != 1 || s.Hits != runs-1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	e := newExecutor(t, Config{MaxCachedModules: 2})
	mods := [][]byte{command(1), command(2), command(3)} // distinct modules, named by their CIDs
	for _, i := range []int{0, 1, 2, 1, 0} {
		if _, err := run(t, e, jobs.Input{Module: mods[i]}); err != nil {
			t.Fatal(err)
		}
	}
	// 0, 1 and 2 compile, 2 evicts 0, 1 hits, 0 compiles again and evicts 2.
	if s := e.Stats(); s.Compiles != 4 || s.Hits != 1 || s.Evictions != 2 || s.Cached != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCacheKeepsModulesInUse(t *testing.T) {
	e := newExecutor(t, Config{MaxCachedModules: 1})
	ctx := context.Background()
	_, releaseA, err := e.modules.get(ctx, "a", bytesOf(command(1)))
	if err != nil {
		t.Fatal(err)
	}
	_, releaseB, err := e.modules.get(ctx, "b", bytesOf(command(2)))
	if err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Cached != 2 || s.Evictions != 0 {
		t.Fatalf("both in use: %+v", s)
	}
	releaseA()
	if s := e.Stats(); s.Cached != 1 || s.Evictions != 1 {
		t.Fatalf("a released: %+v", s)
	}
	releaseB()
	if s := e.Stats(); s.Cached != 1 {
		t.Fatalf("b released: %+v", s)
	}
}

func TestDiskCache(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		e := newExecutor(t, Config{CacheDir: dir})
		if out, err := run(t, e, jobs.Input{Module: command(1)}); err != nil || out.ExitCode != 0 {
			t.Fatalf("out %v, err %v", out, err)
		}
		e.Close(context.Background())
	}
	if files, err := os.ReadDir(dir); err != nil || len(files) == 0 {
		t.Fatalf("cache dir holds %d entries, err %v", len(files), err)
	}
	if _, err := New(Config{MaxCachedModules: -1}); err == nil {
		t.Fatal("a negative cache bound was accepted")
	}
}

// bytesOf loads bin.
func bytesOf(bin []byte) func() ([]byte, error) { return func() ([]byte, error) { return bin, nil } }

// A program in the cache is run without its bytes: Load is called only by
// the first run, which compiles it.
func TestCachedProgramIsNotLoaded(t *testing.T) {
	e := newExecutor(t, Config{})
	var loads atomic.Int32
	in := jobs.Input{ModuleID: "hello", Load: func() ([]byte, error) { loads.Add(1); return command(0), nil }}
	for range 3 {
		if _, err := e.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("loaded %d times, want 1", n)
	}
	failing := jobs.Input{ModuleID: "absent", Load: func() ([]byte, error) { return nil, errors.New("fetching module: gone") }}
	if _, err := e.Run(context.Background(), failing); err == nil || !strings.Contains(err.Error(), "fetching module: gone") {
		t.Fatalf("a failed load: %v", err)
	}
}

package dms

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"sync"
	"testing"
	"time"
)

// gatedDB is a recordWriter whose writes wait for the test: each PutAll
// sends its records on writes and returns what it reads from results, or
// an error once done is closed.
type gatedDB struct {
	writes  chan map[string]any
	results chan error
	done    <-chan struct{}
}

func (g *gatedDB) PutAll(kvs map[string]any) error {
	select {
	case g.writes <- maps.Clone(kvs):
	case <-g.done:
		return errors.New("test over")
	}
	select {
	case err := <-g.results:
		return err
	case <-g.done:
		return errors.New("test over")
	}
}

// TestUnitWriter: records put while a write is under way are coalesced
// by key into the next write, the latest winning; saved waits for the
// records of every put before it, across a failed write, which is retried
// with its records unless a later put replaced them; a wait ends with its
// context.
func TestUnitWriter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	g := &gatedDB{writes: make(chan map[string]any), results: make(chan error), done: ctx.Done()}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	w := newUnitWriter(g, slog.New(slog.DiscardHandler), func(f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
		}()
	})
	savedAfter := func(ctx context.Context) <-chan error {
		out := make(chan error, 1)
		go func() { out <- w.saved(ctx) }()
		return out
	}
	expect := func(want map[string]any) {
		t.Helper()
		select {
		case got := <-g.writes:
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("wrote %v, want %v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no write of %v", want)
		}
	}
	quiet := func(ch <-chan error, what string) {
		t.Helper()
		select {
		case err := <-ch:
			t.Fatalf("%s: saved returned %v", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}

	w.put(map[string]any{"a": 1})
	expect(map[string]any{"a": 1}) // under way
	w.put(map[string]any{"a": 2, "b": 1})
	w.put(map[string]any{"b": 2, "c": 1})
	saved := savedAfter(context.Background())
	quiet(saved, "while the first write is under way")
	g.results <- nil
	quiet(saved, "after the first write")
	expect(map[string]any{"a": 2, "b": 2, "c": 1}) // the two puts, coalesced
	w.put(map[string]any{"c": 2})
	g.results <- errors.New("disk full")
	quiet(saved, "after a failed write")
	expect(map[string]any{"a": 2, "b": 2, "c": 2}) // retried; c replaced meanwhile
	g.results <- nil
	if err := <-saved; err != nil {
		t.Fatal(err)
	}

	w.put(map[string]any{"d": 1})
	expect(map[string]any{"d": 1})
	wctx, wcancel := context.WithCancel(context.Background())
	cancelled := savedAfter(wctx)
	quiet(cancelled, "while its write is under way")
	wcancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("saved, its context cancelled: %v", err)
	}
	g.results <- nil
	if err := w.saved(context.Background()); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// view folds the events of the watches of what a command follows (a
// flow, a batch) into what it shows. Pure: no I/O, no clock.
type view[E any] interface {
	// apply folds one event in.
	apply(ev E)
	// started reports whether an event came.
	started() bool
	// ended reports whether what is followed ended.
	ended() bool
}

// follower follows one thing the daemon runs, of kind ("flow", "batch")
// and id, to its end: it watches it (watch), folds the events into v,
// shows them (show) and, when events is not nil, writes each to it as a
// line of JSON.
type follower[E any, V view[E]] struct {
	kind, id string
	watch    func(ctx context.Context, id string) (<-chan E, error)
	v        V
	show     display[V]
	events   io.Writer
}

// follow follows what watch watches, of kind and id, to its end, into v:
// with --output json it writes each event to stdout as a line of JSON;
// otherwise it shows the progress with show.
func follow[E any, V view[E]](ctx context.Context, c *cli, kind, id string, watch func(context.Context, string) (<-chan E, error), v V, show display[V]) error {
	f := follower[E, V]{kind: kind, id: id, watch: watch, v: v, show: show}
	if c.output == "json" {
		f.show, f.events = noProgress[V]{}, c.stdout
	}
	return f.run(ctx)
}

// errInterrupted is a follower's error when its ctx ends (Ctrl-C).
var errInterrupted = errors.New("interrupted")

// Re-opening a watch the daemon closed before the end: reopenWait after
// it (times one more than the watches in a row that brought no event),
// and at most maxQuietWatches such watches in a row.
const (
	maxQuietWatches = 5
	reopenWait      = 200 * time.Millisecond
)

// run follows to the end. The daemon closes a watch whose reader falls
// behind, or when it stops: run then watches again, and the new watch
// starts with the whole state.
func (f *follower[E, V]) run(ctx context.Context) error {
	defer func() { f.show.end(f.v, time.Now()) }()
	tick := time.NewTicker(redrawEvery)
	defer tick.Stop()
	for quiet := 0; ; {
		events, err := f.watch(ctx, f.id)
		switch {
		case ctx.Err() != nil:
			return errInterrupted
		case err != nil && f.v.started():
			return fmt.Errorf("lost %s %s while following it: %w", f.kind, f.id, err)
		case err != nil:
			return err
		}
		got, err := f.drain(ctx, events, tick.C)
		switch {
		case err != nil:
			return err
		case ctx.Err() != nil:
			return errInterrupted
		case f.v.ended():
			return nil
		case got:
			quiet = 0
		default:
			quiet++
		}
		if quiet >= maxQuietWatches {
			return fmt.Errorf("lost the events of %s %s: see `dms %s status %s`", f.kind, f.id, f.kind, f.id)
		}
		select {
		case <-ctx.Done():
			return errInterrupted
		case <-time.After(time.Duration(quiet+1) * reopenWait):
		}
	}
}

// drain reads one watch until the daemon closes it or ctx ends, and says
// whether it brought any event.
func (f *follower[E, V]) drain(ctx context.Context, events <-chan E, tick <-chan time.Time) (bool, error) {
	got := false
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return got, nil
			}
			got = true
			f.v.apply(ev)
			if f.events != nil {
				if err := writeJSONLine(f.events, ev); err != nil {
					return got, err
				}
			}
			f.show.changed(f.v, time.Now())
		case now := <-tick:
			f.show.tick(f.v, now)
		case <-ctx.Done():
			return got, nil
		}
	}
}

// interruptedAs names what was followed, of kind and id, in the error of
// a Ctrl-C: interrupted is errDetached when it goes on in the daemon.
func interruptedAs(err, interrupted error, kind, id string) error {
	switch {
	case !errors.Is(err, errInterrupted):
		return err
	case errors.Is(interrupted, errDetached):
		return fmt.Errorf("interrupted; %s %s goes on in the daemon: follow it with `dms %s status %s --watch`, stop it with `dms %s cancel %s`",
			kind, id, kind, id, kind, id)
	}
	return fmt.Errorf("%s %s: %w", kind, id, interrupted)
}

// writeJSONLine writes v as one line of JSON (NDJSON).
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opendms/dms/dms/api"
)

// display shows what a command follows (a flow, a batch: its view V) as
// it changes. Not safe for concurrent use: the loop that reads the events
// owns it.
type display[V any] interface {
	// changed says the view took an event.
	changed(v V, now time.Time)
	// tick says time passed.
	tick(v V, now time.Time)
	// end says what is followed ended, or that the following stopped.
	end(v V, now time.Time)
}

// newDisplay shows a flow on w: a tree redrawn in place on a terminal,
// else one line per change of a step's state.
func newDisplay(w io.Writer) display[*flowView] {
	if tty, width := terminal(w); tty {
		return newLive(w, width, (*flowView).lines)
	}
	return &stepLog{w: w}
}

// redrawEvery throttles a live tree to about 10 redraws a second, however
// fast the events come; with no event it still redraws every second, for
// the flow's running time in its header.
const redrawEvery = 100 * time.Millisecond

// live draws a view's lines on a terminal and redraws them in place: the
// cursor goes up over the previous drawing (ANSI cursor-up), and each
// line is cleared before it is written again.
type live[V any] struct {
	w     io.Writer
	width int // columns; lines are clipped to it so none wraps (0: unknown)
	every time.Duration
	lines func(v V, now time.Time) []string // none before the first event
	drawn int                               // lines of the last drawing
	last  time.Time
	dirty bool
}

// newLive draws lines(v, now) on the terminal w of width columns, at most
// every redrawEvery.
func newLive[V any](w io.Writer, width int, lines func(V, time.Time) []string) *live[V] {
	return &live[V]{w: w, width: width, every: redrawEvery, lines: lines}
}

func (t *live[V]) changed(v V, now time.Time) {
	t.dirty = true
	t.tick(v, now)
}

func (t *live[V]) tick(v V, now time.Time) {
	since := now.Sub(t.last)
	if t.last.IsZero() || t.dirty && since >= t.every || since >= time.Second {
		t.draw(v, now)
	}
}

func (t *live[V]) end(v V, now time.Time) {
	if t.dirty || t.drawn == 0 {
		t.draw(v, now)
	}
}

func (t *live[V]) draw(v V, now time.Time) {
	lines := t.lines(v, now)
	if len(lines) == 0 { // no event yet
		return
	}
	var b strings.Builder
	if t.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", t.drawn)
	}
	for _, l := range lines {
		b.WriteString("\r\x1b[2K")
		b.WriteString(clipLine(l, t.width-1))
		b.WriteByte('\n')
	}
	if len(lines) < t.drawn {
		b.WriteString("\x1b[J") // the previous drawing was longer: clear its rest
	}
	_, _ = io.WriteString(t.w, b.String())
	t.drawn, t.last, t.dirty = len(lines), now, false
}

// stepLog writes a line each time a step's state changes (not at each
// instance's), for logs and pipes.
type stepLog struct {
	w      io.Writer
	states map[string]string // step -> state last written
}

func (l *stepLog) changed(v *flowView, _ time.Time) {
	if l.states == nil {
		l.states = map[string]string{}
	}
	for _, st := range v.flow.Steps {
		was, ok := l.states[st.Name]
		if !ok {
			was = api.FlowPending
		}
		if st.State != was {
			fmt.Fprintln(l.w, stepLine(st))
		}
		l.states[st.Name] = st.State
	}
}

func (l *stepLog) tick(*flowView, time.Time) {}

func (l *stepLog) end(v *flowView, _ time.Time) {
	if v.flow.State == api.FlowCompleted {
		fmt.Fprintf(l.w, "flow %s completed in %s\n", v.flow.ID, roundDuration(v.flow.UpdatedAt.Sub(v.flow.CreatedAt)))
	}
}

// noProgress shows nothing (--output json: the events are the output).
type noProgress[V any] struct{}

func (noProgress[V]) changed(V, time.Time) {}
func (noProgress[V]) tick(V, time.Time)    {}
func (noProgress[V]) end(V, time.Time)     {}

package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/opendms/dms/dms/api"
)

// batchView is a followed batch: every snapshot of its watches replaces
// the last. Pure: no I/O, no clock.
type batchView struct{ b api.Batch }

func (v *batchView) apply(b api.Batch) { v.b = b }
func (v *batchView) started() bool     { return v.b.ID != "" }
func (v *batchView) ended() bool       { return v.started() && v.b.State != api.BatchRunning }

// lines is the batch's picture (batchLines); none before the first
// snapshot.
func (v *batchView) lines(now time.Time) []string {
	if !v.started() {
		return nil
	}
	return batchLines(v.b, now)
}

// newBatchDisplay shows a batch on w: its picture redrawn in place on a
// terminal, else a line at each tenth of its units ended, then the
// picture.
func newBatchDisplay(w io.Writer) display[*batchView] {
	if tty, width := terminal(w); tty {
		return newLive(w, width, (*batchView).lines)
	}
	return &batchLog{w: w, tenth: -1}
}

// batchLines is the whole picture of a batch:
//
//	batch b-1f2e3d4c5b6a7980 (numbers): running, 12.3s
//	  [#######.............] 35/100 done, 2 failed, 5 running, 58 queued
//	  replicas 120, 3 disagreed, 1 late; 2.92 units/s, ETA 22s
//	  reason: 2 of 100 units failed: no quorum within their replicas
func batchLines(b api.Batch, now time.Time) []string {
	running := b.State == api.BatchRunning
	lines := []string{
		fmt.Sprintf("batch %s (%s): %s", b.ID, b.Name, b.State) + ranFor(b.CreatedAt, b.UpdatedAt, !running, now),
		"  " + progressBar(b.Counts.Completed+b.Counts.Failed, b.Counts.Units, barWidth) + " " + unitCounts(b.Counts),
		"  " + replicaCounts(b.Counts),
	}
	if c := b.Counts; running && c.Rate > 0 {
		lines[2] += "; " + formatRate(c.Rate)
		if c.ETA > 0 {
			lines[2] += ", ETA " + roundDuration(c.ETA).String()
		}
	}
	if b.Reason != "" {
		lines = append(lines, "  reason: "+b.Reason)
	}
	return lines
}

// unitCounts is "35/100 done, 2 failed, 5 running, 58 queued": done are
// the units decided.
func unitCounts(c api.BatchCounts) string {
	return fmt.Sprintf("%d/%d done, %d failed, %d running, %d queued", c.Completed, c.Units, c.Failed, c.Running, c.Queued)
}

func replicaCounts(c api.BatchCounts) string {
	return fmt.Sprintf("replicas %d, %d disagreed, %d late", c.Replicas, c.Disagreed, c.Late)
}

// formatRate writes units a second with two or three significant figures.
func formatRate(r float64) string {
	if r < 10 {
		return strconv.FormatFloat(r, 'f', 2, 64) + " units/s"
	}
	return strconv.FormatFloat(r, 'f', 0, 64) + " units/s"
}

// batchLog writes a line each time another tenth of the batch's units
// ended (not at each unit's end), for logs and pipes, and the batch's
// picture once it ended.
type batchLog struct {
	w     io.Writer
	tenth int // tenths of the units ended, as last written
}

func (l *batchLog) changed(v *batchView, _ time.Time) {
	c := v.b.Counts
	tenth := 0
	if c.Units > 0 {
		tenth = (c.Completed + c.Failed) * 10 / c.Units
	}
	if v.ended() || tenth == l.tenth {
		return
	}
	l.tenth = tenth
	fmt.Fprintf(l.w, "batch %s: %s; %s\n", v.b.ID, unitCounts(c), replicaCounts(c))
}

func (l *batchLog) tick(*batchView, time.Time) {}

func (l *batchLog) end(v *batchView, now time.Time) {
	if v.ended() {
		_ = writeLines(l.w, batchLines(v.b, now))
	}
}

// batchEndedError says why a batch that ended is not a success: it was
// cancelled, or some of its units failed.
func batchEndedError(b api.Batch) error {
	switch {
	case b.State == api.BatchCompleted && b.Counts.Failed == 0:
		return nil
	case b.State == api.BatchCompleted:
		return fmt.Errorf("batch %s: %d of %d units failed (see `dms batch results %s`)", b.ID, b.Counts.Failed, b.Counts.Units, b.ID)
	case b.Reason == "":
		return fmt.Errorf("batch %s %s", b.ID, b.State)
	}
	return fmt.Errorf("batch %s %s: %s", b.ID, b.State, b.Reason)
}

// policyLine sums up how a batch decides its units' results.
func policyLine(b api.Batch) string {
	s := b.Spec
	if s == nil {
		return ""
	}
	parts := []string{fmt.Sprintf("replication %d, quorum %d, max_replicas %d", s.Replication, s.Quorum, s.MaxReplicas)}
	if s.Adaptive {
		parts = append(parts, "adaptive")
	}
	parts = append(parts, "deadline "+s.Deadline.String(), fmt.Sprintf("parallel %d", s.Parallel))
	return "  " + strings.Join(parts, ", ")
}

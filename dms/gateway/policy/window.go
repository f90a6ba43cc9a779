package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a weekly opening: on a set of days of the week, from a start to
// an end time of day on the wall clock of a zone. A window whose end comes
// before its start runs past midnight into the next day: "Fri 22:00-06:00"
// is open from Friday 22:00 to Saturday 06:00, and not on Friday morning.
//
// Windows from ParseWindow compare equal with == exactly when their String
// forms are equal. The zero Window is never open.
type Window struct {
	days  weekdays // the days on which the window opens
	start int      // minutes after midnight, 0..1439
	end   int      // minutes after midnight, 1..1440; below start: past midnight
	loc   *time.Location
}

// maxWindow bounds the length of a window's text.
const maxWindow = 200

// windowForm is the expected form, for errors.
const windowForm = `want "DAYS HH:MM-HH:MM [ZONE]", e.g. "Mon-Fri 08:00-18:00 Europe/Berlin"`

// ParseWindow parses a window such as "Mon-Fri 08:00-18:00 Europe/Berlin":
// days, a time range and an optional zone, separated by spaces or tabs.
//
//   - Days: a day ("Mon"), a range ("Mon-Fri"; "Fri-Mon" wraps past
//     Sunday), a comma list of days and ranges ("Mon,Wed,Fri"), or "*" or
//     "daily" for every day. Day names are read in any case.
//   - Time: "HH:MM-HH:MM" on a 24-hour clock; the end may be "24:00". An end
//     before the start runs past midnight ("22:00-06:00"); an end equal to
//     the start is an empty window and refused.
//   - Zone: an IANA name (see LoadZone); "UTC" when left out.
//
// Every error matches ErrInvalid and names the window, what was wrong and
// the form expected.
func ParseWindow(s string) (Window, error) {
	if len(s) > maxWindow {
		return Window{}, fmt.Errorf("%w: window %s is %d bytes long (at most %d)", ErrInvalid, quote(s), len(s), maxWindow)
	}
	w, err := parseWindow(strings.Fields(s))
	if err != nil {
		return Window{}, fmt.Errorf("%w: window %s: %w", ErrInvalid, quote(s), err)
	}
	return w, nil
}

func parseWindow(fields []string) (Window, error) {
	if len(fields) < 2 || len(fields) > 3 {
		return Window{}, errors.New(windowForm)
	}
	days, err := parseDays(fields[0])
	if err != nil {
		return Window{}, err
	}
	start, end, err := parseSpan(fields[1])
	if err != nil {
		return Window{}, err
	}
	zone := "UTC"
	if len(fields) == 3 {
		zone = fields[2]
	}
	loc, err := loadZone(zone)
	if err != nil {
		return Window{}, err
	}
	return Window{days: days, start: start, end: end, loc: loc}, nil
}

// parseSpan reads "HH:MM-HH:MM" into minutes after midnight.
func parseSpan(s string) (start, end int, err error) {
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("time %s: want HH:MM-HH:MM, e.g. 08:00-18:00", quote(s))
	}
	if start, err = parseClock(from, false); err != nil {
		return 0, 0, err
	}
	if end, err = parseClock(to, true); err != nil {
		return 0, 0, err
	}
	if start == end {
		return 0, 0, fmt.Errorf("time %s is an empty window (for a whole day write 00:00-24:00)", quote(s))
	}
	if end == 0 {
		end = 24 * 60 // "22:00-00:00" is "22:00-24:00": one form for one window
	}
	return start, end, nil
}

// parseClock reads "HH:MM" (or "H:MM") into minutes after midnight; "24:00"
// only as an end.
func parseClock(s string, isEnd bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 || !isDigits(h) || !isDigits(m) {
		return 0, fmt.Errorf("time %s: want HH:MM, e.g. 08:00", quote(s))
	}
	hour, _ := strconv.Atoi(h)
	minute, _ := strconv.Atoi(m)
	if minute > 59 || hour > 24 || hour == 24 && (minute != 0 || !isEnd) {
		return 0, fmt.Errorf("time %s is not a time of day (want 00:00..23:59, or 24:00 as an end)", quote(s))
	}
	return hour*60 + minute, nil
}

func isDigits(s string) bool {
	return strings.Trim(s, "0123456789") == ""
}

// String is the window's canonical form, such as
// "Mon-Fri 08:00-18:00 Europe/Berlin": ParseWindow reads it back to an
// equal Window. The zero Window's is "".
func (w Window) String() string {
	if w.days == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s-%s %s", w.days, clock(w.start), clock(w.end), w.Zone())
}

func clock(minutes int) string {
	return fmt.Sprintf("%02d:%02d", minutes/60, minutes%60)
}

// Zone is the zone whose wall clock the window follows (UTC for the zero
// Window).
func (w Window) Zone() *time.Location {
	if w.loc == nil {
		return time.UTC
	}
	return w.loc
}

// Contains reports whether the window is open at t: whether t's wall clock
// in the window's zone falls within it. The start is inside, the end is not.
func (w Window) Contains(t time.Time) bool {
	lt := t.In(w.Zone())
	minute := lt.Hour()*60 + lt.Minute()
	day := lt.Weekday()
	if w.start < w.end {
		return w.days.has(day) && w.start <= minute && minute < w.end
	}
	yesterday := (day + 6) % 7
	return w.days.has(day) && minute >= w.start || w.days.has(yesterday) && minute < w.end
}

// NextOpen is the earliest instant at or after t at which the window is
// open: t itself when it is open, else the next opening, in the window's
// zone. That is within eight days of t, unless a clock change skips all of
// that week's opening (a window wholly inside a DST gap, or a skipped day):
// then it is a week later. The zero Window never opens: its NextOpen is the
// zero Time.
//
// The zone's offset is constant between two of its transitions, so there
// the wall clock moves with real time and the next opening is the next
// start time on the wall clock. If that falls after the transition, the
// search goes on from the transition (where a jump of the wall clock may
// itself open the window). Each step moves on to a later transition, and a
// zone has few in a fortnight, so the search ends within the bound above.
func (w Window) NextOpen(t time.Time) time.Time {
	if w.days == 0 {
		return time.Time{}
	}
	for {
		if w.Contains(t) {
			return t
		}
		lt := t.In(w.loc)
		next := w.nextStart(lt)
		_, end := lt.ZoneBounds()
		if end.IsZero() || next.Before(end) {
			return next
		}
		t = end
	}
}

// nextStart is the first start of the window on the wall clock after lt,
// as an instant in lt's zone, supposing lt's offset from UTC holds until
// then.
func (w Window) nextStart(lt time.Time) time.Time {
	_, offset := lt.Zone()
	y, m, d := lt.Date()
	wall := time.Date(y, m, d, lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.UTC)
	// The starts on days d+1..d+7 all come after lt, and one of those seven
	// days is in the set: the loop ends by i = 7.
	for i := 0; ; i++ {
		start := time.Date(y, m, d+i, 0, w.start, 0, 0, time.UTC)
		if w.days.has(start.Weekday()) && start.After(wall) {
			return start.Add(-time.Duration(offset) * time.Second).In(lt.Location())
		}
	}
}

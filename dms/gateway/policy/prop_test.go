package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// propZones have DST changes at 02:00 and at midnight, a 30-minute change,
// odd offsets, a skipped day, and none at all.
var propZones = []string{
	"UTC", "Europe/Berlin", "America/Santiago", "Asia/Beirut", "America/Havana",
	"Australia/Lord_Howe", "Asia/Kathmandu", "America/St_Johns", "Pacific/Apia",
}

// genWindow draws a window through its text, so the parser is drawn too.
func genWindow(t *rapid.T) Window {
	set := weekdays(rapid.IntRange(1, int(everyDay)).Draw(t, "days"))
	var days []string
	for d := time.Sunday; d <= time.Saturday; d++ {
		if set.has(d) {
			days = append(days, dayName(d))
		}
	}
	start := rapid.IntRange(0, 24*60-1).Draw(t, "start")
	end := rapid.IntRange(1, 24*60).Filter(func(e int) bool { return e != start }).Draw(t, "end")
	zone := rapid.SampledFrom(propZones).Draw(t, "zone")
	w, err := ParseWindow(fmt.Sprintf("%s %s-%s %s", strings.Join(days, ","), clock(start), clock(end), zone))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// genTime draws an instant between 2011 and 2031, often within a day of
// one of the zone's clock changes.
func genTime(t *rapid.T, loc *time.Location) time.Time {
	from, to := time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	at := time.Unix(rapid.Int64Range(from.Unix(), to.Unix()).Draw(t, "unix"), 0)
	if rapid.Bool().Draw(t, "near a change") {
		if _, end := at.In(loc).ZoneBounds(); !end.IsZero() {
			at = end.Add(time.Duration(rapid.IntRange(-26*60, 26*60).Draw(t, "minutes")) * time.Minute)
		}
	}
	return at.Add(time.Duration(rapid.IntRange(0, 59).Draw(t, "seconds")) * time.Second)
}

// naiveContains is Contains said another way: the window is a set of
// half-open spans of minutes of the week, and t's wall-clock minute of the
// week is in one of them (or in one that wraps past Sunday midnight).
func naiveContains(w Window, t time.Time) bool {
	const week = 7 * 24 * 60
	lt := t.In(w.Zone())
	at := int(lt.Weekday())*24*60 + lt.Hour()*60 + lt.Minute()
	for d := time.Sunday; d <= time.Saturday; d++ {
		if !w.days.has(d) {
			continue
		}
		start, end := int(d)*24*60+w.start, int(d)*24*60+w.end
		if w.end <= w.start {
			end += 24 * 60
		}
		if start <= at && at < end || start <= at+week && at+week < end {
			return true
		}
	}
	return false
}

func TestWindowContainsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWindow(t)
		at := genTime(t, w.Zone())
		if got := w.Contains(at); got != naiveContains(w, at) {
			t.Fatalf("%v.Contains(%v) = %v, naively %v", w, at.In(w.Zone()), got, !got)
		}
	})
}

// NextOpen(t) is at or after t and open; nothing before it is open (at
// minute steps from t, and just before it); and it is at most eight days
// ahead, or fifteen where a clock change skipped a week's opening.
func TestWindowNextOpenProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWindow(t)
		from := genTime(t, w.Zone())
		next := w.NextOpen(from)
		if next.Before(from) || !w.Contains(next) {
			t.Fatalf("%v.NextOpen(%v) = %v: before it or closed", w, from.In(w.Zone()), next)
		}
		limit := 8 * 24 * time.Hour
		if w.Zone() != time.UTC {
			limit = 15 * 24 * time.Hour
		}
		if next.Sub(from) > limit {
			t.Fatalf("%v.NextOpen(%v) = %v: more than %v ahead", w, from.In(w.Zone()), next, limit)
		}
		if !next.Equal(from) && w.Contains(next.Add(-time.Nanosecond)) {
			t.Fatalf("%v.NextOpen(%v) = %v: open just before", w, from.In(w.Zone()), next)
		}
		for at := from; at.Before(next); at = at.Add(time.Minute) {
			if w.Contains(at) {
				t.Fatalf("%v.NextOpen(%v) = %v, but it is open at %v", w, from.In(w.Zone()), next, at.In(w.Zone()))
			}
		}
	})
}

// ResetAt(now) ends now's quota day: it is on a later day (the next one,
// unless the zone skipped it), and the instant before it is still now's day.
func TestResetAtProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := Policy{Zone: mustZoneR(t, rapid.SampledFrom(propZones).Draw(t, "zone"))}
		now := genTime(t, p.zone())
		reset := p.ResetAt(now)
		if p.Day(reset) <= p.Day(now) || p.Day(reset.Add(-time.Nanosecond)) != p.Day(now) {
			t.Fatalf("ResetAt(%v) = %v in %v", now.In(p.zone()), reset, p.zone())
		}
	})
}

func mustZoneR(t *rapid.T, name string) *time.Location {
	loc, err := LoadZone(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

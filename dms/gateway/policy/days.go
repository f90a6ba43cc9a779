package policy

import (
	"fmt"
	"strings"
	"time"
)

// weekdays is a set of days of the week: bit d is time.Weekday d.
type weekdays uint8

const everyDay weekdays = 1<<7 - 1

func (s weekdays) has(d time.Weekday) bool { return s&(1<<d) != 0 }

// parseDays reads "*", "daily", a day ("Mon"), a range ("Mon-Fri", or
// "Fri-Mon" across the weekend) or a comma list of days and ranges, with
// day names in any case.
func parseDays(s string) (weekdays, error) {
	if s == "*" || strings.EqualFold(s, "daily") {
		return everyDay, nil
	}
	var set weekdays
	for item := range strings.SplitSeq(s, ",") {
		days, err := parseDayRange(item)
		if err != nil {
			return 0, err
		}
		set |= days
	}
	return set, nil
}

func parseDayRange(s string) (weekdays, error) {
	first, last, isRange := strings.Cut(s, "-")
	from, err := parseDay(first, s)
	if err != nil {
		return 0, err
	}
	to := from
	if isRange {
		if to, err = parseDay(last, s); err != nil {
			return 0, err
		}
	}
	set := weekdays(1 << from)
	for d := from; d != to; {
		d = (d + 1) % 7
		set |= 1 << d
	}
	return set, nil
}

// parseDay reads a three-letter day name; item is the list item it is
// part of, for the error.
func parseDay(s, item string) (time.Weekday, error) {
	for d := time.Sunday; d <= time.Saturday; d++ {
		if strings.EqualFold(s, dayName(d)) {
			return d, nil
		}
	}
	if s == "" {
		return 0, fmt.Errorf("missing day in %s (want Mon..Sun, a range such as Mon-Fri, a list such as Mon,Wed,Fri, or daily)", quote(item))
	}
	return 0, fmt.Errorf("unknown day %s (want Mon..Sun)", quote(s))
}

func dayName(d time.Weekday) string { return d.String()[:3] }

// String is the canonical form: "daily", or the set's runs of consecutive
// days from Monday on, each as "Mon" or "Mon-Fri", a run may wrap past
// Sunday ("Fri-Mon").
func (s weekdays) String() string {
	if s == everyDay {
		return "daily"
	}
	var runs []string
	for i := range 7 {
		d := (time.Monday + time.Weekday(i)) % 7
		if !s.has(d) || s.has((d+6)%7) {
			continue // not in the set, or not the first day of its run
		}
		last := d
		for s.has((last + 1) % 7) {
			last = (last + 1) % 7
		}
		run := dayName(d)
		if last != d {
			run += "-" + dayName(last)
		}
		runs = append(runs, run)
	}
	return strings.Join(runs, ",")
}

package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// instant parses an RFC 3339 time, such as "2026-12-07T08:00:00+01:00".
func instant(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func mustWindow(t *testing.T, s string) Window {
	t.Helper()
	w, err := ParseWindow(s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestParseWindowCanonical(t *testing.T) {
	cases := map[string]string{ // input: String()
		"Mon-Fri 08:00-18:00 Europe/Berlin":      "Mon-Fri 08:00-18:00 Europe/Berlin",
		"mon-FRI\t8:00-18:00":                    "Mon-Fri 08:00-18:00 UTC",
		"  Mon,Wed,Fri   09:30-10:00   UTC  ":    "Mon,Wed,Fri 09:30-10:00 UTC",
		"Fri-Mon 22:00-06:00 America/New_York":   "Fri-Mon 22:00-06:00 America/New_York",
		"* 00:00-24:00":                          "daily 00:00-24:00 UTC",
		"DAILY 12:00-13:00":                      "daily 12:00-13:00 UTC",
		"Mon-Sun 12:00-13:00":                    "daily 12:00-13:00 UTC",
		"Wed-Tue 12:00-13:00":                    "daily 12:00-13:00 UTC",
		"Sun,Sat 10:00-11:00":                    "Sat-Sun 10:00-11:00 UTC",
		"Sat,Sun,Mon,Wed 10:00-11:00":            "Wed,Sat-Mon 10:00-11:00 UTC",
		"Mon,Mon-Tue,Tue 10:00-11:00":            "Mon-Tue 10:00-11:00 UTC",
		"Tue-Tue 10:00-11:00":                    "Tue 10:00-11:00 UTC",
		"Mon 22:00-00:00":                        "Mon 22:00-24:00 UTC",
		"Mon 23:59-00:01":                        "Mon 23:59-00:01 UTC",
		"Mon 08:00-18:00 Etc/GMT-14":             "Mon 08:00-18:00 Etc/GMT-14",
		"Mon 08:00-18:00 America/Port-au-Prince": "Mon 08:00-18:00 America/Port-au-Prince",
	}
	for in, want := range cases {
		w, err := ParseWindow(in)
		if err != nil {
			t.Errorf("ParseWindow(%q): %v", in, err)
			continue
		}
		if w.String() != want {
			t.Errorf("ParseWindow(%q).String() = %q, want %q", in, w, want)
		}
		if again := mustWindow(t, w.String()); again != w {
			t.Errorf("ParseWindow(%q) = %v, read back as %v", in, w, again)
		}
	}
}

func TestParseWindowRefuses(t *testing.T) {
	cases := map[string]string{ // input: part of the error
		"":                                  `want "DAYS HH:MM-HH:MM [ZONE]"`,
		" \t ":                              `want "DAYS HH:MM-HH:MM [ZONE]"`,
		"Mon":                               `want "DAYS HH:MM-HH:MM [ZONE]"`,
		"Mon 08:00-18:00 UTC extra":         `want "DAYS HH:MM-HH:MM [ZONE]"`,
		"Mon-Fry 08:00-18:00":               `window "Mon-Fry 08:00-18:00": unknown day "Fry" (want Mon..Sun)`,
		"Monday 08:00-18:00":                `unknown day "Monday"`,
		"Mon- 08:00-18:00":                  `missing day in "Mon-"`,
		"Mon,,Fri 08:00-18:00":              `missing day in ""`,
		"Mon-Tue-Wed 08:00-18:00":           `unknown day "Tue-Wed"`,
		"Mon 25:00-26:00":                   `time "25:00" is not a time of day`,
		"Mon 24:00-08:00":                   `time "24:00" is not a time of day`,
		"Mon 08:00-24:01":                   `time "24:01" is not a time of day`,
		"Mon 08:60-09:00":                   `time "08:60" is not a time of day`,
		"Mon 08:00-08:00":                   `time "08:00-08:00" is an empty window (for a whole day write 00:00-24:00)`,
		"Mon 00:00-00:00":                   `is an empty window`,
		"Mon 0800-1800":                     `time "0800": want HH:MM`,
		"Mon +8:00-18:00":                   `time "+8:00": want HH:MM`,
		"Mon 123:00-18:00":                  `time "123:00": want HH:MM`,
		"Mon 08:00":                         `time "08:00": want HH:MM-HH:MM`,
		"Mon 08:00-18:00-20:00":             `time "18:00-20:00": want HH:MM`,
		"Mon 08:00-18:00 Local":             `zone "Local" is the gateway's own zone`,
		"Mon 08:00-18:00 ../../etc/passwd":  `zone "../../etc/passwd" is not an IANA zone name`,
		"Mon 08:00-18:00 /etc/passwd":       `zone "/etc/passwd" is not an IANA zone name`,
		`Mon 08:00-18:00 Europe\Berlin`:     `is not an IANA zone name`,
		"Mon 08:00-18:00 Europe//Berlin":    `is not an IANA zone name`,
		"Mon 08:00-18:00 Mars/Olympus_Mons": `unknown zone "Mars/Olympus_Mons"`,
		"Mon 08:00-18:00 " + strings.Repeat("A", 100):    `is not an IANA zone name`,
		strings.Repeat("Mon,", 1000) + "Tue 08:00-18:00": `is 4015 bytes long (at most 200)`,
	}
	for in, want := range cases {
		_, err := ParseWindow(in)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseWindow(%.40q) = %v, want an ErrInvalid with %q", in, err, want)
		}
		if err != nil && len(err.Error()) > 300 {
			t.Errorf("ParseWindow(%.40q): error of %d bytes", in, len(err.Error()))
		}
	}
}

func TestWindowContains(t *testing.T) {
	cases := []struct {
		window, at string
		want       bool
	}{
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-07T08:00:00+01:00", true},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-07T07:59:59+01:00", false},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-07T17:59:59+01:00", true},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-07T18:00:00+01:00", false},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-05T12:00:00+01:00", false},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-07T07:00:00Z", true}, // 08:00 in Berlin
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-07T07:30:00+01:00", false},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-07T07:30:00Z", true},
		// Past midnight: the days are those the window starts on.
		{"Fri 22:00-06:00", "2026-12-04T22:00:00Z", true},
		{"Fri 22:00-06:00", "2026-12-04T21:59:00Z", false},
		{"Fri 22:00-06:00", "2026-12-05T05:59:59Z", true},
		{"Fri 22:00-06:00", "2026-12-05T06:00:00Z", false},
		{"Fri 22:00-06:00", "2026-12-04T05:00:00Z", false},
		{"Fri 22:00-06:00", "2026-12-05T22:30:00Z", false},
		{"Fri-Mon 22:00-06:00", "2026-12-08T05:00:00Z", true}, // Monday night spills into Tuesday
		{"Fri-Mon 22:00-06:00", "2026-12-08T22:00:00Z", false},
		{"Sat 23:00-01:00", "2026-12-06T00:30:00Z", true}, // Saturday night into Sunday
		{"daily 00:00-24:00", "2026-12-06T23:59:59Z", true},
		// Berlin skips 02:00-03:00 on 2026-03-29: the window never opens that day.
		{"Sun 02:00-03:00 Europe/Berlin", "2026-03-29T00:59:59Z", false}, // 01:59:59 CET
		{"Sun 02:00-03:00 Europe/Berlin", "2026-03-29T01:00:00Z", false}, // 03:00 CEST
		{"Sun 01:00-04:00 Europe/Berlin", "2026-03-29T01:30:00Z", true},  // 03:30 CEST
		// Berlin repeats 02:00-03:00 on 2026-10-25: open for both.
		{"Sun 02:00-03:00 Europe/Berlin", "2026-10-24T23:59:00Z", false}, // 01:59 CEST
		{"Sun 02:00-03:00 Europe/Berlin", "2026-10-25T00:00:00Z", true},  // 02:00 CEST
		{"Sun 02:00-03:00 Europe/Berlin", "2026-10-25T01:00:00Z", true},  // 02:00 CET
		{"Sun 02:00-03:00 Europe/Berlin", "2026-10-25T01:59:00Z", true},  // 02:59 CET
		{"Sun 02:00-03:00 Europe/Berlin", "2026-10-25T02:00:00Z", false}, // 03:00 CET
		// Santiago skips Sunday 00:00-01:00 on 2026-09-06.
		{"Sun 00:00-01:00 America/Santiago", "2026-09-06T03:59:59Z", false}, // Sat 23:59:59 -04
		{"Sun 00:00-01:00 America/Santiago", "2026-09-06T04:00:00Z", false}, // Sun 01:00 -03
		{"Sat 23:00-24:00 America/Santiago", "2026-09-06T03:59:59Z", true},
	}
	for _, c := range cases {
		if got := mustWindow(t, c.window).Contains(instant(t, c.at)); got != c.want {
			t.Errorf("%q.Contains(%s) = %v, want %v", c.window, c.at, got, c.want)
		}
	}
	if (Window{}).Contains(time.Now()) {
		t.Error("the zero Window is open")
	}
}

func TestWindowNextOpen(t *testing.T) {
	cases := []struct{ window, from, want string }{
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-04T18:00:00+01:00", "2026-12-07T08:00:00+01:00"},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-04T17:00:00Z", "2026-12-07T08:00:00+01:00"},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-07T09:00:00+01:00", "2026-12-07T09:00:00+01:00"},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", "2026-12-07T07:59:30+01:00", "2026-12-07T08:00:00+01:00"},
		{"Fri 22:00-06:00", "2026-12-05T06:00:00Z", "2026-12-11T22:00:00Z"},
		{"Wed 10:00-11:00", "2026-12-09T11:00:00Z", "2026-12-16T10:00:00Z"},
		{"daily 00:00-24:00", "2026-12-09T11:00:00Z", "2026-12-09T11:00:00Z"},
		// Spring forward in Berlin, 02:00 CET -> 03:00 CEST on 2026-03-29.
		{"Sun 02:00-02:30 Europe/Berlin", "2026-03-29T00:00:00+01:00", "2026-04-05T02:00:00+02:00"}, // skipped: a week later
		{"Sun 02:30-04:00 Europe/Berlin", "2026-03-29T00:00:00+01:00", "2026-03-29T03:00:00+02:00"}, // opens with the jump
		{"Sun 02:00-04:00 Europe/Berlin", "2026-03-29T00:00:00+01:00", "2026-03-29T03:00:00+02:00"},
		{"Sun 03:00-04:00 Europe/Berlin", "2026-03-29T01:59:00+01:00", "2026-03-29T03:00:00+02:00"},
		// Fall back in Berlin, 03:00 CEST -> 02:00 CET on 2026-10-25.
		{"Sun 02:00-02:30 Europe/Berlin", "2026-10-25T02:40:00+02:00", "2026-10-25T02:00:00+01:00"}, // the second pass
		{"Sun 02:30-03:00 Europe/Berlin", "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00"},
		{"Sun 03:00-04:00 Europe/Berlin", "2026-10-25T02:10:00+02:00", "2026-10-25T03:00:00+01:00"},
		// Santiago skips Sunday 00:00-01:00 on 2026-09-06 and repeats Saturday 23:00-24:00 on 2026-04-04.
		{"Sun 00:00-00:30 America/Santiago", "2026-09-05T23:00:00-04:00", "2026-09-13T00:00:00-03:00"},
		{"Sun 00:00-02:00 America/Santiago", "2026-09-05T23:00:00-04:00", "2026-09-06T01:00:00-03:00"},
		{"Sat 23:00-23:30 America/Santiago", "2026-04-04T23:45:00-03:00", "2026-04-04T23:00:00-04:00"},
		// Samoa skipped Friday 2011-12-30 when it crossed the date line.
		{"Fri 09:00-17:00 Pacific/Apia", "2011-12-29T12:00:00-10:00", "2012-01-06T09:00:00+14:00"},
	}
	for _, c := range cases {
		w := mustWindow(t, c.window)
		got := w.NextOpen(instant(t, c.from))
		if got.Format(time.RFC3339) != c.want {
			t.Errorf("%q.NextOpen(%s) = %s, want %s", c.window, c.from, got.Format(time.RFC3339), c.want)
		}
		if !w.Contains(got) {
			t.Errorf("%q.NextOpen(%s) = %s is not open", c.window, c.from, got.Format(time.RFC3339))
		}
	}
	if got := (Window{}).NextOpen(time.Now()); !got.IsZero() {
		t.Errorf("the zero Window opens at %s", got)
	}
}

func TestWindowZone(t *testing.T) {
	cases := map[string]string{
		"Mon 08:00-18:00":                  "UTC",
		"Mon 08:00-18:00 UTC":              "UTC",
		"Mon 08:00-18:00 Europe/Berlin":    "Europe/Berlin",
		"Mon 08:00-18:00 America/Santiago": "America/Santiago",
	}
	for in, want := range cases {
		if got := mustWindow(t, in).Zone().String(); got != want {
			t.Errorf("%q.Zone() = %s, want %s", in, got, want)
		}
	}
	if (Window{}).Zone() != time.UTC || (Window{}).String() != "" {
		t.Errorf("the zero Window is %q in %s", Window{}, Window{}.Zone())
	}
}

func TestLoadZone(t *testing.T) {
	berlin, err := LoadZone("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := LoadZone("Europe/Berlin"); again != berlin {
		t.Error("two loads of Europe/Berlin give two Locations")
	}
	if utc, _ := LoadZone("UTC"); utc != time.UTC {
		t.Errorf("LoadZone(UTC) = %v, want time.UTC", utc)
	}
	for _, bad := range []string{"", "Local", "../../etc/passwd", "/etc/passwd", "Europe/../../etc/passwd", "Nowhere/City", "Europe/Berlin\x00"} {
		if _, err := LoadZone(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("LoadZone(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := LoadZone(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestValidate(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	good := Policy{
		AllowIPs:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Windows:    []Window{mustWindow(t, "Mon-Fri 08:00-18:00 Europe/Berlin")},
		DailyQuota: 5,
		Zone:       berlin,
	}
	if err := good.Validate(); err != nil {
		t.Errorf("a good policy: %v", err)
	}
	if err := (Policy{}).Validate(); err != nil {
		t.Errorf("the zero policy: %v", err)
	}
	bad := map[string]Policy{ // part of the error: policy
		"daily quota -1 is negative":    {DailyQuota: -1},
		"quota zone Local":              {Zone: time.Local},
		"window 1 is empty":             {Windows: []Window{good.Windows[0], {}}},
		"entry 0 (10.1.2.3/8)":          {AllowIPs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")}},
		"entry 0 (::ffff:10.0.0.0/104)": {AllowIPs: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}},
		"entry 1 (invalid Prefix)":      {AllowIPs: []netip.Prefix{good.AllowIPs[0], {}}},
	}
	for want, p := range bad {
		if err := p.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want an ErrInvalid with %q", err, want)
		}
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		name            string
		allow, windows  []string
		quota           int
		zone, wantZone  string
		wantAllow, want string // want: part of the error
	}{
		{name: "empty", wantZone: "UTC"},
		{name: "zone given", windows: []string{"Mon 08:00-18:00 Asia/Tokyo"}, zone: "Europe/Berlin", wantZone: "Europe/Berlin"},
		{name: "zone of the first window", windows: []string{"Mon 08:00-18:00 Asia/Tokyo", "Tue 08:00-18:00"}, wantZone: "Asia/Tokyo"},
		{name: "prefixes", allow: []string{"10.0.0.0/8", " 192.0.2.7 "}, wantZone: "UTC", wantAllow: "[10.0.0.0/8 192.0.2.7/32]"},
		{name: "bad prefix", allow: []string{"10.0.0.0/8", "10.1.2.3/8"}, want: `prefix "10.1.2.3/8"`},
		{name: "bad window", windows: []string{"Mon-Fry 08:00-18:00"}, want: `unknown day "Fry"`},
		{name: "bad zone", zone: "../../etc/passwd", want: `zone "../../etc/passwd"`},
		{name: "Local", zone: "Local", want: `zone "Local"`},
		{name: "negative quota", quota: -1, want: "daily quota -1 is negative"},
	}
	for _, c := range cases {
		p, err := Parse(c.allow, c.windows, c.quota, c.zone)
		if c.want != "" {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: Parse = %v, want an ErrInvalid with %q", c.name, err, c.want)
			}
			continue
		}
		if err != nil || p.zone().String() != c.wantZone || fmt.Sprint(p.AllowIPs) != cmp.Or(c.wantAllow, "[]") || len(p.Windows) != len(c.windows) {
			t.Errorf("%s: Parse = %+v, %v", c.name, p, err)
		}
	}
}

func TestCheck(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	office := Policy{
		AllowIPs:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")},
		Windows:    []Window{mustWindow(t, "Mon-Fri 08:00-18:00 Europe/Berlin")},
		DailyQuota: 5,
		Zone:       berlin,
	}
	twoWindows := Policy{Windows: []Window{mustWindow(t, "Mon 08:00-12:00"), mustWindow(t, "Sat 10:00-11:00")}}
	many := Policy{}
	for _, s := range []string{"10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16", "10.5.0.0/16"} {
		many.AllowIPs = append(many.AllowIPs, netip.MustParsePrefix(s))
	}
	const thursday, friday = "2026-12-03T10:00:00+01:00", "2026-12-04T19:00:00+01:00"
	cases := []struct {
		name   string
		p      Policy
		ip, at string
		used   int
		want   *Refusal // NextOpen and RetryAfter are checked when set
	}{
		{"allowed", office, "10.1.2.3", thursday, 4, nil},
		{"a mapped address is unmapped", office, "::ffff:10.1.2.3", thursday, 0, nil},
		{"the empty policy allows all", Policy{}, "203.0.113.9", friday, 1 << 30, nil},
		{"a stranger", office, "203.0.113.9", thursday, 0, &Refusal{
			Status: 403, Reason: "address 203.0.113.9 is not in the endpoint's allowlist (10.0.0.0/8, 192.168.0.0/16)"}},
		{"a stranger is refused before the hours", office, "203.0.113.9", friday, 9, &Refusal{
			Status: 403, Reason: "address 203.0.113.9 is not in the endpoint's allowlist (10.0.0.0/8, 192.168.0.0/16)"}},
		{"a long allowlist is cut", many, "203.0.113.9", thursday, 0, &Refusal{
			Status: 403, Reason: "address 203.0.113.9 is not in the endpoint's allowlist (10.0.0.0/8, 10.1.0.0/16, 10.2.0.0/16, 10.3.0.0/16, and 2 more)"}},
		{"closed", office, "10.1.2.3", friday, 0, &Refusal{
			Status:     403,
			Reason:     "the endpoint is closed now; it opens next at 2026-12-07T08:00:00+01:00 (Mon-Fri 08:00-18:00 Europe/Berlin)",
			RetryAfter: 2*24*time.Hour + 13*time.Hour,
			NextOpen:   instant(t, "2026-12-07T08:00:00+01:00"),
		}},
		{"closed is told before the quota", office, "10.1.2.3", friday, 5, &Refusal{Status: 403}},
		{"the window opening first is named", twoWindows, "10.1.2.3", friday, 0, &Refusal{
			Status:     403,
			Reason:     "the endpoint is closed now; it opens next at 2026-12-05T10:00:00Z (Sat 10:00-11:00 UTC)",
			RetryAfter: 16 * time.Hour,
		}},
		{"one of two windows open", twoWindows, "10.1.2.3", "2026-12-05T10:30:00Z", 0, nil},
		{"quota used", office, "10.1.2.3", thursday, 5, &Refusal{
			Status:     429,
			Reason:     "daily quota of 5 calls used; it resets at midnight Europe/Berlin, 2026-12-04T00:00:00+01:00",
			RetryAfter: 14 * time.Hour,
		}},
		{"quota of one", Policy{DailyQuota: 1}, "10.1.2.3", "2026-12-03T23:00:00Z", 1, &Refusal{
			Status:     429,
			Reason:     "daily quota of 1 call used; it resets at midnight UTC, 2026-12-04T00:00:00Z",
			RetryAfter: time.Hour,
		}},
	}
	for _, c := range cases {
		got := c.p.Check(netip.MustParseAddr(c.ip), instant(t, c.at), c.used)
		if !matches(got, c.want) {
			t.Errorf("%s: Check = %s, want %s", c.name, show(got), show(c.want))
		}
	}
}

func show(r *Refusal) string {
	if r == nil {
		return "nil"
	}
	return fmt.Sprintf("%+v", *r)
}

// matches compares a refusal with the fields of want that are set.
func matches(got, want *Refusal) bool {
	if got == nil || want == nil {
		return got == want
	}
	return got.Status == want.Status &&
		(want.Reason == "" || got.Reason == want.Reason) &&
		(want.RetryAfter == 0 || got.RetryAfter == want.RetryAfter) &&
		(want.NextOpen.IsZero() || got.NextOpen.Equal(want.NextOpen)) &&
		got.Error() == "policy: "+got.Reason
}

func TestDayAndResetAt(t *testing.T) {
	cases := []struct{ zone, now, day, reset string }{
		{"", "2026-12-03T23:59:59Z", "2026-12-03", "2026-12-04T00:00:00Z"},
		{"UTC", "2026-12-04T00:00:00Z", "2026-12-04", "2026-12-05T00:00:00Z"},
		{"Europe/Berlin", "2026-12-03T23:30:00Z", "2026-12-04", "2026-12-05T00:00:00+01:00"},
		{"Europe/Berlin", "2026-03-29T12:00:00+02:00", "2026-03-29", "2026-03-30T00:00:00+02:00"},
		{"Europe/Berlin", "2026-10-25T12:00:00+01:00", "2026-10-25", "2026-10-26T00:00:00+01:00"},
		// Santiago skips midnight on 2026-09-06: the day starts at 01:00.
		{"America/Santiago", "2026-09-05T22:00:00-04:00", "2026-09-05", "2026-09-06T01:00:00-03:00"},
		{"America/Santiago", "2026-09-06T01:00:00-03:00", "2026-09-06", "2026-09-07T00:00:00-03:00"},
		// and repeats 23:00-24:00 on 2026-04-04: both passes are that day.
		{"America/Santiago", "2026-04-04T23:30:00-03:00", "2026-04-04", "2026-04-05T00:00:00-04:00"},
		{"America/Santiago", "2026-04-04T23:30:00-04:00", "2026-04-04", "2026-04-05T00:00:00-04:00"},
		{"America/Havana", "2026-03-07T20:00:00-05:00", "2026-03-07", "2026-03-08T01:00:00-04:00"},
		{"Asia/Beirut", "2026-03-28T12:00:00+02:00", "2026-03-28", "2026-03-29T01:00:00+03:00"},
		// Samoa skipped 2011-12-30: the day after the 29th is the 31st.
		{"Pacific/Apia", "2011-12-29T12:00:00-10:00", "2011-12-29", "2011-12-31T00:00:00+14:00"},
	}
	for _, c := range cases {
		var p Policy
		if c.zone != "" {
			p.Zone = mustZone(t, c.zone)
		}
		now := instant(t, c.now)
		if got := p.Day(now); got != c.day {
			t.Errorf("Day(%s) in %q = %s, want %s", c.now, c.zone, got, c.day)
		}
		if got := p.ResetAt(now).Format(time.RFC3339); got != c.reset {
			t.Errorf("ResetAt(%s) in %q = %s, want %s", c.now, c.zone, got, c.reset)
		}
	}
}

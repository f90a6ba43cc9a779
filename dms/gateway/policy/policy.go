package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Policy is an endpoint's rules: who may call it, when, and how often.
type Policy struct {
	AllowIPs   []netip.Prefix // empty: any address
	Windows    []Window       // empty: always open
	DailyQuota int            // 0: no quota
	Zone       *time.Location // the zone whose midnight resets the quota; nil = UTC
}

// Statuses of a Refusal, as HTTP has them.
const (
	statusForbidden       = 403
	statusTooManyRequests = 429
)

// maxListed bounds how many allowlist entries a refusal names.
const maxListed = 4

// Parse builds a Policy from its text, as an endpoint's spec holds it, and
// validates it: allowlist entries as ParsePrefix reads them, windows as
// ParseWindow does, the quota's zone as LoadZone does. An empty zone is the
// first window's zone, or UTC when there are no windows.
func Parse(allowIPs, windows []string, dailyQuota int, zone string) (Policy, error) {
	p := Policy{DailyQuota: dailyQuota}
	for _, s := range allowIPs {
		pre, err := ParsePrefix(s)
		if err != nil {
			return Policy{}, err
		}
		p.AllowIPs = append(p.AllowIPs, pre)
	}
	for _, s := range windows {
		w, err := ParseWindow(s)
		if err != nil {
			return Policy{}, err
		}
		p.Windows = append(p.Windows, w)
	}
	loc, err := quotaZone(zone, p.Windows)
	if err != nil {
		return Policy{}, err
	}
	p.Zone = loc
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// quotaZone is the zone named, else the first window's, else nil (UTC).
func quotaZone(name string, windows []Window) (*time.Location, error) {
	switch {
	case name != "":
		return LoadZone(name)
	case len(windows) > 0:
		return windows[0].Zone(), nil
	}
	return nil, nil
}

// Validate reports the first thing wrong with p, as an error matching
// ErrInvalid: a negative quota, the Local zone, a zero Window (build
// windows with ParseWindow), or an allowlist entry ParsePrefix would refuse.
func (p Policy) Validate() error {
	if p.DailyQuota < 0 {
		return fmt.Errorf("%w: daily quota %d is negative (want 0 for none, or a number of calls)", ErrInvalid, p.DailyQuota)
	}
	if p.Zone == time.Local {
		return fmt.Errorf("%w: quota zone Local is the gateway's own zone (want an IANA name such as Europe/Berlin, or UTC)", ErrInvalid)
	}
	for i, w := range p.Windows {
		if w.days == 0 {
			return fmt.Errorf("%w: window %d is empty (build windows with ParseWindow)", ErrInvalid, i)
		}
	}
	for i, pre := range p.AllowIPs {
		if !pre.IsValid() || pre != unmapPrefix(pre.Masked()) {
			return fmt.Errorf("%w: allowlist entry %d (%s) is not a masked, unmapped prefix (build it with ParsePrefix)", ErrInvalid, i, pre)
		}
	}
	return nil
}

// Refusal says why a call is refused.
type Refusal struct {
	Status     int           // 403 (address, closed window) or 429 (quota)
	Reason     string        // a sentence for the caller
	RetryAfter time.Duration // until the window opens or the quota resets; 0 for an address
	NextOpen   time.Time     // when a closed endpoint opens next; zero otherwise
}

// Error is the Reason, prefixed with the package's name.
func (r *Refusal) Error() string { return "policy: " + r.Reason }

// Check decides a call from ip at now, when used calls were already counted
// in now's quota day (see Day). It returns nil when the call may go ahead.
// p is assumed valid (see Validate); ip is unmapped and its zone dropped
// before it is matched.
//
// The checks run cheapest and most fundamental first: the allowlist (a
// stranger learns nothing of the hours or the quota), then the hours, which
// hold for everyone alike, then the quota, the only one that depends on a
// count the caller must look up.
func (p Policy) Check(ip netip.Addr, now time.Time, used int) *Refusal {
	if r := p.checkAddress(ip.Unmap().WithZone("")); r != nil {
		return r
	}
	if r := p.checkWindows(now); r != nil {
		return r
	}
	return p.checkQuota(now, used)
}

func (p Policy) checkAddress(ip netip.Addr) *Refusal {
	if len(p.AllowIPs) == 0 || isTrusted(ip, p.AllowIPs) {
		return nil
	}
	return &Refusal{
		Status: statusForbidden,
		Reason: fmt.Sprintf("address %s is not in the endpoint's allowlist (%s)", ip, listPrefixes(p.AllowIPs)),
	}
}

// listPrefixes names the first maxListed prefixes, and how many more there are.
func listPrefixes(ps []netip.Prefix) string {
	names := make([]string, 0, maxListed+1)
	for _, pre := range ps[:min(len(ps), maxListed)] {
		names = append(names, pre.String())
	}
	if more := len(ps) - maxListed; more > 0 {
		names = append(names, fmt.Sprintf("and %d more", more))
	}
	return strings.Join(names, ", ")
}

// checkWindows refuses a call when no window is open, naming the window
// that opens first.
func (p Policy) checkWindows(now time.Time) *Refusal {
	if len(p.Windows) == 0 {
		return nil
	}
	var first Window
	var next time.Time
	for i, w := range p.Windows {
		if w.Contains(now) {
			return nil
		}
		if open := w.NextOpen(now); i == 0 || open.Before(next) {
			first, next = w, open
		}
	}
	return &Refusal{
		Status:     statusForbidden,
		Reason:     fmt.Sprintf("the endpoint is closed now; it opens next at %s (%s)", next.Format(time.RFC3339), first),
		RetryAfter: next.Sub(now),
		NextOpen:   next,
	}
}

func (p Policy) checkQuota(now time.Time, used int) *Refusal {
	if p.DailyQuota <= 0 || used < p.DailyQuota {
		return nil
	}
	reset := p.ResetAt(now)
	return &Refusal{
		Status:     statusTooManyRequests,
		Reason:     fmt.Sprintf("daily quota of %s used; it resets at midnight %s, %s", calls(p.DailyQuota), p.zone(), reset.Format(time.RFC3339)),
		RetryAfter: reset.Sub(now),
	}
}

func calls(n int) string {
	if n == 1 {
		return "1 call"
	}
	return fmt.Sprintf("%d calls", n)
}

func (p Policy) zone() *time.Location {
	if p.Zone == nil {
		return time.UTC
	}
	return p.Zone
}

// Day is the quota day that holds now, in the policy's zone, as
// "2006-01-02": the key under which the caller counts calls.
func (p Policy) Day(now time.Time) string {
	return now.In(p.zone()).Format(time.DateOnly)
}

// ResetAt is when the quota day that holds now ends: the first instant of
// the next day in the policy's zone, usually its midnight. Where a clock
// change skips midnight (America/Santiago goes from 23:59:59 to 01:00 on
// 2026-09-06), or a whole day (Pacific/Apia, 2011-12-30), it is the instant
// of the change.
func (p Policy) ResetAt(now time.Time) time.Time {
	y, m, d := now.In(p.zone()).Date()
	midnight := time.Date(y, m, d+1, 0, 0, 0, 0, p.zone())
	if midnight.Day() != time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC).Day() {
		// time.Date put the missing midnight before the change, on the day
		// that is ending; the next day begins where that offset ends.
		_, end := midnight.ZoneBounds()
		return end
	}
	return midnight
}

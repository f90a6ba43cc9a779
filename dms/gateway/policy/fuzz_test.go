package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseWindow parses arbitrary text as a window. A refusal matches
// ErrInvalid and is bounded whatever the input (each quote of it is cut to
// 64 bytes, at most four characters each when escaped); a window it accepts has a String that parses
// back to an equal window with the same String.
func FuzzParseWindow(f *testing.F) {
	for _, seed := range []string{
		"Mon-Fri 08:00-18:00 Europe/Berlin", "mon-FRI\t8:00-18:00", "Fri-Mon 22:00-06:00 America/Santiago",
		"* 00:00-24:00", "daily 12:00-13:00 UTC", "Sat,Sun,Mon,Wed 10:00-11:00", "Mon 22:00-00:00",
		"", "Mon-", "Mon 25:00-26:00", "Mon 08:00-08:00", "Mon 08:00-18:00 Local",
		"Mon 08:00-18:00 ../../etc/passwd", "Mon,,Fri 08:00-18:00", "Mon 08:00-18:00 Etc/GMT+5",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || len(err.Error()) > 1024 {
				t.Fatalf("ParseWindow(%q): error %v", s, err)
			}
			return
		}
		again, err := ParseWindow(w.String())
		if err != nil || again != w || again.String() != w.String() {
			t.Fatalf("ParseWindow(%q) = %q, read back as %q, %v", s, w, again, err)
		}
	})
}

// FuzzParsePrefix parses arbitrary text as a prefix. A refusal matches
// ErrInvalid; a prefix it accepts is valid, masked, unmapped, and its
// String parses back to it.
func FuzzParsePrefix(f *testing.F) {
	for _, seed := range []string{
		"10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "::ffff:10.0.0.0/104", "::ffff:0:0/80", " ::/0 ",
		"", "10.1.2.3/8", "fe80::1%eth0", "fe80::%eth0/64", "10.0.0.0/33", "1.2.3.4:80", "../../etc/passwd",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParsePrefix(%q): error %v", s, err)
			}
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("ParsePrefix(%q) = %v", s, p)
		}
		if again, err := ParsePrefix(p.String()); err != nil || again != p {
			t.Fatalf("ParsePrefix(%q) = %v, read back as %v, %v", s, p, again, err)
		}
	})
}

// FuzzClientIP reads arbitrary peers and X-Forwarded-For headers (two
// headers, split on '\n'). It does not panic; a refusal matches ErrInvalid;
// an address it returns is valid, unmapped and has no zone.
func FuzzClientIP(f *testing.F) {
	seeds := [][2]string{
		{"10.0.0.1:80", "6.6.6.6, 198.51.100.7, 10.0.0.2"},
		{"10.0.0.1:80", " , 198.51.100.7:4711 ,\t,\n10.0.0.2"},
		{"[::ffff:10.0.0.1]:80", "[2001:db8::7]:443"},
		{"[fe80::1%eth0]:80", "1.2.3.4"},
		{"203.0.113.9:5555", "unknown"},
		{"10.0.0.1:80", "unknown"},
		{"10.0.0.1:80", "_hidden, fe80::1%eth0"},
		{"10.0.0.1:80", "10.0.0.3, 10.0.0.2"},
		{"", ""},
		{"garbage", "1.2.3.4"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		a, err := ClientIP(remote, strings.Split(xff, "\n"), trusted)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || a.IsValid() {
				t.Fatalf("ClientIP(%q, %q) = %v, %v", remote, xff, a, err)
			}
			return
		}
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("ClientIP(%q, %q) = %v", remote, xff, a)
		}
	})
}

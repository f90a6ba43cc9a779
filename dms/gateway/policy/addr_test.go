package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	cases := map[string]string{ // input: the prefix
		"10.0.0.0/8":           "10.0.0.0/8",
		" 10.0.0.0/8\t":        "10.0.0.0/8",
		"2001:db8::/32":        "2001:db8::/32",
		"192.0.2.7":            "192.0.2.7/32",
		"2001:db8::1":          "2001:db8::1/128",
		"::ffff:10.0.0.0/104":  "10.0.0.0/8",
		"::ffff:192.0.2.7":     "192.0.2.7/32",
		"::ffff:192.0.2.7/128": "192.0.2.7/32",
		"0.0.0.0/0":            "0.0.0.0/0",
		"::/0":                 "::/0",
		"fe80::/10":            "fe80::/10",
	}
	for in, want := range cases {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v, want %s", in, p, err, want)
		}
	}
}

func TestParsePrefixRefuses(t *testing.T) {
	cases := map[string]string{ // input: part of the error
		"":                         `prefix "": want a prefix such as 10.0.0.0/8`,
		"10.0.0.0/33":              "want a prefix",
		"10.0.0.0/-1":              "want a prefix",
		"10.0.0.0/8/8":             "want a prefix",
		"10.0.0":                   "want a prefix",
		"10.0.0.0 /8":              "want a prefix",
		"example.com":              "want a prefix",
		"1.2.3.4:80":               "want a prefix",
		"../../etc/passwd":         "want a prefix",
		"10.1.2.3/8":               "has host bits set past its /8 (did you mean 10.0.0.0/8?)",
		"2001:db8::1/32":           "did you mean 2001:db8::/32?",
		"fe80::1%eth0":             "an IPv6 zone names an interface of this host",
		"fe80::%eth0/64":           "an IPv6 zone",
		strings.Repeat("1", 10000): `prefix "1111`,
	}
	for in, want := range cases {
		_, err := ParsePrefix(in)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePrefix(%.40q) = %v, want an ErrInvalid with %q", in, err, want)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("ParsePrefix(%.40q): error of %d bytes", in, len(err.Error()))
		}
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	cases := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"an untrusted peer is the client", "203.0.113.9:5555", []string{"1.2.3.4"}, "203.0.113.9"},
		{"an untrusted peer's header is not read", "203.0.113.9:5555", []string{"unknown"}, "203.0.113.9"},
		{"a bare peer address", "203.0.113.9", nil, "203.0.113.9"},
		{"an IPv6 peer", "[2001:db8::9]:443", nil, "2001:db8::9"},
		{"the peer's zone is dropped", "[fe80::1%eth0]:80", nil, "fe80::1"},
		{"a trusted peer without a header", "10.0.0.1:80", nil, "10.0.0.1"},
		{"a trusted peer forwards", "10.0.0.1:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"a forged left part is ignored", "10.0.0.1:80", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7"},
		{"trusted hops are skipped", "10.0.0.1:80", []string{"6.6.6.6, 198.51.100.7, 10.0.0.2"}, "198.51.100.7"},
		{"headers join in order", "10.0.0.1:80", []string{"6.6.6.6, 198.51.100.7", "10.0.0.2"}, "198.51.100.7"},
		{"every hop trusted: the left-most", "10.0.0.1:80", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"spaces, tabs and empty hops", "10.0.0.1:80", []string{" , 198.51.100.7 ,\t, 10.0.0.2 ,", ""}, "198.51.100.7"},
		{"a hop's port is dropped", "10.0.0.1:80", []string{"198.51.100.7:4711"}, "198.51.100.7"},
		{"an IPv6 hop with a port", "10.0.0.1:80", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"an IPv6 hop", "10.0.0.1:80", []string{"2001:db8::7"}, "2001:db8::7"},
		{"a trusted IPv6 proxy", "[2001:db8:ffff::1]:80", []string{"198.51.100.7, 2001:db8:ffff::2"}, "198.51.100.7"},
		{"a mapped hop is unmapped", "10.0.0.1:80", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
		{"a mapped peer is unmapped", "[::ffff:10.0.0.1]:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"garbage left of the client is not read", "10.0.0.1:80", []string{"unknown, _hidden, 198.51.100.7"}, "198.51.100.7"},
		{"a long forged list", "10.0.0.1:80", []string{strings.Repeat("6.6.6.6, ", 100000) + "198.51.100.7"}, "198.51.100.7"},
	}
	for _, c := range cases {
		got, err := ClientIP(c.remote, c.xff, trusted)
		if err != nil || got.String() != c.want {
			t.Errorf("%s: ClientIP(%q, %.60q) = %v, %v, want %s", c.name, c.remote, c.xff, got, err, c.want)
		}
	}
}

func TestClientIPRefuses(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		remote string
		xff    []string
		want   string // part of the error
	}{
		{"", nil, `remote address "": want ip:port`},
		{"garbage", nil, `remote address "garbage"`},
		{"10.0.0.1:99999", nil, "remote address"},
		{"10.0.0.1:80", []string{"unknown"}, `X-Forwarded-For hop "unknown" is not an IP address`},
		{"10.0.0.1:80", []string{"_hidden"}, `hop "_hidden"`},
		{"10.0.0.1:80", []string{"198.51.100.7, garbage, 10.0.0.2"}, `hop "garbage"`},
		{"10.0.0.1:80", []string{"fe80::1%eth0"}, `hop "fe80::1%eth0"`},
		{"10.0.0.1:80", []string{"[2001:db8::7]"}, `hop "[2001:db8::7]"`},
		{"10.0.0.1:80", []string{"198.51.100.7:99999"}, `hop "198.51.100.7:99999"`},
		{"10.0.0.1:80", []string{"198.51.100.7 10.0.0.2"}, `hop "198.51.100.7 10.0.0.2"`},
		{"10.0.0.1:80", []string{`for="_gazonk"`}, `hop "for=\"_gazonk\""`},
		{"10.0.0.1:80", []string{strings.Repeat("x", 100000)}, `hop "xxxx`},
	}
	for _, c := range cases {
		got, err := ClientIP(c.remote, c.xff, trusted)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) || got.IsValid() {
			t.Errorf("ClientIP(%q, %.60q) = %v, %v, want an ErrInvalid with %q", c.remote, c.xff, got, err, c.want)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("ClientIP(%q, %.60q): error of %d bytes", c.remote, c.xff, len(err.Error()))
		}
	}
}

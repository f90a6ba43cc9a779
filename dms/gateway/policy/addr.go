package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ParsePrefix parses an allowlist entry: a CIDR prefix ("10.0.0.0/8",
// "2001:db8::/32") or a bare address, taken as a /32 or /128. Spaces around
// it are ignored. An IPv4-mapped IPv6 entry ("::ffff:10.0.0.0/104") becomes
// its IPv4 form ("10.0.0.0/8"), since ClientIP and Check unmap addresses
// before matching. Refused, with an error matching ErrInvalid: IPv6 zones
// ("fe80::1%eth0": an interface of this host names no client), and host
// bits past the mask ("10.1.2.3/8" is most likely a typo; the error
// suggests the masked prefix).
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := parsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: prefix %s: %w", ErrInvalid, quote(s), err)
	}
	return p, nil
}

var errPrefixForm = errors.New("want a prefix such as 10.0.0.0/8 or 2001:db8::/32, or an address")

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, errors.New("an IPv6 zone names an interface of this host, not a client (want e.g. fe80::/10)")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errPrefixForm
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errPrefixForm
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("has host bits set past its /%d (did you mean %s?)", p.Bits(), p.Masked())
	}
	return unmapPrefix(p), nil
}

// unmapPrefix turns an IPv4-mapped prefix that lies within ::ffff:0:0/96
// into its IPv4 form; other prefixes are returned as they are.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4In6() || p.Bits() < 96 {
		return p
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
}

// ClientIP is the caller's address. It is the TCP peer (remoteAddr, as
// "ip:port" or a bare address) unless that peer is a trusted proxy; then
// the X-Forwarded-For hops (xff: the header's values in order, each a
// comma list) are read right to left, trusted proxies skipped, and the
// first untrusted hop is the client. Hops left of it are not read: a client
// can forge them. If every hop is trusted, the left-most is the client.
//
// Addresses are unmapped (::ffff:1.2.3.4 is 1.2.3.4). The peer's IPv6 zone
// is dropped. A hop may carry a port ("1.2.3.4:5678", "[2001:db8::1]:443"),
// which is dropped, as some proxies add one. Empty hops are skipped
// (RFC 9110 §5.6.1.2 has recipients ignore empty list elements). A hop that
// is read and is not an address ("unknown", an RFC 7239 obfuscated
// identifier such as "_hidden", an address with a zone) is an error
// matching ErrInvalid that names it, since the client is then unknown.
func ClientIP(remoteAddr string, xff []string, trusted []netip.Prefix) (netip.Addr, error) {
	peer, ok := parseHost(remoteAddr)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w: remote address %s: want ip:port", ErrInvalid, quote(remoteAddr))
	}
	client := peer.WithZone("")
	hops := forwardedHops(xff)
	for i := len(hops) - 1; i >= 0 && isTrusted(client, trusted); i-- {
		hop, ok := parseHost(hops[i])
		if !ok || hop.Zone() != "" {
			return netip.Addr{}, fmt.Errorf("%w: X-Forwarded-For hop %s is not an IP address", ErrInvalid, quote(hops[i]))
		}
		client = hop
	}
	return client, nil
}

// parseHost reads an address with or without a port, unmapped.
func parseHost(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	ap, err := netip.ParseAddrPort(s)
	return ap.Addr().Unmap(), err == nil
}

// forwardedHops is the X-Forwarded-For list, left to right, without spaces
// and empty elements.
func forwardedHops(xff []string) []string {
	var hops []string
	for _, v := range xff {
		for hop := range strings.SplitSeq(v, ",") {
			if hop = strings.Trim(hop, " \t"); hop != "" {
				hops = append(hops, hop)
			}
		}
	}
	return hops
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

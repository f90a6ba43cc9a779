package gateway

// Stand-ins, written to the contracts of parts being built beside this
// one: CallError and GroupBy (gwcore, calls.go and its list helpers) and
// policy.ClientIP (package policy). Delete each when its real one lands.

import (
	"errors"
	"net/netip"
	"strings"
)

// CallError is an error of a call that made a task.
type CallError struct {
	Task string
	Err  error
}

func (e *CallError) Error() string { return e.Err.Error() }
func (e *CallError) Unwrap() error { return e.Err }

// Group is the items whose tag has one value ("" for those without it).
type Group[T any] struct {
	Value string `json:"value"`
	Items []T    `json:"items"`
}

// GroupBy groups items by the value of their tag key, in the order of
// first appearance.
func GroupBy[T any](items []T, tags func(T) map[string]string, key string) []Group[T] {
	var groups []Group[T]
	at := map[string]int{}
	for _, it := range items {
		v := tags(it)[key]
		i, ok := at[v]
		if !ok {
			i = len(groups)
			at[v] = i
			groups = append(groups, Group[T]{Value: v})
		}
		groups[i].Items = append(groups[i].Items, it)
	}
	return groups
}

// clientIP stands in for policy.ClientIP: the peer, or, from a trusted
// peer, the right-most untrusted X-Forwarded-For hop.
func clientIP(remoteAddr string, xff []string, trusted []netip.Prefix) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}, err
	}
	client := ap.Addr().Unmap()
	var hops []string
	for _, v := range xff {
		for h := range strings.SplitSeq(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	for i := len(hops) - 1; i >= 0 && trustedAddr(client, trusted); i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			return netip.Addr{}, errors.New("X-Forwarded-For hop " + hops[i] + " is not an IP address")
		}
		client = a.Unmap()
	}
	return client, nil
}

func trustedAddr(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

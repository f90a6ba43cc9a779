package gateway

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opendms/dms/dms/api"
)

// match reports whether a thing named name with tags passes q: it carries
// every tag of q.Tags, and q.Search (ignoring case) is in its name, a tag
// key or a tag value.
func (q Query) match(name string, tags map[string]string) bool {
	for k, v := range q.Tags {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	if q.Search == "" {
		return true
	}
	search := strings.ToLower(q.Search)
	if strings.Contains(strings.ToLower(name), search) {
		return true
	}
	for k, v := range tags {
		if strings.Contains(strings.ToLower(k), search) || strings.Contains(strings.ToLower(v), search) {
			return true
		}
	}
	return false
}

// orders are the sorts of a list: name (the default) A to Z, created
// newest first, calls most first. Ties go by name.
type orders[T any] map[string]func(a, b T) int

var functionOrders = orders[Function]{
	"name":    func(a, b Function) int { return strings.Compare(a.Name, b.Name) },
	"created": func(a, b Function) int { return b.CreatedAt.Compare(a.CreatedAt) },
	"calls":   func(a, b Function) int { return cmp.Compare(b.Calls, a.Calls) },
}

var endpointOrders = orders[Endpoint]{
	"name":    func(a, b Endpoint) int { return strings.Compare(a.Name, b.Name) },
	"created": func(a, b Endpoint) int { return b.CreatedAt.Compare(a.CreatedAt) },
}

// sort orders items by the sort named by; ErrBadRequest for one it does
// not know. name gives an item's name, for ties.
func (o orders[T]) sort(items []T, by string, name func(T) string) error {
	if by == "" {
		by = "name"
	}
	order, ok := o[by]
	if !ok {
		return fmt.Errorf("%w: unknown sort %s (want %s)", api.ErrBadRequest, quote(by), strings.Join(slices.Sorted(maps.Keys(o)), ", "))
	}
	slices.SortFunc(items, func(a, b T) int { return cmp.Or(order(a, b), strings.Compare(name(a), name(b))) })
	return nil
}

// Group is the items that share one value of a tag.
type Group[T any] struct {
	Value string `json:"value"`
	Items []T    `json:"items"`
}

// GroupBy groups items by their value of the tag key: groups in order of
// value, items in the order given, and the items without the tag last, in
// a group of Value "" (tag values are never empty).
func GroupBy[T any](items []T, tags func(T) map[string]string, key string) []Group[T] {
	byValue := map[string][]T{}
	for _, it := range items {
		v := tags(it)[key]
		byValue[v] = append(byValue[v], it)
	}
	values := slices.Sorted(maps.Keys(byValue))
	if len(values) > 0 && values[0] == "" {
		values = append(values[1:], "")
	}
	out := make([]Group[T], len(values))
	for i, v := range values {
		out[i] = Group[T]{Value: v, Items: byValue[v]}
	}
	return out
}

package gateway

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/opendms/dms/jobs"
)

// Bounds of tags, per function or endpoint.
const (
	MaxTags     = 32
	MaxTagKey   = 63  // bytes
	MaxTagValue = 255 // bytes
)

// problems collects what is wrong with the fields of a Deploy, tags or an
// EndpointSpec; err gives them as one *jobs.SpecError (HTTP 400, with
// each field named).
type problems []jobs.FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, jobs.FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &jobs.SpecError{Problems: p}
}

// checkTags reports bad tags: at most MaxTags, each key 1 to MaxTagKey
// bytes of printable text without spaces or '=', each value 1 to
// MaxTagValue bytes of printable text.
func checkTags(p *problems, tags map[string]string) {
	if len(tags) > MaxTags {
		p.add("tags", "%d tags; the limit is %d", len(tags), MaxTags)
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		field := "tags." + clip(k)
		switch {
		case k == "":
			p.add("tags", "a tag key must not be empty")
		case len(k) > MaxTagKey:
			p.add(field, "the key is %d bytes; the limit is %d", len(k), MaxTagKey)
		case !printable(k) || strings.ContainsAny(k, " =,"):
			p.add(field, "the key must be printable text without spaces, '=' or ','")
		}
		switch v := tags[k]; {
		case v == "":
			p.add(field, "the value must not be empty")
		case len(v) > MaxTagValue:
			p.add(field, "the value is %d bytes; the limit is %d", len(v), MaxTagValue)
		case !printable(v):
			p.add(field, "the value must be printable text")
		}
	}
}

func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// clip cuts s for a field name or a message.
func clip(s string) string {
	if len(s) <= MaxTagKey {
		return s
	}
	return strings.ToValidUTF8(s[:MaxTagKey], "") + "..."
}

// ListTags lists the tags in use in the account, by key and value, with
// how many functions and endpoints carry each.
func (s *scope) ListTags(ctx context.Context) ([]Tag, error) {
	count := map[[2]string]*Tag{}
	tally := func(tags map[string]string, fn, ep int) {
		for k, v := range tags {
			t := count[[2]string{k, v}]
			if t == nil {
				t = &Tag{Key: k, Value: v}
				count[[2]string{k, v}] = t
			}
			t.Functions += fn
			t.Endpoints += ep
		}
	}
	err := each(s.g.db, functionsOf(s.account), func(_ string, f Function) error {
		tally(f.Tags, 1, 0)
		return nil
	})
	if err != nil {
		return nil, err
	}
	eps, err := s.g.endpointsOf(s.account)
	if err != nil {
		return nil, err
	}
	for _, e := range eps {
		tally(e.Tags, 0, 1)
	}
	out := make([]Tag, 0, len(count))
	for _, t := range count {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Tag) int { return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(a.Value, b.Value)) })
	return out, nil
}

package jobs

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every failure is a
// *SpecError, and that a parsed spec survives a JSON round trip unchanged.
// Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) || !errors.Is(err, ErrInvalidSpec) || len(se.Problems) == 0 {
				t.Fatalf("Parse error %v (%T) is not a *SpecError with problems", err, err)
			}
			return
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal %+v: %v", s, err)
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatalf("JSON form %s does not parse: %v", b, err)
		}
		if !reflect.DeepEqual(s, back) {
			t.Fatalf("round trip changed the spec\nbefore %+v\nafter  %+v\nJSON %s", s, back, b)
		}
	})
}

package jobs

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/types"
)

// binder decodes a node tree into a struct, field by field, by the fields'
// JSON names, collecting a problem for every unknown field and every value
// that does not decode. A field whose value fails keeps its default.
type binder struct {
	problems problems
}

// add records a problem at path, with the line of n when known.
func (b *binder) add(path string, n *yaml.Node, format string, args ...any) {
	b.problems.add(path, "%s%s", fmt.Sprintf(format, args...), at(n))
}

// at names the line of n, when known.
func at(n *yaml.Node) string {
	if n.Line <= 0 {
		return ""
	}
	return fmt.Sprintf(" (line %d)", n.Line)
}

// object binds mapping n to struct v.
func (b *binder) object(path string, n *yaml.Node, v reflect.Value) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		b.add(path, n, "want a mapping of fields, got %s", describe(n))
		return
	}
	fields := jsonFields(v.Type())
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		idx, ok := fields[key.Value]
		switch {
		case key.Kind != yaml.ScalarNode:
			b.add(path, key, "field names must be plain strings")
		case !ok:
			b.problems.add(path, "unknown field %s%s; %s", clip(key.Value), at(key), suggest(key.Value, v.Type()))
		case seen[key.Value] != nil:
			b.add(join(path, key.Value), key, "given twice, first at line %d", seen[key.Value].Line)
		default:
			seen[key.Value] = key
			b.value(join(path, key.Value), val, v.Field(idx))
		}
	}
}

// value binds n to the field f; null keeps the field's default.
func (b *binder) value(path string, n *yaml.Node, f reflect.Value) {
	switch {
	case deref(n).ShortTag() == "!!null":
	case unmarshaler(f):
		b.leaf(path, n, f)
	case f.Kind() == reflect.Struct:
		b.object(path, n, f)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
		b.list(path, n, f)
	case (f.Kind() == reflect.Int || f.Kind() == reflect.Int64) && deref(n).ShortTag() != "!!int" && !textual(f):
		b.add(path, n, "want %s, got %s", want(f.Type()), describe(n))
	default:
		b.leaf(path, n, f)
	}
}

// list binds sequence n to f, a slice of structs, item by item as object
// does: an item's unknown field is a problem, not dropped. Items are
// named path[i].
func (b *binder) list(path string, n *yaml.Node, f reflect.Value) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		b.add(path, n, "want a list of mappings, got %s", describe(n))
		return
	}
	items := reflect.MakeSlice(f.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		b.object(fmt.Sprintf("%s[%d]", path, i), item, items.Index(i))
	}
	f.Set(items)
}

// leaf decodes n into f with the YAML decoder (which calls UnmarshalText for
// sizes, CPU quantities and durations), turning its errors into ours.
func (b *binder) leaf(path string, n *yaml.Node, f reflect.Value) {
	tmp := reflect.New(f.Type())
	err := n.Decode(tmp.Interface())
	var te *yaml.TypeError
	switch {
	case err == nil:
		f.Set(tmp.Elem())
	case errors.As(err, &te):
		b.add(path, n, "want %s, got %s", want(f.Type()), describeAs(n, f.Type()))
	default:
		b.add(path, n, "%s", withoutPackage(err.Error()))
	}
}

// unmarshaler reports whether f reads itself from a YAML node of any
// kind, as a batch's managers do (a count or a list).
func unmarshaler(f reflect.Value) bool {
	_, ok := f.Addr().Interface().(yaml.Unmarshaler)
	return ok
}

// textual reports whether f reads itself from text, as a Reschedule does
// ("never"), rather than only from a YAML integer.
func textual(f reflect.Value) bool {
	_, ok := f.Addr().Interface().(encoding.TextUnmarshaler)
	return ok
}

// jsonFields maps the JSON names of t's exported fields to their indexes.
func jsonFields(t reflect.Type) map[string]int {
	m := make(map[string]int)
	for i := range t.NumField() {
		if name := jsonName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

// suggest names the known field closest to an unknown one, or lists them all.
func suggest(name string, t reflect.Type) string {
	var names []string
	for i := range t.NumField() {
		if n := jsonName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	best, bestDist := "", 3 // suggest only within two edits
	for _, n := range names {
		if len(name) > 64 {
			break // a long name is no typo, and not worth the time
		}
		if d := editDistance(name, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "known fields: " + strings.Join(names, ", ")
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	return name
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// deref follows an alias to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// describe names what a node holds, for "want X, got Y".
func describe(n *yaml.Node) string {
	switch n = deref(n); n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return clip(n.Value)
	}
	return "nothing"
}

// clip quotes s, cut short if long: problems echo what the user wrote.
func clip(s string) string {
	if len(s) > 40 {
		return strconv.Quote(s[:40]) + "..."
	}
	return strconv.Quote(s)
}

// describeAs is describe, except that a list or mapping of the right shape
// with a bad item says so.
func describeAs(n *yaml.Node, t reflect.Type) string {
	k := deref(n).Kind
	if (k == yaml.SequenceNode && t.Kind() == reflect.Slice) || (k == yaml.MappingNode && t.Kind() == reflect.Map) {
		return "an item that is not a string"
	}
	return describe(n)
}

// want names what a field of type t accepts.
func want(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[types.Bytes]():
		return "a size such as 64MiB, 2GB or 1048576"
	case reflect.TypeFor[types.MilliCPU]():
		return "cores such as 2 or 0.5, or millicores such as 500m"
	case reflect.TypeFor[Duration]():
		return "a duration such as 30s, 5m or 1h30m"
	case reflect.TypeFor[Reschedule]():
		return "a whole number such as 3, or never"
	case reflect.TypeFor[types.Credits]():
		return "an amount of credits such as 2.5 or 0.000001"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list of strings"
	case reflect.Map:
		return "a mapping of names to strings"
	}
	return t.String()
}

// withoutPackage drops the "types: " or "jobs: " prefix of our own errors
// (in a spec problem the package is noise), and cuts a long message short:
// it may quote a value of any length.
func withoutPackage(msg string) string {
	for _, p := range []string{"types: ", "jobs: "} {
		if rest, ok := strings.CutPrefix(msg, p); ok {
			msg = rest
			break
		}
	}
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "..."
	}
	return msg
}

package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"gopkg.in/yaml.v3"
)

// maxJSONDepth bounds nesting; a spec needs three levels.
const maxJSONDepth = 16

// jsonTree converts a JSON document into the YAML node tree the binder
// reads, keeping key order, duplicate keys and line numbers.
func jsonTree(data []byte) (*yaml.Node, error) {
	r := &jsonReader{dec: json.NewDecoder(bytes.NewReader(data)), lines: newlineOffsets(data)}
	r.dec.UseNumber()
	n, err := r.value(0)
	if err == nil {
		if _, err = r.dec.Token(); errors.Is(err, io.EOF) {
			return n, nil
		}
		err = errors.New("data after the end of the object")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("JSON syntax: line %d: %s", r.lineAt(se.Offset), se.Error())
	}
	return nil, fmt.Errorf("JSON syntax: line %d: %s", r.lineAt(r.dec.InputOffset()), err.Error())
}

type jsonReader struct {
	dec   *json.Decoder
	lines []int64 // offsets of the newlines in the document
}

// lineAt returns the 1-based line holding byte offset off.
func (r *jsonReader) lineAt(off int64) int {
	return 1 + sort.Search(len(r.lines), func(i int) bool { return r.lines[i] >= off })
}

func newlineOffsets(data []byte) []int64 {
	var offs []int64
	for i, c := range data {
		if c == '\n' {
			offs = append(offs, int64(i))
		}
	}
	return offs
}

// value reads one JSON value as a node.
func (r *jsonReader) value(depth int) (*yaml.Node, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("nested too deeply")
	}
	tok, err := r.dec.Token()
	if err != nil {
		return nil, err
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Line: r.lineAt(r.dec.InputOffset())}
	switch t := tok.(type) {
	case json.Delim:
		if t != '{' && t != '[' {
			return nil, fmt.Errorf("unexpected %q", rune(t))
		}
		return r.container(t, n.Line, depth)
	case string:
		n.Tag, n.Value = "!!str", t
	case json.Number:
		n.Value = t.String() // untagged: resolved as an int or a float
	case bool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(t)
	case nil:
		n.Tag, n.Value = "!!null", "null"
	}
	return n, nil
}

// container reads the rest of an object or array opened by d.
func (r *jsonReader) container(d json.Delim, line, depth int) (*yaml.Node, error) {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line}
	if d == '{' {
		n.Kind, n.Tag = yaml.MappingNode, "!!map"
	}
	for r.dec.More() {
		if n.Kind == yaml.MappingNode {
			key, err := r.value(depth + 1) // the decoder only yields strings here
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, key)
		}
		v, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, v)
	}
	_, err := r.dec.Token() // the closing delimiter
	return n, err
}

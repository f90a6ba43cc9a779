package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Parse reads a job spec, as JSON when its first non-space byte is '{' and
// as YAML otherwise, fills in defaults and validates it. Every error is a
// *SpecError listing all problems found; Parse never panics.
func Parse(data []byte) (*Spec, error) {
	if len(data) > MaxSpecSize {
		return nil, problems{{Problem: fmt.Sprintf("%d bytes; the limit is %d", len(data), MaxSpecSize)}}.err()
	}
	root, err := parseTree(data)
	if err != nil {
		return nil, problems{{Problem: err.Error()}}.err()
	}
	s := defaultSpec()
	var b binder
	b.object("", root, reflect.ValueOf(s).Elem())
	s.normalize()
	if err := b.problems.merge(s.check()).err(); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseFile reads and parses the spec at path. Relative paths in it
// (module, input_dir) resolve against the file's directory.
func ParseFile(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("job spec: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("job spec: reading %s: %w", path, err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.dir = filepath.Dir(path)
	return s, nil
}

// merge appends the validation problems, except for fields that already
// have a decoding problem: they hold their default, and would only add noise.
func (p problems) merge(valid problems) problems {
	failed := make(map[string]bool, len(p))
	for _, fe := range p {
		failed[fe.Field] = true
	}
	for _, fe := range valid {
		if !failed[fe.Field] {
			p = append(p, fe)
		}
	}
	return p
}

// parseTree parses data into a YAML node tree. JSON documents are converted
// to the same tree, so both formats share one decoder.
func parseTree(data []byte) (*yaml.Node, error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return jsonTree(data)
	}
	return yamlTree(data)
}

func yamlTree(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document")
		}
		return nil, fmt.Errorf("YAML syntax: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document (a line holding only --- starts another)")
	}
	if len(doc.Content) != 1 {
		return nil, errors.New("empty document")
	}
	return doc.Content[0], nil
}

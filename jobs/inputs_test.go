package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/opendms/dms/types"
)

// Two DMS PeerIDs and blob CIDs for input files.
var (
	peerA = types.PeerIDFromPublicKey(make([]byte, 32))
	peerB = types.PeerIDFromPublicKey([]byte(strings.Repeat("b", 32)))
	cidX  = types.CIDOf([]byte("x")).String()
	cidY  = types.CIDOf([]byte("y")).String()
)

func TestParseInputFiles(t *testing.T) {
	doc := fmt.Sprintf(`
name: reduce
module: reduce.wasm
input_dir: ./data
input_files:
  - {path: counts/0, cid: %s, size: 12, from: [%s, %s]}
  - path: counts/1
    cid: %s
`, cidX, peerA, peerB, cidY)
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []types.InputFile{{Path: "counts/0", CID: cidX, Size: 12, From: []string{peerA, peerB}}, {Path: "counts/1", CID: cidY}}
	if !reflect.DeepEqual(s.InputFiles, want) {
		t.Fatalf("input files %+v\nwant %+v", s.InputFiles, want)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("JSON form %s parsed to %+v, %v", b, back, err)
	}
	task := s.Task("m", "", "")
	if !reflect.DeepEqual(task.Files, want) {
		t.Fatalf("task files %+v", task.Files)
	}
	task.Files[0].From[0], task.Files[1].Path = "changed", "changed"
	if s.InputFiles[0].From[0] != peerA || s.InputFiles[1].Path != "counts/1" {
		t.Fatal("Task shares its input files with the spec")
	}
	empty, err := Parse([]byte("name: x\nmodule: m\ninput_files: []\n"))
	if err != nil || empty.InputFiles != nil {
		t.Fatalf("an empty list: %+v, %v", empty.InputFiles, err)
	}
}

func TestParseInputFilesErrors(t *testing.T) {
	head := "name: x\nmodule: m\ninput_files:\n"
	file := func(path string) string { return fmt.Sprintf("  - {path: %q, cid: %s}\n", path, cidX) }
	many := &strings.Builder{}
	for i := range types.MaxInputFiles + 1 {
		fmt.Fprintf(many, "  - {path: f%d, cid: %s}\n", i, cidX)
	}
	for name, tc := range map[string]struct {
		doc  string
		want string
	}{
		"parent":         {head + file("../x"), `input_files[0].path: "../x" has a ".." element`},
		"absolute":       {head + file("/etc"), `input_files[0].path: "/etc" is absolute`},
		"climbs":         {head + file("a/../../b"), `input_files[0].path: "a/../../b" has a ".." element`},
		"empty":          {head + file(""), "input_files[0].path: empty path"},
		"double slash":   {head + file("a//b"), `input_files[0].path: "a//b" is not a clean path (write "a/b")`},
		"NUL":            {head + file("a\x00b"), "input_files[0].path: " + `"a\x00b" holds a control character`},
		"duplicate":      {head + file("a") + file("a"), `input_files[1].path: "a" is also the path of file 0`},
		"file as dir":    {head + file("a") + file("a/b"), `input_files[0].path: "a" is a file, and also a directory of file 1`},
		"bad cid":        {head + "  - {path: a, cid: bafkrei}\n", `input_files[0].cid: "bafkrei" is not a CID`},
		"bad peer":       {head + fmt.Sprintf("  - {path: a, cid: %s, from: [QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N]}\n", cidX), "input_files[0].from[0]: " + `"QmYy`},
		"negative size":  {head + fmt.Sprintf("  - {path: a, cid: %s, size: -1}\n", cidX), "input_files[0].size: must not be negative"},
		"size as text":   {head + fmt.Sprintf("  - {path: a, cid: %s, size: 1MiB}\n", cidX), `input_files[0].size: want a whole number, got "1MiB"`},
		"unknown field":  {head + fmt.Sprintf("  - {paht: a, cid: %s}\n", cidX), `input_files[0]: unknown field "paht" (line 4); did you mean "path"?`},
		"not a list":     {"name: x\nmodule: m\ninput_files: {path: a}\n", "input_files: want a list of mappings, got a mapping (line 3)"},
		"item not a map": {head + "  - a\n", `input_files[0]: want a mapping of fields, got "a" (line 4)`},
		"10,001 files":   {head + many.String(), "input_files: 10001 files; the limit is 10000"},
	} {
		_, err := Parse([]byte(tc.doc))
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %.300v\nwant %s", name, err, tc.want)
		}
	}
}

func TestCheckInputFiles(t *testing.T) {
	if err := CheckInputFiles([]types.InputFile{{Path: "a", CID: cidX, From: []string{peerA}}}); err != nil {
		t.Fatal(err)
	}
	err := CheckInputFiles([]types.InputFile{{Path: "a/", CID: cidX}})
	var se *SpecError
	if !errors.As(err, &se) || !errors.Is(err, ErrInvalidSpec) || se.Problems[0].Field != "input_files[0].path" {
		t.Fatalf("got %v", err)
	}
}

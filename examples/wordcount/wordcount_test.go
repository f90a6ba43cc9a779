package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"unicode"
)

var update = flag.Bool("update", false, "rewrite expected.txt from text/")

// words is the words of s as Count sees them, in order.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// checkSplit checks what every split of text into n parts must satisfy.
func checkSplit(t *testing.T, text string, n int, parts [][]byte) {
	t.Helper()
	if len(parts) != n {
		t.Fatalf("n=%d: %d parts", n, len(parts))
	}
	if got := string(bytes.Join(parts, nil)); got != text {
		t.Fatalf("n=%d: parts concatenate to %q, want %q", n, got, text)
	}
	var fields, ws []string
	longest := 0
	for _, f := range strings.Fields(text) {
		longest = max(longest, len(f))
	}
	for i, p := range parts {
		// Cut nowhere but next to white space: the fields (and the words)
		// of the parts, one after another, are those of the text.
		fields = append(fields, strings.Fields(string(p))...)
		ws = append(ws, words(string(p))...)
		// Nearly equal: a cut is at most half a field from its target.
		if d := len(p) - len(text)/n; d > longest+2 || d < -longest-2 {
			t.Errorf("n=%d: part %d has %d bytes, an equal share is %d, the longest word %d", n, i, len(p), len(text)/n, longest)
		}
	}
	if want := strings.Fields(text); !slices.Equal(fields, want) {
		t.Errorf("n=%d: fields of the parts %q, want %q (a word was cut)", n, fields, want)
	}
	if want := words(text); !slices.Equal(ws, want) {
		t.Errorf("n=%d: words of the parts %q, want %q (a word was cut)", n, ws, want)
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		n    int
		want []string // nil: check only the invariants
	}{
		{"one part", "one two three", 1, []string{"one two three"}},
		{"two parts", "one two three four", 2, []string{"one two ", "three four"}},
		{"nearest cut", "aaaa bbbbbbbbbbbbbbbb", 2, []string{"aaaa ", "bbbbbbbbbbbbbbbb"}},
		{"more parts than words", "a b", 5, []string{"", "a", "", " ", "b"}},
		{"one long word", "supercalifragilistic", 3, []string{"", "supercalifragilistic", ""}},
		{"empty", "", 3, []string{"", "", ""}},
		{"only space", "   \n\t ", 2, []string{"   ", "\n\t "}},
		{"accents", "café naïve Zürich déjà vu crème brûlée", 3, nil},
		{"unicode space", "日本語\u3000テキスト\u00a0über\u2003façade", 4, nil},
		{"invalid utf-8", "ab\xff\xfe cd \xffef gh", 3, nil},
		{"lines", "first line\nsecond line\r\nthird\n\n", 4, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts, err := Split([]byte(tc.text), tc.n)
			if err != nil {
				t.Fatal(err)
			}
			checkSplit(t, tc.text, tc.n, parts)
			if tc.want != nil {
				got := make([]string, len(parts))
				for i, p := range parts {
					got[i] = string(p)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("Split(%q, %d) = %q, want %q", tc.text, tc.n, got, tc.want)
				}
			}
			// Every number of parts, up to more than there are bytes.
			for n := 1; n <= len(tc.text)+2; n++ {
				parts, err := Split([]byte(tc.text), n)
				if err != nil {
					t.Fatal(err)
				}
				checkSplit(t, tc.text, n, parts)
			}
		})
	}
}

func TestSplitText(t *testing.T) {
	text, err := Text(os.DirFS("text"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 3, 4, 7, 16, 100, 1000, MaxParts} {
		parts, err := Split(text, n)
		if err != nil {
			t.Fatal(err)
		}
		checkSplit(t, string(text), n, parts)
	}
}

func TestSplitBadN(t *testing.T) {
	for _, n := range []int{0, -1, MaxParts + 1} {
		if _, err := Split([]byte("a b"), n); err == nil {
			t.Errorf("Split(_, %d): no error", n)
		}
	}
}

func TestText(t *testing.T) {
	fsys := fstest.MapFS{
		"b.txt":     {Data: []byte("world")},
		"a.txt":     {Data: []byte("hello")},
		"a/x.txt":   {Data: []byte("mid\n")},
		"a/y.txt":   {Data: []byte("")},
		"c.txt":     {Data: []byte("end")},
		"d/e/f.txt": {Data: []byte("\tdeep")},
		"link":      {Data: []byte("a.txt"), Mode: fs.ModeSymlink},
	}
	got, err := Text(fsys)
	if err != nil {
		t.Fatal(err)
	}
	// Sorted by path as strings ("a.txt" < "a/x.txt"), a newline between two
	// files only where no white space separates them; no symbolic link.
	if want := "hello\nmid\nworld\nend\tdeep"; string(got) != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
}

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		text string
		want Counts
	}{
		{"", Counts{}},
		{" \n\t.,;! ", Counts{}},
		{"Hello, hello HELLO!", Counts{"hello": 3}},
		{"don't stop", Counts{"don": 1, "t": 1, "stop": 1}},
		{"snake_case and kebab-case", Counts{"snake": 1, "case": 2, "and": 1, "kebab": 1}},
		{"x2 2x 42 4.2", Counts{"x2": 1, "2x": 1, "42": 1, "4": 1, "2": 1}},
		{"Café CAFÉ café naïve Zürich zürich", Counts{"café": 3, "naïve": 1, "zürich": 2}},
		{"ΣΟΦΙΑ σοφια", Counts{"σοφια": 2}},
		{"日本語\u3000日本語", Counts{"日本語": 2}},
		{"a\u00a0b\u2003a", Counts{"a": 2, "b": 1}},
		{"٣٤ ½", Counts{"٣٤": 1}},              // Arabic-Indic digits are digits; ½ is not
		{"ab\xffcd", Counts{"ab": 1, "cd": 1}}, // invalid UTF-8 separates
	} {
		c := Counts{}
		if err := c.Count(strings.NewReader(tc.text)); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c, tc.want) {
			t.Errorf("Count(%q) = %v, want %v", tc.text, c, tc.want)
		}
	}
}

func TestCountFS(t *testing.T) {
	// Each file on its own: "foo" and "bar" are not "foobar".
	c, err := CountFS(fstest.MapFS{"a.txt": {Data: []byte("foo")}, "b/c.txt": {Data: []byte("bar Foo")}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counts{"foo": 2, "bar": 1}); !reflect.DeepEqual(c, want) {
		t.Errorf("CountFS = %v, want %v", c, want)
	}
}

func TestWriteCounts(t *testing.T) {
	c := Counts{"b": 2, "a": 1, "c": 2, "é": 1, "z": 3}
	var byWord, byCount strings.Builder
	if err := WriteCounts(&byWord, c.ByWord()); err != nil {
		t.Fatal(err)
	}
	if err := WriteCounts(&byCount, c.ByCount()); err != nil {
		t.Fatal(err)
	}
	if want := "a\t1\nb\t2\nc\t2\nz\t3\né\t1\n"; byWord.String() != want {
		t.Errorf("by word:\n%s\nwant:\n%s", byWord.String(), want)
	}
	if want := "z\t3\nb\t2\nc\t2\na\t1\né\t1\n"; byCount.String() != want {
		t.Errorf("by count:\n%s\nwant:\n%s", byCount.String(), want)
	}
}

func TestReduce(t *testing.T) {
	c, err := Reduce(fstest.MapFS{
		"counts/0":   {Data: []byte("a\t1\nb\t2\n")},
		"counts/1":   {Data: []byte("b\t3\nc\t1")}, // no final newline
		"counts/2":   {Data: []byte("")},
		"counts/x/3": {Data: []byte("a\t10\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counts{"a": 11, "b": 5, "c": 1}); !reflect.DeepEqual(c, want) {
		t.Errorf("Reduce = %v, want %v", c, want)
	}
}

func TestReduceMalformed(t *testing.T) {
	for _, tc := range []struct {
		data string
		line int
	}{
		{"a 1\n", 1},
		{"a\t1\nb\n", 2},
		{"\t3\n", 1},
		{"a\t\n", 1},
		{"a\t-1\n", 1},
		{"a\t+1\n", 1},
		{"a\tx\n", 1},
		{"a\t1\t2\n", 1},
		{"a\t3\r\n", 1},
		{"a\t1\n\nb\t2\n", 2},
		{"a\t1\nb\t2\nc\t99999999999999999999\n", 3},
		{"a\t9223372036854775807\na\t1\n", 2},
		{"a\t1\nb", 2},
	} {
		_, err := Reduce(fstest.MapFS{"counts/ok": {Data: []byte("z\t1\n")}, "counts/part-1.txt": {Data: []byte(tc.data)}})
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Reduce(%q): error %v, want a *ParseError", tc.data, err)
			continue
		}
		if pe.File != "counts/part-1.txt" || pe.Line != tc.line {
			t.Errorf("Reduce(%q): error at %s:%d, want counts/part-1.txt:%d (%v)", tc.data, pe.File, pe.Line, tc.line, err)
		}
	}
}

func TestRun(t *testing.T) {
	text := fstest.MapFS{"t.txt": {Data: []byte("a b c")}}
	for _, tc := range []struct {
		args   []string
		in     fs.FS
		code   int
		stderr string
	}{
		{nil, text, 2, "usage"},
		{[]string{"sum"}, text, 2, `unknown command "sum"`},
		{[]string{"split"}, text, 2, "want 1 argument(s), got 0"},
		{[]string{"split", "2", "3"}, text, 2, "want 1 argument(s), got 2"},
		{[]string{"count", "x"}, text, 2, "want 0 argument(s), got 1"},
		{[]string{"split", "0"}, text, 2, `got "0"`},
		{[]string{"split", "-3"}, text, 2, `got "-3"`},
		{[]string{"split", "four"}, text, 2, `got "four"`},
		{[]string{"split", fmt.Sprint(MaxParts + 1)}, text, 2, "from 1 to"},
		{[]string{"split", "0"}, nil, 2, `got "0"`},
		{[]string{"split", "2"}, nil, 1, "no /inputs"},
		{[]string{"count"}, nil, 1, "no /inputs"},
		{[]string{"reduce"}, fstest.MapFS{"counts/0": {Data: []byte("a\t1\nb 2\n")}}, 1, "wordcount reduce: /inputs/counts/0:2: "},
	} {
		var stdout, stderr strings.Builder
		code := run(tc.args, tc.in, t.TempDir(), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d, stderr with %q", tc.args, code, stderr.String(), tc.code, tc.stderr)
		}
		if stdout.Len() > 0 {
			t.Errorf("run(%q) failed but printed %q", tc.args, stdout.String())
		}
	}
}

// TestFlow runs the steps of flow.yaml as the flow does, each on what the
// flow gives it, natively, on text/: split 4 writes the parts; count runs
// once per part, given as /inputs/part.txt; reduce gets every count's stdout
// as /inputs/counts/<part>. What reduce prints must be expected.txt (go test
// -update rewrites it).
func TestFlow(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr strings.Builder
	if code := run([]string{"split", "4"}, os.DirFS("text"), out, &stdout, &stderr); code != 0 || stdout.Len() > 0 {
		t.Fatalf("split: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	parts, err := filepath.Glob(filepath.Join(out, "*"))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(parts))
	for i, p := range parts {
		names[i] = filepath.Base(p)
	}
	if want := []string{"part-0.txt", "part-1.txt", "part-2.txt", "part-3.txt"}; !slices.Equal(names, want) {
		t.Fatalf("split wrote %q, want %q", names, want)
	}
	counts := fstest.MapFS{}
	for _, p := range parts {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) == 0 {
			t.Errorf("split: %s is empty", filepath.Base(p))
		}
		var stdout, stderr strings.Builder
		if code := run([]string{"count"}, fstest.MapFS{"part.txt": {Data: data}}, t.TempDir(), &stdout, &stderr); code != 0 || stderr.Len() > 0 {
			t.Fatalf("count %s: exit %d, stderr %q", filepath.Base(p), code, stderr.String())
		}
		counts["counts/"+filepath.Base(p)] = &fstest.MapFile{Data: []byte(stdout.String())}
	}
	stdout.Reset()
	if code := run([]string{"reduce"}, counts, t.TempDir(), &stdout, &stderr); code != 0 || stderr.Len() > 0 {
		t.Fatalf("reduce: exit %d, stderr %q", code, stderr.String())
	}
	got := stdout.String()

	// The same as counting text/ in one go.
	whole, err := CountFS(os.DirFS("text"))
	if err != nil {
		t.Fatal(err)
	}
	var direct strings.Builder
	if err := WriteCounts(&direct, whole.ByCount()); err != nil {
		t.Fatal(err)
	}
	if got != direct.String() {
		t.Errorf("split, count, reduce differs from counting text/ at once")
	}

	if *update {
		if err := os.WriteFile("expected.txt", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("expected.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("reduce printed:\n%s\nexpected.txt:\n%s", got, want)
	}
}

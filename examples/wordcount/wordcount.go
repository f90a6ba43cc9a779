package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Files returns the paths of the regular files in fsys, recursively, sorted
// as strings. Symbolic links and other special files are left out.
func Files(fsys fs.FS) ([]string, error) {
	var paths []string
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(paths)
	return paths, nil
}

// Text returns the text of every regular file in fsys, in the order of
// Files. A newline goes between two files when no white space separates
// them, so that no word spans two files.
func Text(fsys fs.FS) ([]byte, error) {
	paths, err := Files(fsys)
	if err != nil {
		return nil, err
	}
	var text []byte
	for _, p := range paths {
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, err
		}
		last, _ := utf8.DecodeLastRune(text)
		first, _ := utf8.DecodeRune(b)
		if len(text) > 0 && len(b) > 0 && !unicode.IsSpace(last) && !unicode.IsSpace(first) {
			text = append(text, '\n')
		}
		text = append(text, b...)
	}
	return text, nil
}

// MaxParts is the most parts Split makes: more than a flow fans out to.
const MaxParts = 10000

// Split cuts text into n parts of nearly equal size. A part ends only next
// to white space (or at the end of text), so no word is ever cut: the parts,
// concatenated, are text. Each cut is the place next to white space nearest
// to an equal share, so a part may be empty, when a word longer than a
// share spans where it would have ended.
func Split(text []byte, n int) ([][]byte, error) {
	if n < 1 || n > MaxParts {
		return nil, fmt.Errorf("want 1 to %d parts, got %d", MaxParts, n)
	}
	parts := make([][]byte, n)
	// before and after are the cuts nearest to the last target below and
	// above it: there is no cut between them, so a later target below
	// after has the same two, and a long word is scanned only once.
	start, before, after := 0, 0, 0
	for i := 1; i < n; i++ {
		target := int(int64(len(text)) * int64(i) / int64(n))
		if target >= after {
			before, after = target, target
			for !isCut(text, before) {
				before--
			}
			for !isCut(text, after) {
				after++
			}
		}
		cut := before
		if after-target < target-before {
			cut = after
		}
		parts[i-1], start = text[start:cut], cut
	}
	parts[n-1] = text[start:]
	return parts, nil
}

// isCut reports whether text may be cut at byte p: at either end, or at the
// start of a rune next to white space.
func isCut(text []byte, p int) bool {
	if p <= 0 || p >= len(text) {
		return true
	}
	if !utf8.RuneStart(text[p]) {
		return false
	}
	next, _ := utf8.DecodeRune(text[p:])
	prev, _ := utf8.DecodeLastRune(text[:p])
	return unicode.IsSpace(next) || unicode.IsSpace(prev)
}

// Counts maps each word to how many times it occurs.
type Counts map[string]int64

// Count adds the words of r to c. A word is a maximal run of letters and
// digits (Unicode categories L and Nd), lower-cased. Anything else,
// including an invalid UTF-8 byte, separates words.
func (c Counts) Count(r io.Reader) error {
	br := bufio.NewReader(r)
	var word strings.Builder
	for {
		ch, _, err := br.ReadRune()
		if err != nil && err != io.EOF {
			return err
		}
		if err == nil && (unicode.IsLetter(ch) || unicode.IsDigit(ch)) {
			word.WriteRune(unicode.ToLower(ch))
			continue
		}
		if word.Len() > 0 {
			c[word.String()]++
			word.Reset()
		}
		if err == io.EOF {
			return nil
		}
	}
}

// CountFS counts the words of every regular file in fsys, each file on its
// own: no word spans two files.
func CountFS(fsys fs.FS) (Counts, error) {
	paths, err := Files(fsys)
	if err != nil {
		return nil, err
	}
	c := Counts{}
	for _, p := range paths {
		if err := countFile(c, fsys, p); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func countFile(c Counts, fsys fs.FS, path string) error {
	f, err := fsys.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return c.Count(f)
}

// ParseError is a line of a count file that is not `word<TAB>count`.
type ParseError struct {
	File   string // as named in the fs.FS
	Line   int    // from 1
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

// Add adds to c the counts in r, read in the format WriteCounts writes:
// lines `word<TAB>count`, count a decimal number. A malformed line, or a sum
// too large, is a *ParseError naming file and the line.
func (c Counts) Add(r io.Reader, file string) error {
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return err
		}
		if line == "" && err == io.EOF {
			return nil
		}
		if reason := c.addLine(strings.TrimSuffix(line, "\n")); reason != "" {
			return &ParseError{File: file, Line: n, Reason: reason}
		}
		if err == io.EOF {
			return nil
		}
	}
}

func (c Counts) addLine(line string) (reason string) {
	word, count, ok := strings.Cut(line, "\t")
	if !ok {
		return fmt.Sprintf("want word<TAB>count, got %q", line)
	}
	if word == "" {
		return fmt.Sprintf("empty word in %q", line)
	}
	n, err := strconv.ParseUint(count, 10, 63)
	if err != nil {
		return fmt.Sprintf("count %q of %q is not a number from 0 to %d", count, word, int64(math.MaxInt64))
	}
	if c[word] > math.MaxInt64-int64(n) {
		return fmt.Sprintf("the count of %q overflows", word)
	}
	c[word] += int64(n)
	return ""
}

// Reduce sums the counts of every regular file in fsys, each in the format
// WriteCounts writes.
func Reduce(fsys fs.FS) (Counts, error) {
	paths, err := Files(fsys)
	if err != nil {
		return nil, err
	}
	c := Counts{}
	for _, p := range paths {
		if err := addFile(c, fsys, p); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func addFile(c Counts, fsys fs.FS, path string) error {
	f, err := fsys.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return c.Add(f, path)
}

// Entry is a word and its count.
type Entry struct {
	Word  string
	Count int64
}

// ByWord returns the entries of c sorted by word (as byte strings).
func (c Counts) ByWord() []Entry {
	es := c.entries()
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Word, b.Word) })
	return es
}

// ByCount returns the entries of c sorted by count, largest first, then by
// word.
func (c Counts) ByCount() []Entry {
	es := c.entries()
	slices.SortFunc(es, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Word, b.Word))
	})
	return es
}

func (c Counts) entries() []Entry {
	es := make([]Entry, 0, len(c))
	for w, n := range c {
		es = append(es, Entry{w, n})
	}
	return es
}

// WriteCounts writes es as lines `word<TAB>count`.
func WriteCounts(w io.Writer, es []Entry) error {
	bw := bufio.NewWriter(w)
	for _, e := range es {
		bw.WriteString(e.Word)
		bw.WriteByte('\t')
		bw.WriteString(strconv.FormatInt(e.Count, 10))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

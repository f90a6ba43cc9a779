// Command wordcount counts the words of a text in three steps, the stages of
// examples/wordcount/flow.yaml, which runs them on a DMS network as one
// map-reduce:
//
//	wordcount split N   the text of the files under /inputs, cut into N parts
//	                    at white space: /outputs/part-0.txt ... part-(N-1).txt
//	wordcount count     the words of the files under /inputs, as lines
//	                    word<TAB>count sorted by word, on stdout
//	wordcount reduce    the sum of the count files under /inputs, as lines
//	                    word<TAB>count sorted by count (largest first), then word
//
// A word is a maximal run of letters and digits, lower-cased. Build it for
// WASI with go generate (see generate.go). The work is done by the functions
// of wordcount.go, tested natively; main only connects them to /inputs,
// /outputs, stdout and the exit code.
package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
)

const (
	inputs  = "/inputs"
	outputs = "/outputs"
	usage   = "usage: wordcount split N | wordcount count | wordcount reduce"
)

func main() {
	var in fs.FS
	if fi, err := os.Stat(inputs); err == nil && fi.IsDir() {
		in = os.DirFS(inputs)
	}
	os.Exit(run(os.Args[1:], in, outputs, os.Stdout, os.Stderr))
}

// run runs the subcommand in args on the files of in (nil when there is no
// /inputs), writing files under outDir, and returns the exit code: 0, 1 when
// the input is bad or a file cannot be read or written, 2 for a bad command
// line.
func run(args []string, in fs.FS, outDir string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	cmd, want := args[0], 1
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "wordcount %s: %v\n", cmd, underInputs(err))
		return code
	}
	switch cmd {
	case "split":
		want = 2
	case "count", "reduce":
	default:
		fmt.Fprintf(stderr, "wordcount: unknown command %q\n%s\n", cmd, usage)
		return 2
	}
	if len(args) != want {
		fmt.Fprintf(stderr, "wordcount %s: want %d argument(s), got %d\n%s\n", cmd, want-1, len(args)-1, usage)
		return 2
	}
	n := 0
	if cmd == "split" {
		var err error
		if n, err = strconv.Atoi(args[1]); err != nil || n < 1 || n > MaxParts {
			return fail(2, fmt.Errorf("want a number of parts from 1 to %d, got %q", MaxParts, args[1]))
		}
	}
	if in == nil {
		return fail(1, fmt.Errorf("no %s: give the step input_dir or inputs", inputs))
	}

	var c Counts
	var err error
	switch cmd {
	case "split":
		if err := split(in, n, outDir); err != nil {
			return fail(1, err)
		}
		return 0
	case "count":
		if c, err = CountFS(in); err == nil {
			err = WriteCounts(stdout, c.ByWord())
		}
	case "reduce":
		if c, err = Reduce(in); err == nil {
			err = WriteCounts(stdout, c.ByCount())
		}
	}
	if err != nil {
		return fail(1, err)
	}
	return 0
}

// split writes the text of in, cut into n parts, to outDir/part-I.txt.
func split(in fs.FS, n int, outDir string) error {
	text, err := Text(in)
	if err != nil {
		return err
	}
	parts, err := Split(text, n)
	if err != nil {
		return err
	}
	for i, p := range parts {
		if err := os.WriteFile(filepath.Join(outDir, fmt.Sprintf("part-%d.txt", i)), p, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// underInputs names the file err is about by its path in the program's file
// system: /inputs/counts/0 rather than counts/0.
func underInputs(err error) error {
	if pe := (*ParseError)(nil); errors.As(err, &pe) {
		pe.File = path.Join(inputs, pe.File)
	}
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) && !path.IsAbs(pe.Path) {
		pe.Path = path.Join(inputs, pe.Path)
	}
	return err
}

package main

import (
	"io"
	"os"
)

// terminal reports whether w is a terminal that takes ANSI cursor
// movement, and its width in columns (0 when unknown). A pipe, a file, a
// buffer or TERM=dumb is not one.
func terminal(w io.Writer) (ok bool, width int) {
	f, isFile := w.(*os.File)
	if !isFile || os.Getenv("TERM") == "dumb" {
		return false, 0
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false, 0
	}
	return true, termWidth(f)
}

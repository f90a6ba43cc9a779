// Command echo is a DMS function that answers with what it was called with.
// It follows the WAGI convention: the request comes as CGI variables and
// stdin, the response goes to stdout after a CGI header block.
//
// Its body, one field a line, is:
//
//	method: REQUEST_METHOD
//	path: PATH_INFO
//	query: QUERY_STRING
//	body: the request body (stdin) as sent, then a newline
//
// ECHO_PREFIX, when set at deploy time (dms function deploy --env
// ECHO_PREFIX=v2), starts the first line: "v2 method: POST". Deploying a
// revision with another prefix shows which revision answered.
//
// Build it for WASI with go generate (see generate.go).
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo: reading the body: %v\n", err)
		os.Exit(1)
	}
	prefix := os.Getenv("ECHO_PREFIX")
	if prefix != "" {
		prefix += " "
	}
	fmt.Print("Content-Type: text/plain; charset=utf-8\n\n")
	fmt.Printf("%smethod: %s\npath: %s\nquery: %s\nbody: %s\n",
		prefix, os.Getenv("REQUEST_METHOD"), os.Getenv("PATH_INFO"), os.Getenv("QUERY_STRING"), body)
}

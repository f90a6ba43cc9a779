// Command greet is a DMS function that greets someone by name, in JSON. It
// follows the WAGI convention: the request comes as CGI variables and stdin,
// and the response goes to stdout after a CGI header block with its status.
//
//	GET  /greet?name=Ada                   200 {"greeting":"Hello, Ada!"}
//	POST /greet  {"name":"Ada"}            200 {"greeting":"Hello, Ada!"}
//	GET  /greet                            400 {"error":"name is required: ..."}
//	PUT  /greet                            405 {"error":"..."}, Allow: GET, POST
//
// The query's name wins over the body's. Build it for WASI with go generate
// (see generate.go).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
)

// answer is one response: its Status value, more header lines, and a value
// for the JSON body.
type answer struct {
	status string
	header []string
	body   map[string]string
}

var errNoName = errors.New(`name is required: ?name=... or {"name":...}`)

func main() {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "greet: reading the body: %v\n", err)
		os.Exit(1)
	}
	a := greet(os.Getenv("REQUEST_METHOD"), os.Getenv("QUERY_STRING"), body)
	fmt.Printf("Status: %s\nContent-Type: application/json\n", a.status)
	for _, h := range a.header {
		fmt.Println(h)
	}
	fmt.Println()
	if err := json.NewEncoder(os.Stdout).Encode(a.body); err != nil {
		fmt.Fprintf(os.Stderr, "greet: %v\n", err)
		os.Exit(1)
	}
}

// greet answers a call with method, query string and body.
func greet(method, query string, body []byte) answer {
	if method != "GET" && method != "POST" {
		return answer{"405 Method Not Allowed", []string{"Allow: GET, POST"},
			map[string]string{"error": fmt.Sprintf("method %s is not allowed: use GET or POST", method)}}
	}
	name, err := nameOf(query, body)
	if err != nil {
		return answer{"400 Bad Request", nil, map[string]string{"error": err.Error()}}
	}
	return answer{"200 OK", nil, map[string]string{"greeting": "Hello, " + name + "!"}}
}

// nameOf finds the name in the query (?name=Ada), else in a JSON body
// ({"name":"Ada"}).
func nameOf(query string, body []byte) (string, error) {
	if q, err := url.ParseQuery(query); err == nil && q.Get("name") != "" {
		return q.Get("name"), nil
	}
	if len(body) == 0 {
		return "", errNoName
	}
	var in struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return "", fmt.Errorf("the body is not a JSON object: %w", err)
	}
	if in.Name == "" {
		return "", errNoName
	}
	return in.Name, nil
}

package cgi_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opendms/dms/dms/gateway/cgi"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/jobs/wasm"
)

// buildExamples builds examples/echo and examples/greet for WASI, as their
// go:generate lines do, and returns their modules by name.
func buildExamples(t *testing.T) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+string(filepath.Separator),
		"../../../examples/echo", "../../../examples/greet")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the examples: %v\n%s", err, out)
	}
	mods := make(map[string][]byte)
	for _, name := range []string{"echo", "greet"} {
		bin, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		mods[name] = bin
	}
	return mods
}

// call runs a module as the gateway would: the function's deploy-time
// environment under the call's, the body as stdin, stdout parsed.
func call(e *wasm.Executor, name string, module []byte, deployEnv map[string]string, r cgi.Request, body string) (cgi.Response, error) {
	r.ContentLength = int64(len(body))
	callEnv, err := cgi.Env(r, 64<<10)
	if err != nil {
		return cgi.Response{}, err
	}
	env := maps.Clone(deployEnv)
	if env == nil {
		env = make(map[string]string)
	}
	maps.Copy(env, callEnv)
	out, err := e.Run(context.Background(), jobs.Input{ModuleID: name, Module: module, Env: env, Stdin: []byte(body)})
	if err != nil {
		return cgi.Response{}, err
	}
	if out.ExitCode != 0 {
		return cgi.Response{}, fmt.Errorf("exit %d: %s", out.ExitCode, out.Stderr)
	}
	return cgi.ParseOutput(out.Stdout)
}

// TestExamples runs examples/echo and examples/greet with the wasm executor,
// through Env and ParseOutput, in parallel subtests so that their
// compilations overlap.
func TestExamples(t *testing.T) {
	mods := buildExamples(t)
	e, err := wasm.New(wasm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	request := func(method, path, query string) cgi.Request {
		return cgi.Request{Method: method, ScriptName: "/e/fn", PathInfo: path, RawQuery: query,
			Host: "127.0.0.1:8080", Scheme: "http", Proto: "HTTP/1.1", RemoteAddr: "127.0.0.1", Header: http.Header{}}
	}
	textType := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	jsonType := http.Header{"Content-Type": {"application/json"}}
	for _, c := range []struct {
		name, module string
		deployEnv    map[string]string
		req          cgi.Request
		body         string
		status       int
		header       http.Header
		want         string
	}{
		{"echo POST", "echo", nil, request("POST", "/hello%20there", "a=1"), "hi",
			200, textType, "method: POST\npath: /hello there\nquery: a=1\nbody: hi\n"},
		{"echo with ECHO_PREFIX", "echo", map[string]string{"ECHO_PREFIX": "v2"}, request("GET", "", ""), "",
			200, textType, "v2 method: GET\npath: \nquery: \nbody: \n"},
		{"greet by query", "greet", nil, request("GET", "", "name=Ada"), "",
			200, jsonType, `{"greeting":"Hello, Ada!"}` + "\n"},
		{"greet by JSON body", "greet", nil, request("POST", "", ""), `{"name":"Ada"}`,
			200, jsonType, `{"greeting":"Hello, Ada!"}` + "\n"},
		{"greet without a name", "greet", nil, request("GET", "", ""), "",
			400, jsonType, `{"error":"name is required: ?name=... or {\"name\":...}"}` + "\n"},
		{"greet PUT", "greet", nil, request("PUT", "", "name=Ada"), "",
			405, http.Header{"Content-Type": {"application/json"}, "Allow": {"GET, POST"}},
			`{"error":"method PUT is not allowed: use GET or POST"}` + "\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res, err := call(e, c.module, mods[c.module], c.deployEnv, c.req, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != c.status || !reflect.DeepEqual(res.Header, c.header) || string(res.Body) != c.want {
				t.Errorf("got %d %v %q\nwant %d %v %q", res.Status, res.Header, res.Body, c.status, c.header, c.want)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

// realNode starts a real node (a requester only, on loopback, its own API
// server off) and returns a home whose api.json points at the real API
// handler over it.
func realNode(t *testing.T) (*dms.DMS, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodeHome := filepath.Join(t.TempDir(), "node")
	if _, err := dms.Init(ctx, nodeHome, dms.InitOptions{BenchDuration: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	d, err := dms.New(dms.WithHome(nodeHome), dms.WithAPI(""), dms.WithCompute(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return d, newDaemon(t, d)
}

// badFile is a file a command refuses, and what it says of it.
type badFile struct {
	name, file string
	says       []string
}

// refuses runs `dms CMD FILE` on each bad file: it exits 1, prints nothing
// on stdout, and says each thing on stderr, with no stack trace.
func refuses(t *testing.T, home string, cmd []string, cases []badFile) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append(cmd, c.file, "--home", home)...)
			if code != 1 || out != "" || !strings.HasPrefix(errOut, "dms: ") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			for _, s := range c.says {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			noStackTrace(t, "stderr", errOut)
		})
	}
}

// noStackTrace fails if text shows a Go panic or stack trace.
func noStackTrace(t *testing.T, what, text string) {
	t.Helper()
	for _, bad := range []string{"goroutine ", "panic", ".go:"} {
		if strings.Contains(text, bad) {
			t.Errorf("%s shows %q:\n%s", what, bad, text)
		}
	}
}

// TestMalformedSpecsToARealNode posts malformed specs to the API of a real
// node: each gets a 400 (a 413 when oversized) whose problems name the bad
// field, and the node keeps serving.
func TestMalformedSpecsToARealNode(t *testing.T) {
	d, home := realNode(t)
	ep, err := api.ReadEndpoint(home)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	module, err := d.PutBlob(ctx, strings.NewReader("\x00asm\x01\x00\x00\x00"))
	if err != nil {
		t.Fatal(err)
	}
	ok := "name: ok\nmodule: " + module + "\n"
	cases := []struct {
		name, body string
		status     int
		field      string // a problem's field, or "" to look in the error text
		says       string // in the error text
	}{
		{"bad size", ok + "resources: {memory: lots}\n", 400, "resources.memory", ""},
		{"bare number duration", ok + "timeout: 5\n", 400, "timeout", ""},
		{"negative retries", ok + "retries: -1\n", 400, "retries", ""},
		{"unknown field", ok + "colour: red\n", 400, "", "colour"},
		{"wrong type", `{"name": ["x"], "module": "` + module + `"}`, 400, "name", ""},
		{"args not a list", ok + "args: {a: b}\n", 400, "args", ""},
		{"bad env name", ok + "env: {1BAD: x}\n", 400, "env", ""},
		{"local module", "name: ok\nmodule: ./prog.wasm\n", 400, "module", ""},
		{"local input dir", ok + "input_dir: ./in\n", 400, "input_dir", ""},
		{"no name", "module: " + module + "\n", 400, "name", ""},
		{"empty", "", 400, "", "empty document"},
		{"yaml syntax", "name: [ok\n", 400, "", "line"},
		{"binary", "\x00\xff\xfe\x01garbage", 400, "", ""},
		{"deep nesting", ok + "args: " + strings.Repeat("[", 100000) + "\n", 400, "", ""},
		{"oversized", ok + "stdin: " + strings.Repeat("x", jobs.MaxSpecSize) + "\n", 413, "", "too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := post(t, ep, "/v1/jobs", c.body)
			noStackTrace(t, "the reply", string(body))
			var eb struct {
				Error    string `json:"error"`
				Problems []struct{ Field, Problem string }
			}
			if status != c.status || json.Unmarshal(body, &eb) != nil || eb.Error == "" {
				t.Fatalf("status %d, body %.300s; want %d with an error", status, body, c.status)
			}
			if c.field != "" && !hasField(eb.Problems, c.field) {
				t.Errorf("problems %+v do not name %s", eb.Problems, c.field)
			}
			if !strings.Contains(eb.Error, c.says) {
				t.Errorf("error %q does not say %q", eb.Error, c.says)
			}
		})
	}
	if jobs, err := d.ListJobs(ctx); err != nil || len(jobs) != 0 {
		t.Fatalf("after the malformed specs: jobs %v, %v", jobs, err)
	}
	if code, out, errOut := runCLI(t, "node", "info", "--home", home); code != 0 || !strings.Contains(out, "12D3KooW") {
		t.Fatalf("the node stopped serving: exit %d, %s%s", code, out, errOut)
	}
}

// TestMalformedSpecFilesThroughTheCLI runs `dms job run` on malformed spec
// files against a real node: each exits 1 with one "dms: " message that
// names the problem, and no stack trace.
func TestMalformedSpecFilesThroughTheCLI(t *testing.T) {
	_, home := realNode(t)
	cases := []struct{ name, spec, says string }{
		{"bad size", helloSpec + "resources: {memory: lots}\n", "resources.memory"},
		{"bare number duration", helloSpec + "timeout: 5\n", "timeout"},
		{"unknown field", helloSpec + "colour: red\n", "colour"},
		{"wrong type", `{"name": ["x"], "module": "hello.wasm"}`, "name"},
		{"yaml syntax", "name: [hello\n", "line"},
		{"binary", "\x00\xff\xfe\x01garbage", "job.yaml"},
		{"empty", "", "empty document"},
		{"missing module", "name: hello\nmodule: nothere.wasm\n", "nothere.wasm"},
		{"missing input dir", helloSpec + "input_dir: nothere\n", "nothere"},
		{"module nobody holds", "name: hello\nmodule: bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy\n", "module"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "job", "run", jobFile(t, c.spec), "--home", home)
			if code != 1 || out != "" || !strings.HasPrefix(errOut, "dms: ") || !strings.Contains(errOut, c.says) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and a message naming %q", code, out, errOut, c.says)
			}
			noStackTrace(t, "stderr", errOut)
		})
	}
}

func hasField(problems []struct{ Field, Problem string }, field string) bool {
	for _, p := range problems {
		if p.Field == field {
			return true
		}
	}
	return false
}

// post sends body to path on the daemon at ep with its token.
func post(t *testing.T, ep api.Endpoint, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+ep.Addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ep.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, buf.Bytes()
}

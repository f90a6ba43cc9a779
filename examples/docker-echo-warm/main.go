// Command docker-echo-warm is a DMS function in a container that stays
// warm: one container serves many calls. Each call is a CGI request; the
// answer is a plain-text page that echoes the request's method, path, query
// and body.
//
// Warm (DMS_WARM=1 in its environment), it reads one call per line of JSON
// on stdin, {"id":N,"env":{...},"stdin":"<base64>"}, and writes one answer
// per line on stdout, {"id":N,"stdout":"<base64>","stderr":"","exit_code":0},
// serving the calls at once, each in a goroutine. Otherwise it serves one
// call, as a plain CGI program: its environment, its stdin.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
)

type call struct {
	ID    uint64            `json:"id"`
	Env   map[string]string `json:"env"`
	Stdin []byte            `json:"stdin"`
}

type answer struct {
	ID       uint64 `json:"id"`
	Stdout   []byte `json:"stdout"`
	Stderr   []byte `json:"stderr"`
	ExitCode int    `json:"exit_code"`
}

// serve answers one call: CGI headers, then the page.
func serve(env map[string]string, body []byte) []byte {
	return fmt.Appendf(nil, "Status: 200\nContent-Type: text/plain\n\nmethod=%s\npath=%s\nquery=%s\nbody=%s\n",
		env["REQUEST_METHOD"], env["PATH_INFO"], env["QUERY_STRING"], body)
}

func main() {
	if os.Getenv("DMS_WARM") != "1" {
		body, _ := io.ReadAll(os.Stdin)
		env := map[string]string{}
		for _, k := range []string{"REQUEST_METHOD", "PATH_INFO", "QUERY_STRING"} {
			env[k] = os.Getenv(k)
		}
		os.Stdout.Write(serve(env, body))
		return
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 64<<20) // a call's line holds its whole body
	var mu sync.Mutex                       // one answer line at a time
	out := json.NewEncoder(os.Stdout)       // a line per Encode, in one write
	var wg sync.WaitGroup
	for in.Scan() {
		var c call
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintln(os.Stderr, "not a call:", err) // stderr is the node's log
			continue
		}
		wg.Go(func() {
			a := answer{ID: c.ID, Stdout: serve(c.Env, c.Stdin)}
			mu.Lock()
			defer mu.Unlock()
			out.Encode(a)
		})
	}
	wg.Wait()
}

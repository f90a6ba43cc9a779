package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

const adminToken = "admin-token-0123456789"

// testGateway is the real Gateway of a rig (badger in memory, the fake
// Runner playing the jobs) behind its handler, served by Serve on
// 127.0.0.1. The rig's account alice and her key come with it.
type testGateway struct {
	t   *testing.T
	r   *rig
	url string
}

// startGateway serves a rig's Gateway with c; tune, if given, adjusts the
// handler before its routes are made.
func startGateway(t *testing.T, c HandlerConfig, tune ...func(*handler)) *testGateway {
	t.Helper()
	r := newRig(t)
	h := newHandler(r.g, c)
	for _, f := range tune {
		f(h)
	}
	srv, err := Serve(ServerConfig{Addr: "127.0.0.1:0"}, h.routes())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before the rig's: stop serving, then close the Gateway
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return &testGateway{t: t, r: r, url: srv.URL()}
}

func publicGateway(t *testing.T) *testGateway { return startGateway(t, HandlerConfig{}) }

func localGateway(t *testing.T) *testGateway {
	return startGateway(t, HandlerConfig{AdminToken: adminToken})
}

// module is the CID of a module the runner holds.
func (g *testGateway) module() string { return g.r.f.put([]byte("\x00asm module")) }

// deploy deploys a function of alice's, through the Go API.
func (g *testGateway) deploy(d Deploy) Revision {
	g.t.Helper()
	return g.r.deploy(g.t, g.r.alice, d)
}

// endpoint publishes an endpoint of alice's, through the Go API.
func (g *testGateway) endpoint(spec EndpointSpec) {
	g.t.Helper()
	if _, err := g.r.alice.CreateEndpoint(g.t.Context(), spec); err != nil {
		g.t.Fatal(err)
	}
}

// lastCall is the last call sent to an instance.
func (g *testGateway) lastCall() fakeCall { return g.r.f.lastCall(g.t) }

// reply is a response read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// noRedirects is a client that shows a redirect rather than following it.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// do sends a request with body (none when "") and headers given as
// name, value pairs; an "Authorization" value without a space is sent as a
// bearer.
func (g *testGateway) do(method, path, body string, headers ...string) reply {
	g.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.url+path, r)
	if err != nil {
		g.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		k, v := headers[i], headers[i+1]
		if k == "Authorization" && !strings.Contains(v, " ") {
			v = "Bearer " + v
		}
		req.Header.Add(k, v)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

// as is do with an API key (or token) in Authorization.
func (g *testGateway) as(key, method, path, body string, headers ...string) reply {
	g.t.Helper()
	return g.do(method, path, body, append([]string{"Authorization", key}, headers...)...)
}

// want checks a reply's status, and that a gateway error is marked so.
func (r reply) want(t *testing.T, status int) reply {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if isErr := r.header.Get(HeaderError) != ""; isErr != (status >= 400) {
		t.Fatalf("status %d: %s is %q", status, HeaderError, r.header.Get(HeaderError))
	}
	return r
}

// answer checks a function's answer: its status, DMS-Task, no DMS-Error.
func (r reply) answer(t *testing.T, status int) reply {
	t.Helper()
	if r.status != status || r.header.Get(HeaderTask) == "" || r.header.Get(HeaderError) != "" {
		t.Fatalf("status %d, %s %q, %s %q; want the function's %d; body %s", r.status,
			HeaderTask, r.header.Get(HeaderTask), HeaderError, r.header.Get(HeaderError), status, r.body)
	}
	return r
}

// errorText is a gateway error's message.
func (r reply) errorText(t *testing.T) string {
	t.Helper()
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error == "" {
		t.Fatalf("not an error body: %s", r.body)
	}
	return body.Error
}

// wantError checks status and that the error's message says each of says.
func (r reply) wantError(t *testing.T, status int, says ...string) {
	t.Helper()
	r.want(t, status)
	msg := r.errorText(t)
	for _, s := range says {
		if !strings.Contains(msg, s) {
			t.Fatalf("error %q does not say %q", msg, s)
		}
	}
}

func decode[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return v
}

func TestFunctionRoutes(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key

	if got := string(g.as(key, "GET", "/v1/functions", "").want(t, 200).body); got != "[]\n" {
		t.Fatalf("empty list is %q, want []", got)
	}
	blob := decode[map[string]string](t, g.as(key, "POST", "/v1/blobs", "wasm!").want(t, 201))
	cid := types.CIDOf([]byte("wasm!")).String()
	if blob["cid"] != cid {
		t.Fatalf("blob reply %v, want cid %s", blob, cid)
	}
	deploy := `{"name":"echo","module":"` + cid + `","tags":{"team":"a"}}`
	if rev := decode[Revision](t, g.as(key, "POST", "/v1/functions", deploy).want(t, 201)); rev.Number != 1 {
		t.Fatalf("first deploy made revision %d", rev.Number)
	}
	g.as(key, "POST", "/v1/functions", `{"name":"echo","module":"`+cid+`","no_default":true}`).want(t, 201)

	fn := decode[Function](t, g.as(key, "GET", "/v1/functions/echo", "").want(t, 200))
	if fn.DefaultRevision != 1 || fn.LatestRevision != 2 {
		t.Fatalf("function %+v, want default 1, latest 2", fn)
	}
	if revs := decode[[]Revision](t, g.as(key, "GET", "/v1/functions/echo/revisions", "").want(t, 200)); len(revs) != 2 {
		t.Fatalf("%d revisions, want 2", len(revs))
	}
	fn = decode[Function](t, g.as(key, "PUT", "/v1/functions/echo/default", `{"revision":2}`).want(t, 200))
	if fn.DefaultRevision != 2 {
		t.Fatalf("default %d after the switch, want 2", fn.DefaultRevision)
	}
	g.as(key, "PUT", "/v1/functions/echo/default", `{"revision":9}`).wantError(t, 404, "no revision 9")
	g.as(key, "PUT", "/v1/functions/echo/default", `{}`).wantError(t, 400, "revision is missing")
	g.as(key, "PUT", "/v1/functions/echo/tags", `{}`).wantError(t, 400, "tags is missing")
	fn = decode[Function](t, g.as(key, "PUT", "/v1/functions/echo/tags", `{"tags":{"team":"b","env":"prod"}}`).want(t, 200))
	if fn.Tags["team"] != "b" || fn.Tags["env"] != "prod" {
		t.Fatalf("tags %v", fn.Tags)
	}
	tags := decode[[]Tag](t, g.as(key, "GET", "/v1/tags", "").want(t, 200))
	if len(tags) != 2 || tags[0] != (Tag{Key: "env", Value: "prod", Functions: 1}) {
		t.Fatalf("tags %+v", tags)
	}
	g.as(key, "DELETE", "/v1/functions/echo", "").want(t, 204)
	g.as(key, "GET", "/v1/functions/echo", "").wantError(t, 404, "echo")
	g.as(key, "DELETE", "/v1/functions/echo", "").wantError(t, 404)
	g.as(key, "GET", "/v1/functions/echo/revisions", "").wantError(t, 404)
}

func TestEndpointRoutes(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	g.deploy(Deploy{Name: "echo"})

	spec := `{"name":"hello","function":"echo","allow_ips":["10.0.0.0/8"],"daily_quota":5,"auth":"none"}`
	e := decode[Endpoint](t, g.as(key, "POST", "/v1/endpoints", spec).want(t, 201))
	if e.Path != "/e/hello/" || e.DailyQuota != 5 || e.Account != "alice" {
		t.Fatalf("endpoint %+v", e)
	}
	g.as(key, "POST", "/v1/endpoints", spec).wantError(t, 409, "exists")
	if list := decode[[]Endpoint](t, g.as(key, "GET", "/v1/endpoints", "").want(t, 200)); len(list) != 1 {
		t.Fatalf("%d endpoints, want 1", len(list))
	}
	g.as(key, "GET", "/v1/endpoints/hello", "").want(t, 200)
	e = decode[Endpoint](t, g.as(key, "PUT", "/v1/endpoints/hello", `{"function":"echo","daily_quota":7}`).want(t, 200))
	if e.Name != "hello" || e.DailyQuota != 7 {
		t.Fatalf("updated endpoint %+v", e)
	}
	g.as(key, "PUT", "/v1/endpoints/hello", `{"name":"other","function":"echo"}`).wantError(t, 400, "cannot be renamed")
	g.as(key, "PUT", "/v1/endpoints/nope", `{"function":"echo"}`).wantError(t, 404)
	g.as(key, "DELETE", "/v1/endpoints/hello", "").want(t, 204)
	g.as(key, "GET", "/v1/endpoints/hello", "").wantError(t, 404)
}

func TestListQueries(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	module := g.module()
	for _, d := range []string{
		`{"name":"a","tags":{"env":"prod","team":"x"}}`,
		`{"name":"b","tags":{"env":"dev"}}`,
		`{"name":"c","tags":{"env":"prod"}}`,
		`{"name":"d"}`,
	} {
		d = strings.Replace(d, "{", `{"module":"`+module+`",`, 1)
		g.as(key, "POST", "/v1/functions", d).want(t, 201)
	}
	g.as(key, "GET", "/v1/functions/c/invoke", "").answer(t, 200) // c leads by calls

	names := func(path string) []string {
		t.Helper()
		var names []string
		for _, fn := range decode[[]Function](t, g.as(key, "GET", path, "").want(t, 200)) {
			names = append(names, fn.Name)
		}
		return names
	}
	for query, want := range map[string][]string{
		"tag=env=prod":                     {"a", "c"},
		"tag=env=prod&sort=calls":          {"c", "a"},
		"tag=env=prod&search=x":            {"a"},
		"tag=env=prod&search=x&sort=calls": {"a"},
		"tag=env=prod&tag=team=x":          {"a"},
		"search=DEV":                       {"b"},
	} {
		if got := names("/v1/functions?" + query); !slices.Equal(got, want) {
			t.Errorf("?%s: %v, want %v", query, got, want)
		}
	}

	groups := decode[[]Group[Function]](t, g.as(key, "GET", "/v1/functions?group_by=env", "").want(t, 200))
	var values []string
	for _, gr := range groups {
		values = append(values, fmt.Sprintf("%s:%d", gr.Value, len(gr.Items)))
	}
	slices.Sort(values)
	if want := []string{":1", "dev:1", "prod:2"}; !slices.Equal(values, want) {
		t.Fatalf("groups %v, want %v", values, want)
	}
	if got := string(g.as(key, "GET", "/v1/endpoints?group_by=env", "").want(t, 200).body); got != "[]\n" {
		t.Fatalf("no endpoints grouped: %q, want []", got)
	}

	for _, bad := range []struct{ query, says string }{
		{"tag=env", "want KEY=VALUE"},
		{"tag==x", "want KEY=VALUE"},
		{"tag=a=1&tag=a=2", "given twice"},
		{"group_by=", "group_by needs a tag key"},
		{"sort=name&sort=calls", "sort given 2 times"},
		{"sort=size", "unknown sort"},
		{"tags=env=prod", `unknown parameter "tags"`},
		{"search=%zz", "query"},
	} {
		g.as(key, "GET", "/v1/functions?"+bad.query, "").wantError(t, 400, bad.says)
		g.as(key, "GET", "/v1/endpoints?"+bad.query, "").wantError(t, 400, bad.says)
	}
}

// invokeAsync makes an async call of alice's function through the
// handler and returns its task's ID.
func (g *testGateway) invokeAsync(name string) string {
	g.t.Helper()
	task := decode[Task](g.t, g.as(g.r.key, "POST", "/v1/functions/"+name+"/invoke?async=1", "").want(g.t, 202))
	return task.ID
}

func TestTaskRoutes(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	g.deploy(Deploy{Name: "echo"})
	// t1's call waits on its instance; t2's is answered.
	g.r.f.setCalls(func(ctx context.Context, c fakeCall) (*types.CallReply, error) {
		if c.Req.Env["QUERY_STRING"] == "wait" {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return answer("Status: 418 I'm a teapot\nX-Teapot: yes\n\nshort and stout"), nil
	})
	t1 := decode[Task](t, g.as(key, "POST", "/v1/functions/echo/invoke?async=1&wait", "").want(t, 202)).ID
	callsIn(t, g.r.f, 1)
	g.r.clock.Add(time.Second) // t2 is the newer
	t2 := g.invokeAsync("echo")
	taskIn(t, g.r.alice, t2, TaskCompleted)

	for query, want := range map[string][]string{
		"function=echo&state=completed&limit=5": {t2},
		"state=running":                         {t1}, // on its instance
		"function=other":                        nil,
		"limit=1":                               {t2}, // newest first
	} {
		var ids []string
		for _, task := range decode[[]Task](t, g.as(key, "GET", "/v1/tasks?"+query, "").want(t, 200)) {
			ids = append(ids, task.ID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("?%s: tasks %v, want %v", query, ids, want)
		}
	}
	g.as(key, "GET", "/v1/tasks?limit=-1", "").wantError(t, 400, "limit")
	g.as(key, "GET", "/v1/tasks?limit=many", "").wantError(t, 400, "limit")
	g.as(key, "GET", "/v1/tasks?fn=echo", "").wantError(t, 400, `unknown parameter "fn"`)

	if task := decode[Task](t, g.as(key, "GET", "/v1/tasks/"+t1, "").want(t, 200)); task.State != TaskRunning || task.Node != fakeNode || task.StartedAt == nil {
		t.Fatalf("task %+v", task)
	}
	g.as(key, "GET", "/v1/tasks/t9", "").wantError(t, 404)
	g.as(key, "GET", "/v1/tasks/"+strings.Repeat("0", 32), "").wantError(t, 404)
	g.as(key, "GET", "/v1/tasks/"+t1+"/result", "").wantError(t, 409, "running")

	r := g.as(key, "GET", "/v1/tasks/"+t2+"/result", "").answer(t, 418)
	if string(r.body) != "short and stout" || r.header.Get("X-Teapot") != "yes" || r.header.Get(HeaderTask) != t2 {
		t.Fatalf("result: %d %v %q", r.status, r.header, r.body)
	}

	stopped := decode[Task](t, g.as(key, "POST", "/v1/tasks/"+t1+"/stop", "").want(t, 200))
	if stopped.State != TaskStopped || g.r.f.wasCancelled("job-1") {
		t.Fatalf("stopped task %+v: want it stopped, its instance warm", stopped)
	}
	g.as(key, "POST", "/v1/tasks/"+t1+"/stop", "").wantError(t, 409, "stopped already")
}

func TestHandlerInvoke(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	g.deploy(Deploy{Name: "echo"})
	g.deploy(Deploy{Name: "echo"}) // the default is revision 2
	g.r.f.answering(func(c fakeCall) string {
		return "Status: 404 Not Found\nX-Fn: mine\nDMS-Error: 1\nDMS-Task: forged\nContent-Length: 1\n\nno such page: " + string(c.Req.Stdin)
	})

	r := g.as(key, "POST", "/v1/functions/echo/invoke/a/b%20c?x=1&rev=1&y=%26&async=0&x=2", "payload",
		"X-Custom", "v", HeaderAccount+"-Not", "kept")
	if r.status != 404 || string(r.body) != "no such page: payload" {
		t.Fatalf("function's answer: %d %q", r.status, r.body)
	}
	task := r.header.Get(HeaderTask)
	if task == "forged" || r.header.Get(HeaderError) != "" || r.header.Get("X-Fn") != "mine" {
		t.Fatalf("function's headers: %v", r.header)
	}
	g.as(key, "GET", "/v1/tasks/"+task, "").want(t, 200)
	host := strings.TrimPrefix(g.url, "http://")
	call := g.lastCall()
	if call.Spec.Name != "fn:alice/echo@1" || string(call.Req.Stdin) != "payload" {
		t.Fatalf("call on %s, stdin %q: want revision 1's, with the payload", call.Spec.Name, call.Req.Stdin)
	}
	wantEnv(t, call, map[string]string{
		"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/v1/functions/echo/invoke", "X_RAW_PATH_INFO": "/a/b%20c",
		"PATH_INFO": "/a/b c", "QUERY_STRING": "x=1&y=%26&x=2", "HTTP_HOST": host, "SERVER_PROTOCOL": "HTTP/1.1",
		"REMOTE_ADDR": "127.0.0.1", "X_FULL_URL": "http://" + host + "/v1/functions/echo/invoke/a/b%20c?x=1&y=%26&x=2",
		"HTTP_X_CUSTOM": "v", "HTTP_DMS_ACCOUNT_NOT": "kept", "CONTENT_LENGTH": "7",
	}, "HTTP_AUTHORIZATION")

	for path, want := range map[string]string{"/invoke": "", "/invoke/": "/", "/invoke/x/": "/x/", "/invoke/a%2Fb/%C3%A9": "/a%2Fb/%C3%A9"} {
		g.as(key, "GET", "/v1/functions/echo"+path, "").answer(t, 404)
		call := g.lastCall()
		if call.Spec.Name != "fn:alice/echo@2" {
			t.Fatalf("%s: call on %s, want the default revision 2", path, call.Spec.Name)
		}
		wantEnv(t, call, map[string]string{"X_RAW_PATH_INFO": want, "REQUEST_METHOD": "GET"})
	}

	before := len(g.r.f.callsMade())
	for _, q := range []string{"rev=0", "rev=x", "rev=1&rev=2", "async=maybe", "async=1&async=1"} {
		g.as(key, "GET", "/v1/functions/echo/invoke?"+q, "").wantError(t, 400, "query")
	}
	g.as(key, "GET", "/v1/functions/nope/invoke", "").wantError(t, 404, "nope")
	g.as(key, "GET", "/v1/functions/echo/invoke?rev=3", "").wantError(t, 404, "revision 3")
	if n := len(g.r.f.callsMade()); n != before {
		t.Fatalf("refused calls sent %d calls", n-before)
	}
}

func TestHandlerInvokeAsync(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	g.deploy(Deploy{Name: "echo"})

	for i, q := range []string{"async=1", "async", "async=true&rev=1"} {
		r := g.as(key, "PUT", "/v1/functions/echo/invoke?"+q+"&k=v", "body").want(t, 202)
		task := decode[Task](t, r)
		if task.ID == "" || task.State != TaskScheduled || !task.Async || r.header.Get(HeaderTask) != task.ID ||
			r.header.Get("Location") != "/v1/tasks/"+task.ID {
			t.Fatalf("%s: task %+v, headers %v", q, task, r.header)
		}
		call := callsIn(t, g.r.f, i+1)[i] // the async run calls after the answer
		wantEnv(t, call, map[string]string{"QUERY_STRING": "k=v", "REQUEST_METHOD": "PUT"})
		if string(call.Req.Stdin) != "body" {
			t.Fatalf("%s: stdin %q", q, call.Req.Stdin)
		}
		taskIn(t, g.r.alice, task.ID, TaskCompleted)
	}
}

// TestCallErrors: how a call that got no answer is told: the status of
// its failure, DMS-Task when it had a task, DMS-Error always.
func TestCallErrors(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	g.deploy(Deploy{Name: "f", MaxBody: 1024})
	f := g.r.f

	for _, c := range []struct {
		reply  *types.CallReply
		status int
		says   string
	}{
		{exited(1, "the module trapped"), 502, "exited with code 1: the module trapped"},
		{&types.CallReply{Status: types.CallFailed, Error: "wasm: " + jobs.ErrTimeout.Error()}, 504, jobs.ErrTimeout.Error()},
		{&types.CallReply{Status: types.CallFailed, Error: "wasm: trapped at 10.1.2.3:4001"}, 502, "trapped at <address>"},
		{answer("Status: 99\n\n"), 502, "status 99"},
	} {
		f.replying(c.reply)
		r := g.as(key, "GET", "/v1/functions/f/invoke", "")
		r.wantError(t, c.status, c.says)
		task := r.header.Get(HeaderTask)
		if task == "" || r.header.Get("Retry-After") != "" {
			t.Fatalf("%s: %s %q, Retry-After %q", c.says, HeaderTask, task, r.header.Get("Retry-After"))
		}
		g.as(key, "GET", "/v1/tasks/"+task+"/result", "").wantError(t, c.status, c.says)
	}

	// Refused before it has a task.
	r := g.as(key, "POST", "/v1/functions/f/invoke", strings.Repeat("b", 1025))
	r.wantError(t, 413, "over the function's limit")
	if r.header.Get(HeaderTask) != "" {
		t.Fatalf("a body too large has task %q", r.header.Get(HeaderTask))
	}
}

// TestEndpointCall: an endpoint's call with its path, query and headers;
// the bearer key is the endpoint's to check, never the function's to see.
func TestEndpointCall(t *testing.T) {
	g := publicGateway(t)
	g.r.clock.Add(500 * time.Millisecond) // a Retry-After rounds up
	g.deploy(Deploy{Name: "echo"})
	g.endpoint(EndpointSpec{Name: "hello", Function: "echo"})
	g.endpoint(EndpointSpec{Name: "locked", Function: "echo", Auth: AuthKey})
	g.endpoint(EndpointSpec{Name: "closed", Function: "echo", Windows: []string{"Mon 08:00-09:00 UTC"}})
	g.endpoint(EndpointSpec{Name: "full", Function: "echo", DailyQuota: 1})
	g.r.f.answering(func(c fakeCall) string { return "Status: 201 Created\n\n" + string(c.Req.Stdin) })

	r := g.do("PATCH", "/e/hello/x/y?rev=3&async=1", "hi", "Authorization", "Bearer some-key", "Proxy-Authorization", "Basic cDpx",
		"X-A", "b").want(t, 201)
	if string(r.body) != "hi" || r.header.Get(HeaderTask) == "" {
		t.Fatalf("endpoint answer %q %v", r.body, r.header)
	}
	wantEnv(t, g.lastCall(), map[string]string{
		"SCRIPT_NAME": "/e/hello", "X_RAW_PATH_INFO": "/x/y", "QUERY_STRING": "rev=3&async=1", "REQUEST_METHOD": "PATCH",
		"HTTP_X_A": "b",
	}, "HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION")
	if name := g.lastCall().Spec.Name; name != "fn:alice/echo@1" {
		t.Fatalf("endpoint's job %s", name)
	}
	g.do("GET", "/e/hello", "").want(t, 201)
	wantEnv(t, g.lastCall(), map[string]string{"X_RAW_PATH_INFO": ""})

	// The key goes to the endpoint's auth: a Bearer only.
	g.do("GET", "/e/locked/", "", "Authorization", "Bearer "+g.r.key).want(t, 201)
	g.do("GET", "/e/locked/", "", "Authorization", "Bearer some-key").wantError(t, 404)
	g.do("GET", "/e/locked/", "", "Authorization", "Basic dXNlcjpwdw==").wantError(t, 401, "needs an API key")
	g.do("GET", "/e/locked/", "").wantError(t, 401)

	r = g.do("GET", "/e/closed", "")
	r.wantError(t, 403, "opens next")
	if r.header.Get(HeaderTask) != "" || r.header.Get("Retry-After") != "597600" { // next Monday 08:00
		t.Fatalf("closed: %s %q, Retry-After %q", HeaderTask, r.header.Get(HeaderTask), r.header.Get("Retry-After"))
	}
	g.do("GET", "/e/full/", "").want(t, 201)
	r = g.do("GET", "/e/full/", "")
	r.wantError(t, 429, "quota")
	if r.header.Get("Retry-After") != "50400" { // 13h59m59.5s to midnight
		t.Fatalf("Retry-After %q, want 50400", r.header.Get("Retry-After"))
	}
}

func TestClientIP(t *testing.T) {
	untrusting := publicGateway(t)
	trusting := startGateway(t, HandlerConfig{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	for _, g := range []*testGateway{untrusting, trusting} {
		g.deploy(Deploy{Name: "ip"})
		g.endpoint(EndpointSpec{Name: "ip", Function: "ip"})
		g.r.f.answering(func(c fakeCall) string { return c.Req.Env["REMOTE_ADDR"] })
	}

	for _, c := range []struct {
		g    *testGateway
		xff  []string
		want string
	}{
		{untrusting, nil, "127.0.0.1"},
		{untrusting, []string{"203.0.113.7"}, "127.0.0.1"},
		{trusting, nil, "127.0.0.1"},
		{trusting, []string{"203.0.113.7"}, "203.0.113.7"},
		{trusting, []string{"198.51.100.1, 203.0.113.7", "127.0.0.2"}, "203.0.113.7"},
	} {
		var headers []string
		for _, v := range c.xff {
			headers = append(headers, "X-Forwarded-For", v)
		}
		if got := string(c.g.do("GET", "/e/ip", "", headers...).want(t, 200).body); got != c.want {
			t.Errorf("trusted %v, X-Forwarded-For %q: client %s, want %s", c.g == trusting, c.xff, got, c.want)
		}
	}
	trusting.do("GET", "/e/ip", "", "X-Forwarded-For", "unknown").wantError(t, 400, "unknown")
}

func TestAdminRoutes(t *testing.T) {
	g := localGateway(t)

	created := decode[createdAccount](t, g.as(adminToken, "POST", "/v1/accounts", `{"name":"bob"}`).want(t, 201))
	if created.Account.Name != "bob" || created.Key.Secret == "" || created.Key.ID == "" {
		t.Fatalf("created %+v", created)
	}
	g.as(adminToken, "POST", "/v1/accounts", `{"name":"bob"}`).wantError(t, 409)
	g.as(adminToken, "POST", "/v1/accounts", `{}`).wantError(t, 400)
	if list := decode[[]Account](t, g.as(adminToken, "GET", "/v1/accounts", "").want(t, 200)); len(list) != 2 {
		t.Fatalf("accounts %+v, want alice and bob", list)
	}
	g.as(adminToken, "GET", "/v1/accounts/bob", "").want(t, 200)
	g.as(adminToken, "GET", "/v1/accounts/carol", "").wantError(t, 404)
	k := decode[NewKey](t, g.as(adminToken, "POST", "/v1/accounts/bob/keys", "").want(t, 201))
	keys := decode[[]Key](t, g.as(adminToken, "GET", "/v1/accounts/bob/keys", "").want(t, 200))
	if len(keys) != 2 || strings.Contains(string(g.as(adminToken, "GET", "/v1/accounts/bob/keys", "").body), k.Secret) {
		t.Fatalf("keys %+v: want 2, without secrets", keys)
	}

	g.as(k.Secret, "GET", "/v1/functions", "").want(t, 200)
	g.as(adminToken, "DELETE", "/v1/accounts/bob/keys/"+k.ID, "").want(t, 204)
	g.as(adminToken, "DELETE", "/v1/accounts/bob/keys/"+k.ID, "").wantError(t, 409)
	g.as(k.Secret, "GET", "/v1/functions", "").wantError(t, 401)

	// An account's key is no admin.
	g.as(created.Key.Secret, "GET", "/v1/accounts", "").wantError(t, 401, "admin token")
	g.do("GET", "/v1/accounts", "").wantError(t, 401)

	// A gateway alone has no group to show or change.
	g.as(adminToken, "GET", "/v1/gateway/group", "").wantError(t, 404, "in no group")
	g.as(adminToken, "POST", "/v1/gateway/group/members", `{"addr":"12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"}`).wantError(t, 404, "in no group")
	g.as(adminToken, "POST", "/v1/gateway/group/members", `{"addr":`).wantError(t, 400)
	g.as(adminToken, "DELETE", "/v1/gateway/group/members/x", "").wantError(t, 404, "in no group")
	g.as(created.Key.Secret, "GET", "/v1/gateway/group", "").wantError(t, 401, "admin token")
}

// TestPublicHasNoAdmin: the public listener has no admin routes at all: a
// 404 whatever the credentials, so it does not even tell that they exist.
func TestPublicHasNoAdmin(t *testing.T) {
	g := publicGateway(t)
	for _, auth := range []string{"", adminToken, g.r.key} {
		for _, route := range []string{"POST /v1/accounts", "GET /v1/accounts", "GET /v1/accounts/alice",
			"POST /v1/accounts/alice/keys", "GET /v1/accounts/alice/keys", "DELETE /v1/accounts/alice/keys/k1",
			"GET /v1/gateway/group", "POST /v1/gateway/group/members", "DELETE /v1/gateway/group/members/x"} {
			method, path, _ := strings.Cut(route, " ")
			g.as(auth, method, path, `{"name":"mallory"}`).wantError(t, 404, "no route")
		}
	}
	accounts, err := g.r.g.ListAccounts(t.Context())
	if err != nil || len(accounts) != 1 {
		t.Fatalf("accounts %+v %v, want alice alone", accounts, err)
	}
	if keys, err := g.r.g.ListKeys(t.Context(), "alice"); err != nil || len(keys) != 1 {
		t.Fatalf("alice's keys %+v %v, want her first alone", keys, err)
	}
}

// TestBadCredentials: every bad credential gets the same 401, so a caller
// cannot tell a revoked key from a made-up one.
func TestBadCredentials(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	_, bob, err := g.r.g.CreateAccount(t.Context(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.r.g.RevokeKey(t.Context(), "bob", bob.ID); err != nil {
		t.Fatal(err)
	}

	var first string
	for _, headers := range [][]string{
		nil,
		{"Authorization", ""},
		{"Authorization", "Basic " + key},
		{"Authorization", "Bearer"},
		{"Authorization", "Bearer "},
		{"Authorization", "Bearer " + key + " extra"},
		{"Authorization", "Bearer\t" + key},
		{"Authorization", key + "x"},
		{"Authorization", bob.Secret},
		{"Authorization", adminToken},
		{"Authorization", key, "Authorization", key},
		{"Authorization", strings.Repeat("k", 8000)},
	} {
		r := g.do("GET", "/v1/functions", "", headers...)
		r.wantError(t, 401)
		if r.header.Get("WWW-Authenticate") != `Bearer realm="dms-gateway"` {
			t.Fatalf("%q: WWW-Authenticate %q", headers, r.header.Get("WWW-Authenticate"))
		}
		if first == "" {
			first = string(r.body)
		} else if string(r.body) != first {
			t.Fatalf("%q: answer %s differs from %s", headers, r.body, first)
		}
	}
	g.do("GET", "/v1/functions", "", "Authorization", "bearer "+key).want(t, 200) // the scheme is case-insensitive
}

func TestAccountHeader(t *testing.T) {
	for _, g := range []*testGateway{publicGateway(t), localGateway(t)} {
		alice := g.r.key
		bob, _ := g.r.account(t, "bob")
		g.r.deploy(t, bob, Deploy{Name: "secret"})

		// A key that names another account is refused, never followed.
		g.as(alice, "GET", "/v1/functions/secret", "", HeaderAccount, "bob").wantError(t, 400, "drop the "+HeaderAccount)
		g.as(alice, "GET", "/v1/functions/secret", "", HeaderAccount, "alice").wantError(t, 400)
		g.as(alice, "GET", "/v1/functions/secret", "").wantError(t, 404)
	}

	g := localGateway(t)
	bob, _ := g.r.account(t, "bob")
	g.r.deploy(t, bob, Deploy{Name: "f"})
	g.as(adminToken, "GET", "/v1/functions/f", "", HeaderAccount, "bob").want(t, 200)
	g.as(adminToken, "GET", "/v1/functions/f", "").wantError(t, 400, HeaderAccount)
	g.as(adminToken, "GET", "/v1/functions/f", "", HeaderAccount, "").wantError(t, 400, HeaderAccount)
	g.as(adminToken, "GET", "/v1/functions/f", "", HeaderAccount, "bob", HeaderAccount, "bob").wantError(t, 400)
	g.as(adminToken, "GET", "/v1/functions/f", "", HeaderAccount, "nobody").wantError(t, 404, "nobody")
	g.as(adminToken+"x", "GET", "/v1/functions/f", "", HeaderAccount, "bob").wantError(t, 401)
}

func TestJSONBodies(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	huge := `{"name":"f","args":["` + strings.Repeat("a", MaxJSONBody) + `"]}`

	for _, c := range []struct {
		body   string
		status int
		says   string
	}{
		{huge, 413, "over 1048576 bytes"},
		{"", 400, "empty"},
		{`{"name":`, 400, "unexpected EOF"},
		{`{"name":"f",}`, 400, "invalid character"},
		{`{"name":"f","bogus":1}`, 400, `unknown field "bogus"`},
		{`{"name":"f"} {"name":"g"}`, 400, "more than one JSON value"},
		{`{"name":"f"}}`, 400, "more than one JSON value"},
		{`["f"]`, 400, "cannot unmarshal array"},
		{`{"name":5}`, 400, ".name of type string"},
	} {
		for _, path := range []string{"/v1/functions", "/v1/endpoints"} {
			g.as(key, "POST", path, c.body).wantError(t, c.status, c.says)
		}
	}
	g.as(key, "POST", "/v1/functions", `{"name":"f","max_body":"lots"}`).wantError(t, 400, `bad size: "lots"`)
	fns, err := g.r.alice.ListFunctions(t.Context(), Query{})
	eps, err2 := g.r.alice.ListEndpoints(t.Context(), Query{})
	if len(fns) != 0 || len(eps) != 0 || err != nil || err2 != nil {
		t.Fatalf("a bad body made something: %v %v (%v, %v)", fns, eps, err, err2)
	}
}

func TestModuleLimit(t *testing.T) {
	g := startGateway(t, HandlerConfig{}, func(h *handler) { h.maxModule = 1024 })
	key := g.r.key
	g.as(key, "POST", "/v1/blobs", strings.Repeat("m", 1024)).want(t, 201)
	g.as(key, "POST", "/v1/blobs", strings.Repeat("m", 1025)).wantError(t, 413, "module over 1024 bytes")
	if ok, _ := g.r.f.HasBlob(t.Context(), types.CIDOf([]byte(strings.Repeat("m", 1025))).String()); ok {
		t.Fatal("a module over the limit was stored")
	}
}

// TestHostileNames: names that are no path segment are refused by the
// handler ("not a valid", where the Gateway would say not found), before
// any call runs.
func TestHostileNames(t *testing.T) {
	g := localGateway(t)
	key := g.r.key
	for _, route := range []string{
		"GET /v1/functions/..%2f..",
		"GET /v1/functions/%2e%2e",
		"GET /v1/functions/..%2F..%2Fetc%2Fpasswd",
		"DELETE /v1/functions/a%2fb",
		"GET /v1/functions/..%5c../revisions",
		"GET /v1/functions/%2e%2e%2f/invoke",
		"GET /v1/endpoints/a%00b",
		"GET /v1/tasks/..%2fother",
		"GET /e/..%2fsecret/x",
	} {
		method, path, _ := strings.Cut(route, " ")
		g.as(key, method, path, "").wantError(t, 400, "not a valid")
	}
	g.as(adminToken, "GET", "/v1/accounts/..%2fbob/keys", "").wantError(t, 400, "not a valid")
	for _, path := range []string{"/v1/functions/..", "/v1/functions/x/../../accounts"} {
		if r := g.as(key, "GET", path, ""); r.status < 300 || r.status >= 400 {
			t.Fatalf("%s: status %d, want a redirect to the cleaned path", path, r.status)
		}
	}
	if n, calls := g.r.f.submissions(), len(g.r.f.callsMade()); n != 0 || calls != 0 {
		t.Fatalf("hostile names started %d instances, sent %d calls", n, calls)
	}
}

func TestNoRoute(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	g.do("GET", "/", "").wantError(t, 404, "no route GET /")
	g.as(key, "PATCH", "/v1/functions", "").wantError(t, 404, "no route PATCH /v1/functions")
	g.as(key, "GET", "/v2/functions", "").wantError(t, 404)
}

func TestHugeHeaders(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	r := g.as(key, "GET", "/v1/functions", "", "X-Big", strings.Repeat("h", 128<<10))
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("128 KiB of headers: status %d, want 431", r.status)
	}
	g.as(key, "GET", "/v1/functions", "", "X-Big", strings.Repeat("h", 32<<10)).want(t, 200)
}

// TestAccountCredits: the operator credits an account and sets its limit;
// the account shows its balance, limit and what is available; amounts
// that are not credits, or not positive, are refused with 400 and change
// nothing; only the admin token may credit.
func TestAccountCredits(t *testing.T) {
	g := localGateway(t)
	created := decode[createdAccount](t, g.as(adminToken, "POST", "/v1/accounts", `{"name":"bob"}`).want(t, 201))
	a := decode[Account](t, g.as(adminToken, "POST", "/v1/accounts/bob/credits", `{"amount":"2.5","memo":"trial"}`).want(t, 200))
	a = decode[Account](t, g.as(adminToken, "POST", "/v1/accounts/bob/credits", `{"amount":0.000001}`).want(t, 200))
	if want := (Credits{Balance: 2500001, Available: 2500001}); a.Credits != want {
		t.Fatalf("after two credits: %+v, want %+v", a.Credits, want)
	}
	a = decode[Account](t, g.as(adminToken, "PUT", "/v1/accounts/bob/limit", `{"limit":"1"}`).want(t, 200))
	if want := (Credits{Balance: 2500001, Limit: types.Credit, Available: 3500001}); a.Credits != want {
		t.Fatalf("with a limit: %+v, want %+v", a.Credits, want)
	}
	for _, c := range []struct{ method, path, body, want string }{
		{"POST", "/v1/accounts/bob/credits", `{"amount":"0"}`, "positive"},
		{"POST", "/v1/accounts/bob/credits", `{"amount":"-1"}`, "positive"},
		{"POST", "/v1/accounts/bob/credits", `{"amount":"1.0000001"}`, "decimals"},
		{"POST", "/v1/accounts/bob/credits", `{"amount":1e3}`, "credits"},
		{"POST", "/v1/accounts/bob/credits", `{"amount":"9223372036854.775807"}`, "overflow"},
		{"PUT", "/v1/accounts/bob/limit", `{"limit":"-1"}`, "0 or more"},
		{"PUT", "/v1/accounts/bob/limit", `{"limit":`, ""},
	} {
		g.as(adminToken, c.method, c.path, c.body).wantError(t, 400, c.want)
	}
	g.as(adminToken, "POST", "/v1/accounts/carol/credits", `{"amount":"1"}`).wantError(t, 404)
	g.as(created.Key.Secret, "POST", "/v1/accounts/bob/credits", `{"amount":"1"}`).wantError(t, 401, "admin token")
	if got := decode[Account](t, g.as(adminToken, "GET", "/v1/accounts/bob", "").want(t, 200)); got.Credits != a.Credits {
		t.Fatalf("after the refusals: %+v, want %+v", got.Credits, a.Credits)
	}
}

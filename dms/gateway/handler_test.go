package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
)

const adminToken = "admin-token-0123456789"

// testGateway is a handler over a fakeBackend, served by Serve on
// 127.0.0.1.
type testGateway struct {
	t   *testing.T
	b   *fakeBackend
	url string
}

// startGateway serves a handler with c; tune, if given, adjusts the
// handler before its routes are made.
func startGateway(t *testing.T, c HandlerConfig, tune ...func(*handler)) *testGateway {
	t.Helper()
	b := newFakeBackend()
	h := newHandler(b, c)
	for _, f := range tune {
		f(h)
	}
	srv, err := Serve(ServerConfig{Addr: "127.0.0.1:0"}, h.routes())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return &testGateway{t: t, b: b, url: srv.URL()}
}

func publicGateway(t *testing.T) *testGateway { return startGateway(t, HandlerConfig{}) }

func localGateway(t *testing.T) *testGateway {
	return startGateway(t, HandlerConfig{AdminToken: adminToken})
}

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
	key := g.b.addAccount("alice")

	if got := string(g.as(key, "GET", "/v1/functions", "").want(t, 200).body); got != "[]\n" {
		t.Fatalf("empty list is %q, want []", got)
	}
	blob := decode[map[string]string](t, g.as(key, "POST", "/v1/blobs", "wasm!").want(t, 201))
	if blob["cid"] != "cid-5" {
		t.Fatalf("blob reply %v", blob)
	}
	deploy := `{"name":"echo","module":"cid-5","tags":{"team":"a"}}`
	if rev := decode[Revision](t, g.as(key, "POST", "/v1/functions", deploy).want(t, 201)); rev.Number != 1 {
		t.Fatalf("first deploy made revision %d", rev.Number)
	}
	g.as(key, "POST", "/v1/functions", `{"name":"echo","module":"cid-5","no_default":true}`).want(t, 201)

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
	key := g.b.addAccount("alice")

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
	key := g.b.addAccount("alice")
	for _, d := range []string{
		`{"name":"a","tags":{"env":"prod","team":"x"}}`,
		`{"name":"b","tags":{"env":"dev"}}`,
		`{"name":"c","tags":{"env":"prod"}}`,
		`{"name":"d"}`,
	} {
		g.as(key, "POST", "/v1/functions", d).want(t, 201)
	}

	list := decode[[]Function](t, g.as(key, "GET", "/v1/functions?tag=env=prod&search=x&sort=calls", "").want(t, 200))
	if len(list) != 2 || list[0].Name != "a" || list[1].Name != "c" {
		t.Fatalf("filtered list %+v", list)
	}
	if q := g.b.query; q.Search != "x" || q.Sort != "calls" || len(q.Tags) != 1 || q.Tags["env"] != "prod" {
		t.Fatalf("backend got query %+v", q)
	}
	g.as(key, "GET", "/v1/functions?tag=env=prod&tag=team=x", "").want(t, 200)
	if q := g.b.query; len(q.Tags) != 2 {
		t.Fatalf("repeated tag: backend got %+v", q.Tags)
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
		{"tags=env=prod", `unknown parameter "tags"`},
		{"search=%zz", "query"},
	} {
		g.as(key, "GET", "/v1/functions?"+bad.query, "").wantError(t, 400, bad.says)
		g.as(key, "GET", "/v1/endpoints?"+bad.query, "").wantError(t, 400, bad.says)
	}
}

func TestTaskRoutes(t *testing.T) {
	g := publicGateway(t)
	key := g.b.addAccount("alice")
	g.b.addTask("alice", Task{ID: "t1", Function: "echo", State: TaskRunning}, nil)
	g.b.addTask("alice", Task{ID: "t2", Function: "echo", State: TaskCompleted}, &Response{
		Status: 418, Header: http.Header{"X-Teapot": {"yes"}}, Body: []byte("short and stout"), Task: "t2",
	})

	list := decode[[]Task](t, g.as(key, "GET", "/v1/tasks?function=echo&state=completed&limit=5", "").want(t, 200))
	if len(list) != 1 || list[0].ID != "t2" {
		t.Fatalf("tasks %+v", list)
	}
	if q := g.b.taskQuery; q != (TaskQuery{Function: "echo", State: TaskCompleted, Limit: 5}) {
		t.Fatalf("backend got %+v", q)
	}
	g.as(key, "GET", "/v1/tasks?limit=-1", "").wantError(t, 400, "limit")
	g.as(key, "GET", "/v1/tasks?limit=many", "").wantError(t, 400, "limit")
	g.as(key, "GET", "/v1/tasks?fn=echo", "").wantError(t, 400, `unknown parameter "fn"`)

	if task := decode[Task](t, g.as(key, "GET", "/v1/tasks/t1", "").want(t, 200)); task.State != TaskRunning {
		t.Fatalf("task %+v", task)
	}
	g.as(key, "GET", "/v1/tasks/t9", "").wantError(t, 404)
	g.as(key, "GET", "/v1/tasks/t1/result", "").wantError(t, 409, "running")

	r := g.as(key, "GET", "/v1/tasks/t2/result", "").answer(t, 418)
	if string(r.body) != "short and stout" || r.header.Get("X-Teapot") != "yes" || r.header.Get(HeaderTask) != "t2" {
		t.Fatalf("result: %d %v %q", r.status, r.header, r.body)
	}

	if task := decode[Task](t, g.as(key, "POST", "/v1/tasks/t1/stop", "").want(t, 200)); task.State != TaskStopped {
		t.Fatalf("stopped task %+v", task)
	}
	g.as(key, "POST", "/v1/tasks/t1/stop", "").wantError(t, 409, "ended")
}

func TestHandlerInvoke(t *testing.T) {
	g := publicGateway(t)
	key := g.b.addAccount("alice")
	g.as(key, "POST", "/v1/functions", `{"name":"echo"}`).want(t, 201)
	g.b.invoke = func(_, _ string, call Call, body []byte) (Response, error) {
		return Response{
			Status: http.StatusNotFound,
			Header: http.Header{"X-Fn": {"mine"}, HeaderError: {"1"}, HeaderTask: {"forged"}, "Content-Length": {"1"}},
			Body:   append([]byte("no such page: "), body...),
			Task:   "t-42",
		}, nil
	}

	r := g.as(key, "POST", "/v1/functions/echo/invoke/a/b%20c?x=1&rev=1&y=%26&async=0&x=2", "payload",
		"X-Custom", "v", HeaderAccount+"-Not", "kept")
	if r.status != 404 || string(r.body) != "no such page: payload" {
		t.Fatalf("function's answer: %d %q", r.status, r.body)
	}
	if r.header.Get(HeaderTask) != "t-42" || r.header.Get(HeaderError) != "" || r.header.Get("X-Fn") != "mine" {
		t.Fatalf("function's headers: %v", r.header)
	}
	call := g.b.calls[len(g.b.calls)-1]
	want := Call{Revision: 1, Method: "POST", Path: "/a/b%20c", RawQuery: "x=1&y=%26&x=2", Host: strings.TrimPrefix(g.url, "http://"),
		Scheme: "http", Proto: "HTTP/1.1", ClientIP: "127.0.0.1"}
	got := call
	got.Header, got.Body = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("call\n %+v, want\n %+v", got, want)
	}
	if call.Header.Get("X-Custom") != "v" || call.Header.Get("Authorization") != "" {
		t.Fatalf("call headers %v: want X-Custom, no Authorization", call.Header)
	}

	for path, want := range map[string]string{"/invoke": "", "/invoke/": "/", "/invoke/x/": "/x/", "/invoke/a%2Fb/%C3%A9": "/a%2Fb/%C3%A9"} {
		g.as(key, "GET", "/v1/functions/echo"+path, "").answer(t, 404)
		if got := g.b.calls[len(g.b.calls)-1]; got.Path != want || got.Method != "GET" || got.Revision != 0 {
			t.Fatalf("%s: call path %q method %s rev %d, want path %q", path, got.Path, got.Method, got.Revision, want)
		}
	}

	for _, q := range []string{"rev=0", "rev=x", "rev=1&rev=2", "async=maybe", "async=1&async=1"} {
		g.as(key, "GET", "/v1/functions/echo/invoke?"+q, "").wantError(t, 400, "query")
	}
	g.as(key, "GET", "/v1/functions/nope/invoke", "").wantError(t, 404, "nope")
}

func TestHandlerInvokeAsync(t *testing.T) {
	g := publicGateway(t)
	key := g.b.addAccount("alice")
	g.as(key, "POST", "/v1/functions", `{"name":"echo"}`).want(t, 201)

	for _, q := range []string{"async=1", "async", "async=true&rev=1"} {
		r := g.as(key, "PUT", "/v1/functions/echo/invoke?"+q+"&k=v", "body").want(t, 202)
		task := decode[Task](t, r)
		if task.ID == "" || task.State != TaskScheduled || r.header.Get(HeaderTask) != task.ID ||
			r.header.Get("Location") != "/v1/tasks/"+task.ID {
			t.Fatalf("%s: task %+v, headers %v", q, task, r.header)
		}
		if call := g.b.calls[len(g.b.calls)-1]; call.RawQuery != "k=v" || call.Method != "PUT" {
			t.Fatalf("%s: async call %+v", q, call)
		}
	}
}

func TestCallErrors(t *testing.T) {
	g := publicGateway(t)
	key := g.b.addAccount("alice")
	g.as(key, "POST", "/v1/functions", `{"name":"f"}`).want(t, 201)

	for _, c := range []struct {
		err    error
		status int
		task   string
		retry  string
	}{
		{&CallError{Task: "t-7", Err: fmt.Errorf("%w: the module trapped", api.ErrBadGateway)}, 502, "t-7", ""},
		{&CallError{Task: "t-8", Err: fmt.Errorf("%w: ran 30s", api.ErrGatewayTimeout)}, 504, "t-8", ""},
		{fmt.Errorf("%w: no provider: 3 busy", api.ErrUnavailable), 503, "", ""},
		{fmt.Errorf("%w: body over 1024 bytes", api.ErrTooLarge), 413, "", ""},
		{&api.RetryError{Err: fmt.Errorf("%w: quota of 5 used", api.ErrTooManyRequests), After: 90 * time.Second}, 429, "", "90"},
		{&CallError{Task: "t-9", Err: &api.RetryError{Err: api.ErrTooManyRequests, After: 1500 * time.Millisecond}}, 429, "t-9", "2"},
	} {
		g.b.invoke = func(string, string, Call, []byte) (Response, error) { return Response{}, c.err }
		r := g.as(key, "GET", "/v1/functions/f/invoke", "")
		r.wantError(t, c.status, c.err.Error())
		if r.header.Get(HeaderTask) != c.task || r.header.Get("Retry-After") != c.retry {
			t.Fatalf("%v: %s %q, Retry-After %q", c.err, HeaderTask, r.header.Get(HeaderTask), r.header.Get("Retry-After"))
		}
	}

	g.b.invoke = func(string, string, Call, []byte) (Response, error) { return Response{Status: 99, Task: "t-10"}, nil }
	r := g.as(key, "GET", "/v1/functions/f/invoke", "")
	r.wantError(t, 502, "status 99")
	if r.header.Get(HeaderTask) != "t-10" {
		t.Fatalf("bad status: %s %q", HeaderTask, r.header.Get(HeaderTask))
	}
}

func TestEndpointCall(t *testing.T) {
	g := publicGateway(t)
	g.b.endpoint = func(name string, call Call, body []byte, key string) (Response, error) {
		switch name {
		case "closed":
			return Response{}, &CallError{Task: "t-c", Err: fmt.Errorf("%w: outside every window; next opening Mon 08:00", api.ErrForbidden)}
		case "full":
			return Response{}, &api.RetryError{Err: fmt.Errorf("%w: daily quota of 5 used", api.ErrTooManyRequests), After: time.Hour}
		}
		return Response{Status: 201, Body: body, Task: "t-e"}, nil
	}

	r := g.do("PATCH", "/e/hello/x/y?rev=3&async=1", "hi", "Authorization", "Bearer some-key", "Proxy-Authorization", "Basic cDpx",
		"X-A", "b").want(t, 201)
	if string(r.body) != "hi" || r.header.Get(HeaderTask) != "t-e" {
		t.Fatalf("endpoint answer %q %v", r.body, r.header)
	}
	call, key := g.b.calls[0], g.b.keysSeen[0]
	if g.b.names[0] != "hello" || call.Path != "/x/y" || call.RawQuery != "rev=3&async=1" || call.Method != "PATCH" || key != "some-key" {
		t.Fatalf("endpoint %q call %+v key %q", g.b.names[0], call, key)
	}
	if call.Header.Get("Authorization") != "" || call.Header.Get("Proxy-Authorization") != "" || call.Header.Get("X-A") != "b" {
		t.Fatalf("endpoint call headers %v", call.Header)
	}

	g.do("GET", "/e/hello", "").want(t, 201)
	if call, key := g.b.calls[1], g.b.keysSeen[1]; call.Path != "" || key != "" {
		t.Fatalf("bare endpoint: path %q key %q", call.Path, key)
	}
	g.do("GET", "/e/hello/", "", "Authorization", "Basic dXNlcjpwdw==").want(t, 201)
	if key := g.b.keysSeen[2]; key != "" {
		t.Fatalf("a Basic credential passed as key %q", key)
	}

	r = g.do("GET", "/e/closed", "")
	r.wantError(t, 403, "next opening")
	if r.header.Get(HeaderTask) != "t-c" {
		t.Fatalf("refusal with a task: %v", r.header)
	}
	r = g.do("GET", "/e/full/", "")
	r.wantError(t, 429, "quota")
	if r.header.Get("Retry-After") != "3600" {
		t.Fatalf("Retry-After %q, want 3600", r.header.Get("Retry-After"))
	}
}

func TestClientIP(t *testing.T) {
	answer := func(_ string, call Call, _ []byte, _ string) (Response, error) {
		return Response{Status: 200, Body: []byte(call.ClientIP)}, nil
	}
	untrusting := publicGateway(t)
	untrusting.b.endpoint = answer
	trusting := startGateway(t, HandlerConfig{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	trusting.b.endpoint = answer

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

	created := decode[createdAccount](t, g.as(adminToken, "POST", "/v1/accounts", `{"name":"alice"}`).want(t, 201))
	if created.Account.Name != "alice" || created.Key.Secret == "" || created.Key.ID == "" {
		t.Fatalf("created %+v", created)
	}
	g.as(adminToken, "POST", "/v1/accounts", `{"name":"alice"}`).wantError(t, 409)
	g.as(adminToken, "POST", "/v1/accounts", `{}`).wantError(t, 400)
	if list := decode[[]Account](t, g.as(adminToken, "GET", "/v1/accounts", "").want(t, 200)); len(list) != 1 {
		t.Fatalf("accounts %+v", list)
	}
	g.as(adminToken, "GET", "/v1/accounts/alice", "").want(t, 200)
	g.as(adminToken, "GET", "/v1/accounts/bob", "").wantError(t, 404)
	k := decode[NewKey](t, g.as(adminToken, "POST", "/v1/accounts/alice/keys", "").want(t, 201))
	keys := decode[[]Key](t, g.as(adminToken, "GET", "/v1/accounts/alice/keys", "").want(t, 200))
	if len(keys) != 2 || strings.Contains(string(g.as(adminToken, "GET", "/v1/accounts/alice/keys", "").body), k.Secret) {
		t.Fatalf("keys %+v: want 2, without secrets", keys)
	}

	g.as(k.Secret, "GET", "/v1/functions", "").want(t, 200)
	g.as(adminToken, "DELETE", "/v1/accounts/alice/keys/"+k.ID, "").want(t, 204)
	g.as(adminToken, "DELETE", "/v1/accounts/alice/keys/"+k.ID, "").wantError(t, 409)
	g.as(k.Secret, "GET", "/v1/functions", "").wantError(t, 401)

	// An account's key is no admin.
	g.as(created.Key.Secret, "GET", "/v1/accounts", "").wantError(t, 401, "admin token")
	g.do("GET", "/v1/accounts", "").wantError(t, 401)
}

// TestPublicHasNoAdmin: the public listener has no admin routes at all: a
// 404 whatever the credentials, so it does not even tell that they exist.
func TestPublicHasNoAdmin(t *testing.T) {
	g := publicGateway(t)
	key := g.b.addAccount("alice")
	for _, auth := range []string{"", adminToken, key} {
		for _, route := range []string{"POST /v1/accounts", "GET /v1/accounts", "GET /v1/accounts/alice",
			"POST /v1/accounts/alice/keys", "GET /v1/accounts/alice/keys", "DELETE /v1/accounts/alice/keys/k1"} {
			method, path, _ := strings.Cut(route, " ")
			g.as(auth, method, path, `{"name":"mallory"}`).wantError(t, 404, "no route")
		}
	}
	if len(g.b.accounts) != 1 {
		t.Fatalf("accounts %v", g.b.accounts)
	}
}

// TestBadCredentials: every bad credential gets the same 401, so a caller
// cannot tell a revoked key from a made-up one.
func TestBadCredentials(t *testing.T) {
	g := publicGateway(t)
	key := g.b.addAccount("alice")
	revoked := g.b.addAccount("bob")
	if err := g.b.RevokeKey(context.Background(), "bob", g.b.keys[revoked].ID); err != nil {
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
		{"Authorization", revoked},
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
	if len(g.b.as) != 0 {
		t.Fatalf("As called for %v", g.b.as)
	}
	g.do("GET", "/v1/functions", "", "Authorization", "bearer "+key).want(t, 200) // the scheme is case-insensitive
}

func TestAccountHeader(t *testing.T) {
	for _, g := range []*testGateway{publicGateway(t), localGateway(t)} {
		alice := g.b.addAccount("alice")
		g.b.addAccount("bob")
		bob, _ := g.b.As(context.Background(), "bob")
		bob.Deploy(context.Background(), Deploy{Name: "secret"})
		g.b.as = nil

		// A key that names another account is refused, never followed.
		r := g.as(alice, "GET", "/v1/functions/secret", "", HeaderAccount, "bob")
		r.wantError(t, 400, "drop the "+HeaderAccount)
		if slices.Contains(g.b.as, "bob") {
			t.Fatalf("As(bob) called for alice's key")
		}
		g.as(alice, "GET", "/v1/functions/secret", "", HeaderAccount, "alice").wantError(t, 400)
		g.as(alice, "GET", "/v1/functions/secret", "").wantError(t, 404)
	}

	g := localGateway(t)
	g.b.addAccount("bob")
	bob, _ := g.b.As(context.Background(), "bob")
	bob.Deploy(context.Background(), Deploy{Name: "f"})
	g.as(adminToken, "GET", "/v1/functions/f", "", HeaderAccount, "bob").want(t, 200)
	g.as(adminToken, "GET", "/v1/functions/f", "").wantError(t, 400, HeaderAccount)
	g.as(adminToken, "GET", "/v1/functions/f", "", HeaderAccount, "").wantError(t, 400, HeaderAccount)
	g.as(adminToken, "GET", "/v1/functions/f", "", HeaderAccount, "bob", HeaderAccount, "bob").wantError(t, 400)
	g.as(adminToken, "GET", "/v1/functions/f", "", HeaderAccount, "nobody").wantError(t, 404, "nobody")
	g.as(adminToken+"x", "GET", "/v1/functions/f", "", HeaderAccount, "bob").wantError(t, 401)
}

func TestJSONBodies(t *testing.T) {
	g := publicGateway(t)
	key := g.b.addAccount("alice")
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
	if list := g.b.accounts["alice"]; len(list.functions) != 0 || len(list.endpoints) != 0 {
		t.Fatalf("a bad body made something: %v %v", list.functions, list.endpoints)
	}
}

func TestModuleLimit(t *testing.T) {
	g := startGateway(t, HandlerConfig{}, func(h *handler) { h.maxModule = 1024 })
	key := g.b.addAccount("alice")
	g.as(key, "POST", "/v1/blobs", strings.Repeat("m", 1024)).want(t, 201)
	g.as(key, "POST", "/v1/blobs", strings.Repeat("m", 1025)).wantError(t, 413, "module over 1024 bytes")
}

func TestHostileNames(t *testing.T) {
	g := localGateway(t)
	key := g.b.addAccount("alice")
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
	if len(g.b.names) != 0 || len(g.b.calls) != 0 {
		t.Fatalf("the backend saw names %q, calls %d", g.b.names, len(g.b.calls))
	}
}

func TestNoRoute(t *testing.T) {
	g := publicGateway(t)
	key := g.b.addAccount("alice")
	g.do("GET", "/", "").wantError(t, 404, "no route GET /")
	g.as(key, "PATCH", "/v1/functions", "").wantError(t, 404, "no route PATCH /v1/functions")
	g.as(key, "GET", "/v2/functions", "").wantError(t, 404)
}

func TestHugeHeaders(t *testing.T) {
	g := publicGateway(t)
	key := g.b.addAccount("alice")
	r := g.as(key, "GET", "/v1/functions", "", "X-Big", strings.Repeat("h", 128<<10))
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("128 KiB of headers: status %d, want 431", r.status)
	}
	g.as(key, "GET", "/v1/functions", "", "X-Big", strings.Repeat("h", 32<<10)).want(t, 200)
}

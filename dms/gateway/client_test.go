package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func TestClientAdmin(t *testing.T) {
	g := localGateway(t)
	ctx := context.Background()
	admin := NewClient(g.url+"/", Auth{Token: adminToken}, nil)

	a, k, err := admin.CreateAccount(ctx, "bob")
	if err != nil || a.Name != "bob" || k.Secret == "" {
		t.Fatalf("CreateAccount: %+v %+v %v", a, k, err)
	}
	if _, _, err := admin.CreateAccount(ctx, "bob"); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("CreateAccount twice: %v, want ErrConflict", err)
	}
	if list, err := admin.ListAccounts(ctx); err != nil || len(list) != 2 {
		t.Fatalf("ListAccounts: %+v %v, want alice and bob", list, err)
	}
	if _, err := admin.GetAccount(ctx, "carol"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("GetAccount(carol): %v, want ErrNotFound", err)
	}
	k2, err := admin.AddKey(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := admin.ListKeys(ctx, "bob"); err != nil || len(keys) != 2 {
		t.Fatalf("ListKeys: %+v %v", keys, err)
	}
	if err := admin.RevokeKey(ctx, "bob", k2.ID); err != nil {
		t.Fatal(err)
	}
	if err := admin.RevokeKey(ctx, "bob", k2.ID); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("RevokeKey twice: %v, want ErrConflict", err)
	}
	revoked := NewClient(g.url, Auth{Key: k2.Secret}, nil)
	if _, err := revoked.ListFunctions(ctx, Query{}); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("a revoked key: %v, want ErrUnauthorized", err)
	}
	if _, err := NewClient(g.url, Auth{Key: k.Secret}, nil).ListAccounts(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("a key on an admin route: %v, want ErrUnauthorized", err)
	}

	// The admin token acts as an account named beside it.
	bob := NewClient(g.url, Auth{Token: adminToken, Account: "bob"}, nil)
	if _, err := bob.Deploy(ctx, Deploy{Name: "f", Module: g.module()}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewClient(g.url, Auth{Key: k.Secret}, nil).GetFunction(ctx, "f"); err != nil {
		t.Fatalf("bob's key does not see what the token deployed as bob: %v", err)
	}
	if _, err := NewClient(g.url, Auth{Key: g.r.key}, nil).GetFunction(ctx, "f"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("alice sees bob's function: %v, want ErrNotFound", err)
	}
}

func TestClientFunctions(t *testing.T) {
	g := publicGateway(t)
	ctx := context.Background()
	c := NewClient(g.url, Auth{Key: g.r.key}, nil)

	cid, err := c.PutModule(ctx, strings.NewReader("module"))
	if want := types.CIDOf([]byte("module")).String(); err != nil || cid != want {
		t.Fatalf("PutModule: %q %v, want %s", cid, err, want)
	}
	for _, d := range []Deploy{
		{Name: "a", Module: cid, Tags: map[string]string{"env": "prod"}},
		{Name: "a", Module: cid, NoDefault: true},
		{Name: "b", Module: cid, Tags: map[string]string{"env": "dev"}},
		{Name: "ab", Module: cid, Tags: map[string]string{"env": "prod"}},
	} {
		if _, err := c.Deploy(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Deploy(ctx, Deploy{Name: "x", Module: types.CIDOf([]byte("nowhere")).String()}); !errors.As(err, new(*jobs.SpecError)) {
		t.Fatalf("Deploy of a module nobody has: %v, want a *jobs.SpecError", err)
	}
	g.r.clock.Add(time.Minute)
	if _, err := c.Deploy(ctx, Deploy{Name: "ab", Module: cid}); err != nil { // not newer: created stays
		t.Fatal(err)
	}
	list, err := c.ListFunctions(ctx, Query{Tags: map[string]string{"env": "prod"}, Search: "a", Sort: "created"})
	if err != nil || len(list) != 2 || list[0].Name != "a" || list[1].Name != "ab" {
		t.Fatalf("ListFunctions: %+v %v, want a, ab", list, err)
	}
	if list, err := c.ListFunctions(ctx, Query{Tags: map[string]string{"env": "prod"}, Search: "AB"}); err != nil || len(list) != 1 {
		t.Fatalf("ListFunctions(search AB): %+v %v, want ab", list, err)
	}
	if _, err := c.ListFunctions(ctx, Query{Sort: "size"}); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("ListFunctions(sort size): %v, want ErrBadRequest", err)
	}
	groups, err := c.ListFunctionGroups(ctx, Query{}, "env")
	if err != nil || len(groups) != 2 || groups[0].Value != "dev" || len(groups[0].Items) != 1 {
		t.Fatalf("ListFunctionGroups: %+v %v", groups, err)
	}
	if revs, err := c.Revisions(ctx, "a"); err != nil || len(revs) != 2 {
		t.Fatalf("Revisions: %+v %v", revs, err)
	}
	if fn, err := c.SetDefault(ctx, "a", 2); err != nil || fn.DefaultRevision != 2 {
		t.Fatalf("SetDefault: %+v %v", fn, err)
	}
	if _, err := c.SetDefault(ctx, "a", 7); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("SetDefault(7): %v, want ErrNotFound", err)
	}
	if fn, err := c.SetTags(ctx, "a", nil); err != nil || len(fn.Tags) != 0 {
		t.Fatalf("SetTags(nil): %+v %v", fn, err)
	}
	if err := c.DeleteFunction(ctx, "ab"); err != nil {
		t.Fatal(err)
	}
	if tags, err := c.ListTags(ctx); err != nil || len(tags) != 1 || tags[0].Value != "dev" {
		t.Fatalf("ListTags: %+v %v", tags, err)
	}
	if err := c.DeleteFunction(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetFunction(ctx, "a"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("GetFunction after delete: %v, want ErrNotFound", err)
	}
	if _, err := c.GetFunction(ctx, "a/../b"); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("GetFunction(a/../b): %v, want ErrBadRequest", err)
	}
}

func TestClientEndpoints(t *testing.T) {
	g := publicGateway(t)
	ctx := context.Background()
	c := NewClient(g.url, Auth{Key: g.r.key}, nil)
	g.deploy(Deploy{Name: "f"})

	spec := EndpointSpec{Name: "e", Function: "f", DailyQuota: 5, Tags: map[string]string{"env": "prod"}}
	if e, err := c.CreateEndpoint(ctx, spec); err != nil || e.Path != "/e/e/" {
		t.Fatalf("CreateEndpoint: %+v %v", e, err)
	}
	if _, err := c.CreateEndpoint(ctx, spec); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("CreateEndpoint twice: %v, want ErrConflict", err)
	}
	if _, err := c.CreateEndpoint(ctx, EndpointSpec{Name: "g", Function: "nope"}); !errors.As(err, new(*jobs.SpecError)) {
		t.Fatalf("CreateEndpoint of no function: %v, want a *jobs.SpecError", err)
	}
	spec.DailyQuota = 9
	if e, err := c.UpdateEndpoint(ctx, spec); err != nil || e.DailyQuota != 9 {
		t.Fatalf("UpdateEndpoint: %+v %v", e, err)
	}
	if list, err := c.ListEndpoints(ctx, Query{Tags: map[string]string{"env": "dev"}}); err != nil || len(list) != 0 {
		t.Fatalf("ListEndpoints(env=dev): %+v %v", list, err)
	}
	if groups, err := c.ListEndpointGroups(ctx, Query{}, "env"); err != nil || len(groups) != 1 || groups[0].Value != "prod" {
		t.Fatalf("ListEndpointGroups: %+v %v", groups, err)
	}
	if e, err := c.GetEndpoint(ctx, "e"); err != nil || e.Name != "e" {
		t.Fatalf("GetEndpoint: %+v %v", e, err)
	}
	if err := c.DeleteEndpoint(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteEndpoint(ctx, "e"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("DeleteEndpoint twice: %v, want ErrNotFound", err)
	}
}

// TestClientInvoke: a function's own status, a 404 even, is an answer; the
// gateway's errors are errors, with their task.
func TestClientInvoke(t *testing.T) {
	g := publicGateway(t)
	ctx := context.Background()
	c := NewClient(g.url, Auth{Key: g.r.key}, nil)
	g.deploy(Deploy{Name: "f"})
	g.deploy(Deploy{Name: "f"})
	g.r.f.setCalls(func(_ context.Context, c fakeCall) (*types.CallReply, error) {
		if c.Req.Env["HTTP_X_FAIL"] != "" {
			return exited(3, "the function's queue is full"), nil
		}
		return answer("Status: 404 Not Found\nX-Fn: 1\n\n" + string(c.Req.Stdin)), nil
	})

	call := Call{Revision: 1, Method: "DELETE", Path: "/a%20b/c%2Fd", RawQuery: "q=%2F&z", Header: http.Header{"X-H": {"v"}},
		Body: strings.NewReader("in")}
	resp, err := c.Invoke(ctx, "f", call)
	if err != nil {
		t.Fatalf("a function's 404 is an answer, not %v", err)
	}
	if resp.Status != 404 || string(resp.Body) != "in" || resp.Task == "" || resp.Header.Get("X-Fn") != "1" {
		t.Fatalf("Invoke: %+v", resp)
	}
	sent := g.lastCall()
	if sent.Spec.Name != "fn:alice/f@1" {
		t.Fatalf("call on %s, want revision 1's", sent.Spec.Name)
	}
	wantEnv(t, sent, map[string]string{"REQUEST_METHOD": "DELETE", "X_RAW_PATH_INFO": "/a%20b/c%2Fd", "QUERY_STRING": "q=%2F&z", "HTTP_X_H": "v"})
	if task, err := c.GetTask(ctx, resp.Task); err != nil || task.State != TaskCompleted || task.Status != 404 {
		t.Fatalf("the task of a 404: %+v %v", task, err)
	}

	_, err = c.Invoke(ctx, "f", Call{Header: http.Header{"X-Fail": {"1"}}})
	var callErr *CallError
	switch {
	case !errors.Is(err, api.ErrBadGateway):
		t.Fatalf("a failed function: %v, want ErrBadGateway", err)
	case !errors.As(err, &callErr) || callErr.Task == "":
		t.Fatalf("a failed function: %v, want its task", err)
	case !strings.Contains(err.Error(), "queue is full"):
		t.Fatalf("a failed function: message %q", err)
	}
	if task, err := c.GetTask(ctx, callErr.Task); err != nil || task.State != TaskFailed {
		t.Fatalf("the failed call's task: %+v %v", task, err)
	}
	if _, err := c.Invoke(ctx, "nope", Call{}); !errors.Is(err, api.ErrNotFound) || errors.As(err, &callErr) {
		t.Fatalf("an unknown function: %v, want ErrNotFound without a task", err)
	}
}

func TestClientTasks(t *testing.T) {
	g := publicGateway(t)
	ctx := context.Background()
	c := NewClient(g.url, Auth{Key: g.r.key}, nil)
	g.deploy(Deploy{Name: "f"})
	g.deploy(Deploy{Name: "f"})
	release := g.r.f.hold()

	task, err := c.InvokeAsync(ctx, "f", Call{Method: "POST", RawQuery: "x=1", Revision: 1, Body: strings.NewReader("b")})
	if err != nil || task.ID == "" || !task.Async || task.Revision != 1 {
		t.Fatalf("InvokeAsync: %+v %v", task, err)
	}
	if call := callsIn(t, g.r.f, 1)[0]; call.Spec.Name != "fn:alice/f@1" || string(call.Req.Stdin) != "b" || call.Req.Env["QUERY_STRING"] != "x=1" {
		t.Fatalf("the call on %s got stdin %q, query %q", call.Spec.Name, call.Req.Stdin, call.Req.Env["QUERY_STRING"])
	}
	if _, err := c.TaskResult(ctx, task.ID); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("the result of a task in flight: %v, want ErrConflict", err)
	}
	if list, err := c.ListTasks(ctx, TaskQuery{Function: "f", State: TaskRunning, Limit: 3}); err != nil || len(list) != 1 {
		t.Fatalf("ListTasks: %+v %v", list, err)
	}
	if list, err := c.ListTasks(ctx, TaskQuery{Function: "g"}); err != nil || len(list) != 0 {
		t.Fatalf("ListTasks(g): %+v %v", list, err)
	}
	if _, err := c.ListTasks(ctx, TaskQuery{State: "sleeping"}); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("ListTasks(sleeping): %v, want ErrBadRequest", err)
	}
	if got, err := c.GetTask(ctx, task.ID); err != nil || got.ID != task.ID {
		t.Fatalf("GetTask: %+v %v", got, err)
	}
	if got, err := c.StopTask(ctx, task.ID); err != nil || got.State != TaskStopped {
		t.Fatalf("StopTask: %+v %v", got, err)
	}
	if _, err := c.StopTask(ctx, task.ID); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("StopTask twice: %v, want ErrConflict", err)
	}

	release()
	g.r.f.replying(answer("Status: 500 Internal Server Error\n\noops"))
	done, err := c.Invoke(ctx, "f", Call{IdempotencyKey: "keep-the-answer"})
	if err != nil || done.Status != 500 {
		t.Fatalf("a function's 500: %+v %v, want it as a Response", done, err)
	}
	resp, err := c.TaskResult(ctx, done.Task)
	if err != nil || resp.Status != 500 || string(resp.Body) != "oops" || resp.Task != done.Task {
		t.Fatalf("TaskResult: %+v %v", resp, err)
	}
}

func TestClientCallEndpoint(t *testing.T) {
	g := localGateway(t)
	ctx := context.Background()
	key := g.r.key
	g.deploy(Deploy{Name: "f"})
	g.endpoint(EndpointSpec{Name: "hello", Function: "f", Auth: AuthKey})
	g.endpoint(EndpointSpec{Name: "full", Function: "f", DailyQuota: 1})
	g.r.f.replying(answer("Status: 403 Forbidden\n\nthe function's own 403"))

	resp, err := NewClient(g.url, Auth{Key: key}, nil).CallEndpoint(ctx, "hello", Call{Method: "POST", Path: "/p", RawQuery: "rev=1"})
	if err != nil || resp.Status != 403 || resp.Task == "" {
		t.Fatalf("CallEndpoint: %+v %v", resp, err)
	}
	wantEnv(t, g.lastCall(), map[string]string{"X_RAW_PATH_INFO": "/p", "QUERY_STRING": "rev=1", "REQUEST_METHOD": "POST"})

	// The admin token is no key of an endpoint's: it is not sent.
	admin := NewClient(g.url, Auth{Token: adminToken, Account: "alice"}, nil)
	if _, err := admin.CallEndpoint(ctx, "hello", Call{}); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("the admin token on an endpoint with auth key: %v, want ErrUnauthorized (no key)", err)
	}
	if resp, err := admin.CallEndpoint(ctx, "full", Call{}); err != nil || resp.Status != 403 {
		t.Fatalf("the quota's one call: %+v %v", resp, err)
	}
	_, err = admin.CallEndpoint(ctx, "full", Call{})
	var retry api.Retryer
	if !errors.Is(err, api.ErrTooManyRequests) || !errors.As(err, &retry) || retry.RetryAfter() != 14*time.Hour {
		t.Fatalf("over the quota: %v, want ErrTooManyRequests after 14h", err)
	}
}

func TestClientTLS(t *testing.T) {
	pair := selfSigned(t)
	r := newRig(t)
	s, err := Serve(ServerConfig{Addr: "127.0.0.1:0", CertFile: pair.certFile, KeyFile: pair.keyFile}, NewHandler(r.g, HandlerConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pair.pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := NewClient(s.URL(), Auth{Key: r.key}, &http.Client{Transport: tr})

	if _, err := c.Deploy(context.Background(), Deploy{Name: "f", Module: r.f.put([]byte("module"))}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Invoke(context.Background(), "f", Call{})
	if err != nil || string(resp.Body) != "ok" {
		t.Fatalf("Invoke over TLS: %+v %v", resp, err)
	}
	env := r.f.lastCall(t).Req.Env
	if !strings.HasPrefix(env["X_FULL_URL"], "https://") || env["SERVER_PROTOCOL"] != "HTTP/2.0" {
		t.Fatalf("call came in as %s %s, want https HTTP/2.0", env["X_FULL_URL"], env["SERVER_PROTOCOL"])
	}
	if _, err := NewClient(s.URL(), Auth{Key: r.key}, nil).ListTags(context.Background()); err == nil {
		t.Fatal("a client without the CA trusted the self-signed gateway")
	}
}

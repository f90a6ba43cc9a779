package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
)

func TestClientAdmin(t *testing.T) {
	g := localGateway(t)
	ctx := context.Background()
	admin := NewClient(g.url+"/", Auth{Token: adminToken}, nil)

	a, k, err := admin.CreateAccount(ctx, "alice")
	if err != nil || a.Name != "alice" || k.Secret == "" {
		t.Fatalf("CreateAccount: %+v %+v %v", a, k, err)
	}
	if _, _, err := admin.CreateAccount(ctx, "alice"); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("CreateAccount twice: %v, want ErrConflict", err)
	}
	if list, err := admin.ListAccounts(ctx); err != nil || len(list) != 1 {
		t.Fatalf("ListAccounts: %+v %v", list, err)
	}
	if _, err := admin.GetAccount(ctx, "bob"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("GetAccount(bob): %v, want ErrNotFound", err)
	}
	k2, err := admin.AddKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := admin.ListKeys(ctx, "alice"); err != nil || len(keys) != 2 {
		t.Fatalf("ListKeys: %+v %v", keys, err)
	}
	if err := admin.RevokeKey(ctx, "alice", k2.ID); err != nil {
		t.Fatal(err)
	}
	if err := admin.RevokeKey(ctx, "alice", k2.ID); !errors.Is(err, api.ErrConflict) {
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
	alice := NewClient(g.url, Auth{Token: adminToken, Account: "alice"}, nil)
	if _, err := alice.Deploy(ctx, Deploy{Name: "f"}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewClient(g.url, Auth{Key: k.Secret}, nil).GetFunction(ctx, "f"); err != nil {
		t.Fatalf("alice's key does not see what the token deployed as alice: %v", err)
	}
}

func TestClientFunctions(t *testing.T) {
	g := publicGateway(t)
	ctx := context.Background()
	c := NewClient(g.url, Auth{Key: g.b.addAccount("alice")}, nil)

	cid, err := c.PutModule(ctx, strings.NewReader("module"))
	if err != nil || cid != "cid-6" {
		t.Fatalf("PutModule: %q %v", cid, err)
	}
	for _, d := range []Deploy{
		{Name: "a", Module: cid, Tags: map[string]string{"env": "prod"}},
		{Name: "a", Module: cid, NoDefault: true},
		{Name: "b", Module: cid, Tags: map[string]string{"env": "dev"}},
	} {
		if _, err := c.Deploy(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	list, err := c.ListFunctions(ctx, Query{Tags: map[string]string{"env": "prod"}, Search: "a", Sort: "created"})
	if err != nil || len(list) != 1 || list[0].Name != "a" {
		t.Fatalf("ListFunctions: %+v %v", list, err)
	}
	if q := g.b.query; q.Search != "a" || q.Sort != "created" || q.Tags["env"] != "prod" {
		t.Fatalf("the gateway got %+v", q)
	}
	groups, err := c.ListFunctionGroups(ctx, Query{}, "env")
	if err != nil || len(groups) != 2 || len(groups[0].Items) != 1 {
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
	c := NewClient(g.url, Auth{Key: g.b.addAccount("alice")}, nil)

	spec := EndpointSpec{Name: "e", Function: "f", DailyQuota: 5, Tags: map[string]string{"env": "prod"}}
	if e, err := c.CreateEndpoint(ctx, spec); err != nil || e.Path != "/e/e/" {
		t.Fatalf("CreateEndpoint: %+v %v", e, err)
	}
	if _, err := c.CreateEndpoint(ctx, spec); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("CreateEndpoint twice: %v, want ErrConflict", err)
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

func TestClientInvoke(t *testing.T) {
	g := publicGateway(t)
	ctx := context.Background()
	c := NewClient(g.url, Auth{Key: g.b.addAccount("alice")}, nil)
	if _, err := c.Deploy(ctx, Deploy{Name: "f"}); err != nil {
		t.Fatal(err)
	}
	g.b.invoke = func(_, _ string, call Call, body []byte) (Response, error) {
		if call.Header.Get("X-Fail") != "" {
			return Response{}, &CallError{Task: "t-busy", Err: &api.RetryError{
				Err: fmt.Errorf("%w: the function's queue is full", api.ErrTooManyRequests), After: 7 * time.Second}}
		}
		return Response{Status: 404, Header: http.Header{"X-Fn": {"1"}}, Body: body, Task: "t-1"}, nil
	}

	call := Call{Revision: 2, Method: "DELETE", Path: "/a%20b/c%2Fd", RawQuery: "q=%2F&z", Header: http.Header{"X-H": {"v"}},
		Body: strings.NewReader("in")}
	resp, err := c.Invoke(ctx, "f", call)
	if err != nil {
		t.Fatalf("a function's 404 is an answer, not %v", err)
	}
	if resp.Status != 404 || string(resp.Body) != "in" || resp.Task != "t-1" || resp.Header.Get("X-Fn") != "1" {
		t.Fatalf("Invoke: %+v", resp)
	}
	got := g.b.calls[len(g.b.calls)-1]
	if got.Revision != 2 || got.Method != "DELETE" || got.Path != "/a%20b/c%2Fd" || got.RawQuery != "q=%2F&z" || got.Header.Get("X-H") != "v" {
		t.Fatalf("the gateway got %+v", got)
	}

	_, err = c.Invoke(ctx, "f", Call{Header: http.Header{"X-Fail": {"1"}}})
	var retry api.Retryer
	var callErr *CallError
	switch {
	case !errors.Is(err, api.ErrTooManyRequests):
		t.Fatalf("a full queue: %v, want ErrTooManyRequests", err)
	case !errors.As(err, &retry) || retry.RetryAfter() != 7*time.Second:
		t.Fatalf("a full queue: %v, want Retry-After 7s", err)
	case !errors.As(err, &callErr) || callErr.Task != "t-busy":
		t.Fatalf("a full queue: %v, want its task t-busy", err)
	case !strings.Contains(err.Error(), "queue is full"):
		t.Fatalf("a full queue: message %q", err)
	}
	if _, err := c.Invoke(ctx, "nope", Call{}); !errors.Is(err, api.ErrNotFound) || errors.As(err, &callErr) {
		t.Fatalf("an unknown function: %v, want ErrNotFound without a task", err)
	}
}

func TestClientTasks(t *testing.T) {
	g := publicGateway(t)
	ctx := context.Background()
	c := NewClient(g.url, Auth{Key: g.b.addAccount("alice")}, nil)
	if _, err := c.Deploy(ctx, Deploy{Name: "f"}); err != nil {
		t.Fatal(err)
	}

	task, err := c.InvokeAsync(ctx, "f", Call{Method: "POST", RawQuery: "x=1", Revision: 1, Body: strings.NewReader("b")})
	if err != nil || task.ID == "" || !task.Async {
		t.Fatalf("InvokeAsync: %+v %v", task, err)
	}
	if got := g.b.calls[len(g.b.calls)-1]; got.RawQuery != "x=1" || got.Revision != 1 || string(g.b.bodies[len(g.b.bodies)-1]) != "b" {
		t.Fatalf("the gateway got %+v", got)
	}
	if _, err := c.TaskResult(ctx, task.ID); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("the result of a scheduled task: %v, want ErrConflict", err)
	}
	if list, err := c.ListTasks(ctx, TaskQuery{Function: "f", State: TaskScheduled, Limit: 3}); err != nil || len(list) != 1 {
		t.Fatalf("ListTasks: %+v %v", list, err)
	}
	if q := g.b.taskQuery; q != (TaskQuery{Function: "f", State: TaskScheduled, Limit: 3}) {
		t.Fatalf("the gateway got %+v", q)
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

	g.b.addTask("alice", Task{ID: "done", State: TaskCompleted}, &Response{Status: 500, Body: []byte("oops"), Task: "done"})
	resp, err := c.TaskResult(ctx, "done")
	if err != nil || resp.Status != 500 || string(resp.Body) != "oops" || resp.Task != "done" {
		t.Fatalf("TaskResult: %+v %v", resp, err)
	}
}

func TestClientCallEndpoint(t *testing.T) {
	g := localGateway(t)
	ctx := context.Background()
	key := g.b.addAccount("alice")
	g.b.endpoint = func(name string, call Call, body []byte, key string) (Response, error) {
		if name == "full" {
			return Response{}, &api.RetryError{Err: fmt.Errorf("%w: daily quota of 5 used", api.ErrTooManyRequests), After: time.Minute}
		}
		return Response{Status: 403, Body: []byte("the function's own 403"), Task: "t-e"}, nil
	}

	resp, err := NewClient(g.url, Auth{Key: key}, nil).CallEndpoint(ctx, "hello", Call{Method: "POST", Path: "/p", RawQuery: "rev=1"})
	if err != nil || resp.Status != 403 || resp.Task != "t-e" {
		t.Fatalf("CallEndpoint: %+v %v", resp, err)
	}
	if call, k := g.b.calls[0], g.b.keysSeen[0]; call.Path != "/p" || call.RawQuery != "rev=1" || call.Method != "POST" || k != key {
		t.Fatalf("the gateway got %+v with key %q", call, k)
	}

	_, err = NewClient(g.url, Auth{Token: adminToken, Account: "alice"}, nil).CallEndpoint(ctx, "full", Call{})
	var retry api.Retryer
	if !errors.Is(err, api.ErrTooManyRequests) || !errors.As(err, &retry) || retry.RetryAfter() != time.Minute {
		t.Fatalf("over the quota: %v, want ErrTooManyRequests after 1m", err)
	}
	if k := g.b.keysSeen[1]; k != "" {
		t.Fatalf("the admin token went to an endpoint as %q", k)
	}
}

func TestClientTLS(t *testing.T) {
	pair := selfSigned(t)
	b := newFakeBackend()
	key := b.addAccount("alice")
	s, err := Serve(ServerConfig{Addr: "127.0.0.1:0", CertFile: pair.certFile, KeyFile: pair.keyFile}, NewHandler(b, HandlerConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pair.pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := NewClient(s.URL(), Auth{Key: key}, &http.Client{Transport: tr})

	if _, err := c.Deploy(context.Background(), Deploy{Name: "f"}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Invoke(context.Background(), "f", Call{})
	if err != nil || string(resp.Body) != "ok" {
		t.Fatalf("Invoke over TLS: %+v %v", resp, err)
	}
	if call := b.calls[0]; call.Scheme != "https" || call.Proto != "HTTP/2.0" {
		t.Fatalf("call came in as %s %s, want https HTTP/2.0", call.Scheme, call.Proto)
	}
	if _, err := NewClient(s.URL(), Auth{Key: key}, nil).ListTags(context.Background()); err == nil {
		t.Fatal("a client without the CA trusted the self-signed gateway")
	}
}

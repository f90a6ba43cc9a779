package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/gateway/policy"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// fakeGateway is a gateway.Backend in memory, served by the real handler
// to the commands under test: accounts and keys, and per account the
// functions with revisions, endpoints, tasks and their answers. A call
// answers 200 with "METHOD PATH?QUERY\n" and its body, or the status its
// query's status=N asks for; async, its task completes at once.
type fakeGateway struct {
	mu       sync.Mutex
	now      time.Time
	accounts map[string]*fakeAccount
	keys     map[string]gateway.Key // by secret
	modules  map[string]bool        // CIDs put
	calls    []gateway.Call         // the calls run, for the tests to check
	n        int                    // the last ID given
}

var _ gateway.Backend = (*fakeGateway)(nil)

type fakeAccount struct {
	gw        *fakeGateway
	account   gateway.Account
	functions map[string]*gateway.Function
	revisions map[string][]gateway.Revision
	endpoints map[string]gateway.Endpoint
	tasks     map[string]gateway.Task
	results   map[string]gateway.Response
}

var _ gateway.Service = (*fakeAccount)(nil)

const fakeToken = "admin-token"

// newFakeGateway serves a fakeGateway over a real HTTP server and writes
// the server's address and admin token as the api.json of a home, so
// --account reaches it too. It returns the gateway, its URL and the home.
func newFakeGateway(t *testing.T) (*fakeGateway, string, string) {
	t.Helper()
	t.Setenv(envAPIKey, "")
	t.Setenv(envGateway, "")
	g := &fakeGateway{
		now:      time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC),
		accounts: map[string]*fakeAccount{}, keys: map[string]gateway.Key{}, modules: map[string]bool{},
	}
	srv := httptest.NewServer(gateway.NewHandler(g, gateway.HandlerConfig{AdminToken: fakeToken}))
	t.Cleanup(srv.Close)
	home := t.TempDir()
	if err := api.WriteEndpoint(home, api.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://"), Token: fakeToken}); err != nil {
		t.Fatal(err)
	}
	return g, srv.URL, home
}

// addAccount makes an account and returns its key's secret.
func (g *fakeGateway) addAccount(t *testing.T, name string) string {
	t.Helper()
	_, key, err := g.CreateAccount(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return key.Secret
}

// lastCall is the last call a function ran.
func (g *fakeGateway) lastCall() gateway.Call {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[len(g.calls)-1]
}

func (g *fakeGateway) id(prefix string) string {
	g.n++
	return fmt.Sprintf("%s%d", prefix, g.n)
}

func notFound(kind, name string) error {
	return fmt.Errorf("%w: no %s %q", api.ErrNotFound, kind, name)
}

func (g *fakeGateway) CreateAccount(_ context.Context, name string) (gateway.Account, gateway.NewKey, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.accounts[name] != nil {
		return gateway.Account{}, gateway.NewKey{}, fmt.Errorf("%w: account %q exists", api.ErrConflict, name)
	}
	g.accounts[name] = &fakeAccount{
		gw: g, account: gateway.Account{Name: name, CreatedAt: g.now},
		functions: map[string]*gateway.Function{}, revisions: map[string][]gateway.Revision{},
		endpoints: map[string]gateway.Endpoint{}, tasks: map[string]gateway.Task{}, results: map[string]gateway.Response{},
	}
	key := g.newKey(name)
	return g.accounts[name].account, key, nil
}

// newKey makes a key of an account; the caller holds g.mu.
func (g *fakeGateway) newKey(account string) gateway.NewKey {
	k := gateway.NewKey{Key: gateway.Key{ID: g.id("k"), Account: account, CreatedAt: g.now}}
	k.Secret = "dms_secret_" + k.ID
	g.keys[k.Secret] = k.Key
	g.accounts[account].account.Keys++
	return k
}

func (g *fakeGateway) ListAccounts(context.Context) ([]gateway.Account, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var list []gateway.Account
	for _, name := range slices.Sorted(maps.Keys(g.accounts)) {
		list = append(list, g.accounts[name].account)
	}
	return list, nil
}

func (g *fakeGateway) GetAccount(_ context.Context, name string) (gateway.Account, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a := g.accounts[name]; a != nil {
		return a.account, nil
	}
	return gateway.Account{}, notFound("account", name)
}

func (g *fakeGateway) AddKey(_ context.Context, account string) (gateway.NewKey, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.accounts[account] == nil {
		return gateway.NewKey{}, notFound("account", account)
	}
	return g.newKey(account), nil
}

func (g *fakeGateway) ListKeys(_ context.Context, account string) ([]gateway.Key, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var list []gateway.Key
	for _, k := range g.keys {
		if k.Account == account {
			list = append(list, k)
		}
	}
	slices.SortFunc(list, func(a, b gateway.Key) int { return strings.Compare(a.ID, b.ID) })
	return list, nil
}

func (g *fakeGateway) RevokeKey(_ context.Context, account, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for secret, k := range g.keys {
		if k.Account == account && k.ID == id && k.RevokedAt == nil {
			k.RevokedAt = &g.now
			g.keys[secret] = k
			g.accounts[account].account.Keys--
			return nil
		}
	}
	return notFound("key", id)
}

func (g *fakeGateway) As(_ context.Context, account string) (gateway.Service, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a := g.accounts[account]; a != nil {
		return a, nil
	}
	return nil, notFound("account", account)
}

func (g *fakeGateway) Authenticate(_ context.Context, secret string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, ok := g.keys[secret]
	if !ok || k.RevokedAt != nil {
		return "", api.ErrUnauthorized
	}
	return k.Account, nil
}

func (g *fakeGateway) CallEndpoint(context.Context, string, gateway.Call, string) (gateway.Response, error) {
	return gateway.Response{}, fmt.Errorf("%w: the fake serves no endpoint", api.ErrNotFound)
}

func (a *fakeAccount) PutModule(_ context.Context, r io.Reader) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	c := types.CIDOf(data).String()
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	a.gw.modules[c] = true
	return c, nil
}

func (a *fakeAccount) Deploy(_ context.Context, d gateway.Deploy) (gateway.Revision, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	if err := a.gw.checkDeploy(d); err != nil {
		return gateway.Revision{}, err
	}
	f := a.functions[d.Name]
	if f == nil {
		f = &gateway.Function{Name: d.Name, Account: a.account.Name, CreatedAt: a.gw.now}
		a.functions[d.Name] = f
	}
	f.LatestRevision++
	if !d.NoDefault || f.DefaultRevision == 0 {
		f.DefaultRevision = f.LatestRevision
	}
	if d.Tags != nil {
		f.Tags = d.Tags
	}
	rev := gateway.Revision{Function: d.Name, Number: f.LatestRevision, Executor: d.Executor, Module: d.Module, Image: d.Image,
		Args: d.Args, Env: d.Env, Resources: d.Resources, Timeout: d.Timeout, MaxBody: d.MaxBody, CreatedAt: a.gw.now}
	a.revisions[d.Name] = append(a.revisions[d.Name], rev)
	return rev, nil
}

// checkDeploy names each bad field, as the gateway does; the caller holds
// g.mu.
func (g *fakeGateway) checkDeploy(d gateway.Deploy) error {
	var problems []jobs.FieldError
	if !g.modules[d.Module] {
		problems = append(problems, jobs.FieldError{Field: "module", Problem: fmt.Sprintf("no module %q in the gateway", d.Module)})
	}
	if d.Executor != "wasm" && d.Executor != "docker" {
		problems = append(problems, jobs.FieldError{Field: "executor", Problem: fmt.Sprintf("%q: want wasm or docker", d.Executor)})
	}
	if len(problems) > 0 {
		return &jobs.SpecError{Problems: problems}
	}
	return nil
}

func (a *fakeAccount) ListFunctions(_ context.Context, q gateway.Query) ([]gateway.Function, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	var list []gateway.Function
	for _, name := range slices.Sorted(maps.Keys(a.functions)) {
		if f := a.functions[name]; matches(q, f.Name, f.Tags) {
			list = append(list, *f)
		}
	}
	return list, nil
}

// matches is the part of a Query the fake knows: tags and search.
func matches(q gateway.Query, name string, tags map[string]string) bool {
	for k, v := range q.Tags {
		if tags[k] != v {
			return false
		}
	}
	return strings.Contains(name, q.Search)
}

func (a *fakeAccount) function(name string) (*gateway.Function, error) {
	if f := a.functions[name]; f != nil {
		return f, nil
	}
	return nil, notFound("function", name)
}

func (a *fakeAccount) GetFunction(_ context.Context, name string) (gateway.Function, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	f, err := a.function(name)
	if err != nil {
		return gateway.Function{}, err
	}
	return *f, nil
}

func (a *fakeAccount) Revisions(_ context.Context, name string) ([]gateway.Revision, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	if _, err := a.function(name); err != nil {
		return nil, err
	}
	return a.revisions[name], nil
}

func (a *fakeAccount) SetDefault(_ context.Context, name string, rev int) (gateway.Function, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	f, err := a.function(name)
	if err != nil {
		return gateway.Function{}, err
	}
	if rev > f.LatestRevision {
		return gateway.Function{}, notFound("revision", strconv.Itoa(rev))
	}
	f.DefaultRevision = rev
	return *f, nil
}

func (a *fakeAccount) SetTags(_ context.Context, name string, tags map[string]string) (gateway.Function, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	f, err := a.function(name)
	if err != nil {
		return gateway.Function{}, err
	}
	f.Tags = tags
	return *f, nil
}

func (a *fakeAccount) DeleteFunction(_ context.Context, name string) error {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	if _, err := a.function(name); err != nil {
		return err
	}
	delete(a.functions, name)
	return nil
}

func (a *fakeAccount) Invoke(_ context.Context, name string, call gateway.Call) (gateway.Response, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	task, err := a.run(name, call)
	if err != nil {
		return gateway.Response{}, err
	}
	return a.results[task.ID], nil
}

func (a *fakeAccount) InvokeAsync(_ context.Context, name string, call gateway.Call) (gateway.Task, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	task, err := a.run(name, call)
	task.Async = true
	a.tasks[task.ID] = task
	return task, err
}

// run answers a call and records its task; the caller holds a.gw.mu.
func (a *fakeAccount) run(name string, call gateway.Call) (gateway.Task, error) {
	f, err := a.function(name)
	if err != nil {
		return gateway.Task{}, err
	}
	a.gw.calls = append(a.gw.calls, call)
	body := []byte(call.Method + " " + call.Path + "?" + call.RawQuery + "\n")
	if call.Body != nil {
		data, _ := io.ReadAll(call.Body)
		body = append(body, data...)
	}
	status := http.StatusOK
	if q, _ := url.ParseQuery(call.RawQuery); q.Get("status") != "" {
		status, _ = strconv.Atoi(q.Get("status"))
	}
	rev := cmp.Or(call.Revision, f.DefaultRevision)
	task := gateway.Task{ID: a.gw.id("t"), Account: a.account.Name, Function: name, Revision: rev,
		State: gateway.TaskCompleted, Status: status, CreatedAt: a.gw.now}
	header := http.Header{"Content-Type": {"text/plain"}, "X-Revision": {strconv.Itoa(rev)}, gateway.HeaderTask: {task.ID}}
	a.tasks[task.ID] = task
	a.results[task.ID] = gateway.Response{Status: status, Header: header, Body: body, Task: task.ID}
	f.Calls++
	return task, nil
}

func (a *fakeAccount) CreateEndpoint(_ context.Context, spec gateway.EndpointSpec) (gateway.Endpoint, error) {
	return a.putEndpoint(spec, true)
}

func (a *fakeAccount) UpdateEndpoint(_ context.Context, spec gateway.EndpointSpec) (gateway.Endpoint, error) {
	return a.putEndpoint(spec, false)
}

// putEndpoint checks and stores an endpoint: create it, or update one.
func (a *fakeAccount) putEndpoint(spec gateway.EndpointSpec, create bool) (gateway.Endpoint, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	old, exists := a.endpoints[spec.Name]
	switch {
	case create && exists:
		return gateway.Endpoint{}, fmt.Errorf("%w: endpoint %q exists", api.ErrConflict, spec.Name)
	case !create && !exists:
		return gateway.Endpoint{}, notFound("endpoint", spec.Name)
	}
	if err := a.checkEndpoint(spec); err != nil {
		return gateway.Endpoint{}, err
	}
	e := gateway.Endpoint{EndpointSpec: spec, Account: a.account.Name, Path: "/e/" + spec.Name + "/",
		CreatedAt: a.gw.now, UpdatedAt: a.gw.now, Today: old.Today, ResetsAt: a.gw.now.Truncate(24 * time.Hour).Add(24 * time.Hour)}
	if exists {
		e.CreatedAt = old.CreatedAt
	}
	if spec.DailyQuota > 0 {
		left := spec.DailyQuota - e.Today
		e.Remaining = &left
	}
	a.endpoints[spec.Name] = e
	return e, nil
}

// checkEndpoint names each bad field with the policy's parsers, as the
// gateway does; the caller holds a.gw.mu.
func (a *fakeAccount) checkEndpoint(spec gateway.EndpointSpec) error {
	var problems []jobs.FieldError
	if a.functions[spec.Function] == nil {
		problems = append(problems, jobs.FieldError{Field: "function", Problem: fmt.Sprintf("no function %q in this account", spec.Function)})
	}
	for i, w := range spec.Windows {
		if _, err := policy.ParseWindow(w); err != nil {
			problems = append(problems, jobs.FieldError{Field: fmt.Sprintf("windows[%d]", i), Problem: err.Error()})
		}
	}
	if len(problems) > 0 {
		return &jobs.SpecError{Problems: problems}
	}
	return nil
}

func (a *fakeAccount) ListEndpoints(_ context.Context, q gateway.Query) ([]gateway.Endpoint, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	var list []gateway.Endpoint
	for _, name := range slices.Sorted(maps.Keys(a.endpoints)) {
		if e := a.endpoints[name]; matches(q, e.Name, e.Tags) {
			list = append(list, e)
		}
	}
	return list, nil
}

func (a *fakeAccount) GetEndpoint(_ context.Context, name string) (gateway.Endpoint, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	if e, ok := a.endpoints[name]; ok {
		return e, nil
	}
	return gateway.Endpoint{}, notFound("endpoint", name)
}

func (a *fakeAccount) DeleteEndpoint(_ context.Context, name string) error {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	if _, ok := a.endpoints[name]; !ok {
		return notFound("endpoint", name)
	}
	delete(a.endpoints, name)
	return nil
}

func (a *fakeAccount) ListTasks(_ context.Context, q gateway.TaskQuery) ([]gateway.Task, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	var list []gateway.Task
	for _, id := range slices.Sorted(maps.Keys(a.tasks)) {
		t := a.tasks[id]
		if (q.Function == "" || t.Function == q.Function) && (q.State == "" || t.State == q.State) {
			list = append(list, t)
		}
	}
	if q.Limit > 0 && len(list) > q.Limit {
		list = list[:q.Limit]
	}
	return list, nil
}

func (a *fakeAccount) GetTask(_ context.Context, id string) (gateway.Task, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	if t, ok := a.tasks[id]; ok {
		return t, nil
	}
	return gateway.Task{}, notFound("task", id)
}

// addTask records a task that has not ended.
func (a *fakeAccount) addTask(t gateway.Task) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	a.tasks[t.ID] = t
}

func (a *fakeAccount) StopTask(_ context.Context, id string) (gateway.Task, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	t, ok := a.tasks[id]
	switch {
	case !ok:
		return gateway.Task{}, notFound("task", id)
	case t.State != gateway.TaskScheduled && t.State != gateway.TaskRunning:
		return gateway.Task{}, fmt.Errorf("%w: task %s is %s", api.ErrConflict, id, t.State)
	}
	t.State, t.Reason = gateway.TaskStopped, "stopped by its account"
	a.tasks[id] = t
	return t, nil
}

func (a *fakeAccount) TaskResult(_ context.Context, id string) (gateway.Response, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	if r, ok := a.results[id]; ok {
		return r, nil
	}
	if _, ok := a.tasks[id]; ok {
		return gateway.Response{}, fmt.Errorf("%w: task %s has no result", api.ErrConflict, id)
	}
	return gateway.Response{}, notFound("task", id)
}

func (a *fakeAccount) ListTags(context.Context) ([]gateway.Tag, error) {
	a.gw.mu.Lock()
	defer a.gw.mu.Unlock()
	count := map[[2]string]*gateway.Tag{}
	tag := func(k, v string) *gateway.Tag {
		if count[[2]string{k, v}] == nil {
			count[[2]string{k, v}] = &gateway.Tag{Key: k, Value: v}
		}
		return count[[2]string{k, v}]
	}
	for _, f := range a.functions {
		for k, v := range f.Tags {
			tag(k, v).Functions++
		}
	}
	for _, e := range a.endpoints {
		for k, v := range e.Tags {
			tag(k, v).Endpoints++
		}
	}
	var list []gateway.Tag
	for _, kv := range slices.SortedFunc(maps.Keys(count), func(a, b [2]string) int { return strings.Compare(a[0]+"="+a[1], b[0]+"="+b[1]) }) {
		list = append(list, *count[kv])
	}
	return list, nil
}

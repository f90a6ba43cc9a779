package gateway

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
)

// fakeBackend is a Backend in memory, for the handler's and the client's
// tests: accounts with keys, functions with revisions, endpoints and tasks
// per account. Calls answer what invoke (or endpoint) says.
type fakeBackend struct {
	mu       sync.Mutex
	accounts map[string]*fakeAccount
	keys     map[string]Key // by secret
	nextID   int

	// invoke answers a function's call (sync or, its Response dropped,
	// async); nil: 200 "ok".
	invoke func(account, name string, call Call, body []byte) (Response, error)
	// endpoint answers an endpoint's call; nil: not found.
	endpoint func(name string, call Call, body []byte, key string) (Response, error)

	// What the handler asked, for the tests to check.
	as        []string
	calls     []Call
	bodies    [][]byte
	keysSeen  []string
	names     []string
	query     Query
	taskQuery TaskQuery
}

type fakeAccount struct {
	Account
	functions map[string]*fakeFunction
	endpoints map[string]Endpoint
	tasks     map[string]Task
	results   map[string]Response
}

type fakeFunction struct {
	Function
	revisions []Revision
}

var _ Backend = (*fakeBackend)(nil)

func newFakeBackend() *fakeBackend {
	return &fakeBackend{accounts: map[string]*fakeAccount{}, keys: map[string]Key{}}
}

// addAccount makes an account and returns its key's secret.
func (b *fakeBackend) addAccount(name string) string {
	_, k, err := b.CreateAccount(context.Background(), name)
	if err != nil {
		panic(err)
	}
	return k.Secret
}

// addTask records a task, and its result when resp is not nil.
func (b *fakeBackend) addTask(account string, t Task, resp *Response) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t.Account = account
	b.accounts[account].tasks[t.ID] = t
	if resp != nil {
		b.accounts[account].results[t.ID] = *resp
	}
}

func (b *fakeBackend) id(prefix string) string {
	b.nextID++
	return fmt.Sprintf("%s%d", prefix, b.nextID)
}

func (b *fakeBackend) CreateAccount(_ context.Context, name string) (Account, NewKey, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if name == "" {
		return Account{}, NewKey{}, fmt.Errorf("%w: name is empty", api.ErrBadRequest)
	}
	if b.accounts[name] != nil {
		return Account{}, NewKey{}, fmt.Errorf("%w: account %q exists", api.ErrConflict, name)
	}
	b.accounts[name] = &fakeAccount{
		Account:   Account{Name: name, CreatedAt: time.Unix(1, 0).UTC()},
		functions: map[string]*fakeFunction{}, endpoints: map[string]Endpoint{},
		tasks: map[string]Task{}, results: map[string]Response{},
	}
	k := b.newKey(name)
	return b.accounts[name].Account, k, nil
}

func (b *fakeBackend) newKey(account string) NewKey {
	k := NewKey{Key: Key{ID: b.id("k"), Account: account}, Secret: b.id("secret-" + account + "-")}
	b.keys[k.Secret] = k.Key
	b.accounts[account].Keys++
	return k
}

func (b *fakeBackend) ListAccounts(context.Context) ([]Account, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var list []Account
	for _, name := range slices.Sorted(maps.Keys(b.accounts)) {
		list = append(list, b.accounts[name].Account)
	}
	return list, nil
}

func (b *fakeBackend) GetAccount(_ context.Context, name string) (Account, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a := b.accounts[name]; a != nil {
		return a.Account, nil
	}
	return Account{}, notFound("account", name)
}

func (b *fakeBackend) AddKey(_ context.Context, account string) (NewKey, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.accounts[account] == nil {
		return NewKey{}, notFound("account", account)
	}
	return b.newKey(account), nil
}

func (b *fakeBackend) ListKeys(_ context.Context, account string) ([]Key, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.accounts[account] == nil {
		return nil, notFound("account", account)
	}
	var list []Key
	for _, k := range b.keys {
		if k.Account == account {
			list = append(list, k)
		}
	}
	slices.SortFunc(list, func(x, y Key) int { return len(x.ID) - len(y.ID) })
	return list, nil
}

func (b *fakeBackend) RevokeKey(_ context.Context, account, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for secret, k := range b.keys {
		if k.Account != account || k.ID != id {
			continue
		}
		if k.RevokedAt != nil {
			return fmt.Errorf("%w: key %s is revoked already", api.ErrConflict, id)
		}
		now := time.Unix(2, 0).UTC()
		k.RevokedAt = &now
		b.keys[secret] = k
		b.accounts[account].Keys--
		return nil
	}
	return notFound("key", id)
}

func (b *fakeBackend) As(_ context.Context, account string) (Service, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.as = append(b.as, account)
	if b.accounts[account] == nil {
		return nil, notFound("account", account)
	}
	return &fakeService{b: b, account: account}, nil
}

func (b *fakeBackend) Authenticate(_ context.Context, key string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.keys[key]
	if !ok || k.RevokedAt != nil {
		return "", api.ErrUnauthorized
	}
	return k.Account, nil
}

func (b *fakeBackend) CallEndpoint(_ context.Context, name string, call Call, key string) (Response, error) {
	body, err := readFakeBody(call.Body)
	b.mu.Lock()
	b.calls = append(b.calls, call)
	b.bodies = append(b.bodies, body)
	b.keysSeen = append(b.keysSeen, key)
	b.names = append(b.names, name)
	answer := b.endpoint
	b.mu.Unlock()
	if err != nil {
		return Response{}, err
	}
	if answer == nil {
		return Response{}, notFound("endpoint", name)
	}
	return answer(name, call, body, key)
}

func readFakeBody(r io.Reader) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	return io.ReadAll(r)
}

// fakeService is one account's Service over a fakeBackend.
type fakeService struct {
	b       *fakeBackend
	account string
}

var _ Service = (*fakeService)(nil)

// lock locks the backend and returns the account.
func (s *fakeService) lock() *fakeAccount {
	s.b.mu.Lock()
	return s.b.accounts[s.account]
}

func (s *fakeService) unlock() { s.b.mu.Unlock() }

func (s *fakeService) PutModule(_ context.Context, r io.Reader) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("cid-%d", len(data)), nil
}

func (s *fakeService) Deploy(_ context.Context, d Deploy) (Revision, error) {
	a := s.lock()
	defer s.unlock()
	if d.Name == "" {
		return Revision{}, fmt.Errorf("%w: name is empty", api.ErrBadRequest)
	}
	fn := a.functions[d.Name]
	if fn == nil {
		fn = &fakeFunction{Function: Function{Name: d.Name, Account: s.account}}
		a.functions[d.Name] = fn
	}
	rev := Revision{Function: d.Name, Number: len(fn.revisions) + 1, Executor: d.Executor, Module: d.Module}
	fn.revisions = append(fn.revisions, rev)
	fn.LatestRevision = rev.Number
	if !d.NoDefault || fn.DefaultRevision == 0 {
		fn.DefaultRevision = rev.Number
	}
	if d.Tags != nil {
		fn.Tags = d.Tags
	}
	return rev, nil
}

func (s *fakeService) ListFunctions(_ context.Context, q Query) ([]Function, error) {
	a := s.lock()
	defer s.unlock()
	s.b.query = q
	var list []Function
	for _, name := range slices.Sorted(maps.Keys(a.functions)) {
		if fn := a.functions[name]; matches(fn.Tags, q.Tags) {
			list = append(list, fn.Function)
		}
	}
	return list, nil
}

func matches(tags, want map[string]string) bool {
	for k, v := range want {
		if tags[k] != v {
			return false
		}
	}
	return true
}

func (s *fakeService) function(a *fakeAccount, name string) (*fakeFunction, error) {
	s.b.names = append(s.b.names, name)
	if fn := a.functions[name]; fn != nil {
		return fn, nil
	}
	return nil, notFound("function", name)
}

func (s *fakeService) GetFunction(_ context.Context, name string) (Function, error) {
	a := s.lock()
	defer s.unlock()
	fn, err := s.function(a, name)
	if err != nil {
		return Function{}, err
	}
	return fn.Function, nil
}

func (s *fakeService) Revisions(_ context.Context, name string) ([]Revision, error) {
	a := s.lock()
	defer s.unlock()
	fn, err := s.function(a, name)
	if err != nil {
		return nil, err
	}
	return slices.Clone(fn.revisions), nil
}

func (s *fakeService) SetDefault(_ context.Context, name string, rev int) (Function, error) {
	a := s.lock()
	defer s.unlock()
	fn, err := s.function(a, name)
	if err != nil {
		return Function{}, err
	}
	if rev < 1 || rev > len(fn.revisions) {
		return Function{}, fmt.Errorf("%w: function %q has no revision %d", api.ErrNotFound, name, rev)
	}
	fn.DefaultRevision = rev
	return fn.Function, nil
}

func (s *fakeService) SetTags(_ context.Context, name string, tags map[string]string) (Function, error) {
	a := s.lock()
	defer s.unlock()
	fn, err := s.function(a, name)
	if err != nil {
		return Function{}, err
	}
	fn.Tags = tags
	return fn.Function, nil
}

func (s *fakeService) DeleteFunction(_ context.Context, name string) error {
	a := s.lock()
	defer s.unlock()
	if _, err := s.function(a, name); err != nil {
		return err
	}
	delete(a.functions, name)
	return nil
}

// call records a call and runs the backend's invoke.
func (s *fakeService) call(name string, call Call) (Response, error) {
	body, err := readFakeBody(call.Body)
	if err != nil {
		return Response{}, err
	}
	a := s.lock()
	_, err = s.function(a, name)
	s.b.calls = append(s.b.calls, call)
	s.b.bodies = append(s.b.bodies, body)
	answer := s.b.invoke
	s.unlock()
	if err != nil {
		return Response{}, err
	}
	if answer == nil {
		return Response{Status: http.StatusOK, Body: []byte("ok"), Task: "t-sync"}, nil
	}
	return answer(s.account, name, call, body)
}

func (s *fakeService) Invoke(_ context.Context, name string, call Call) (Response, error) {
	return s.call(name, call)
}

func (s *fakeService) InvokeAsync(_ context.Context, name string, call Call) (Task, error) {
	if _, err := s.call(name, call); err != nil {
		return Task{}, err
	}
	a := s.lock()
	defer s.unlock()
	t := Task{ID: s.b.id("t"), Account: s.account, Function: name, Revision: call.Revision, Async: true, State: TaskScheduled}
	a.tasks[t.ID] = t
	return t, nil
}

func (s *fakeService) CreateEndpoint(_ context.Context, spec EndpointSpec) (Endpoint, error) {
	a := s.lock()
	defer s.unlock()
	if _, ok := a.endpoints[spec.Name]; ok {
		return Endpoint{}, fmt.Errorf("%w: endpoint %q exists", api.ErrConflict, spec.Name)
	}
	e := Endpoint{EndpointSpec: spec, Account: s.account, Path: "/e/" + spec.Name + "/"}
	a.endpoints[spec.Name] = e
	return e, nil
}

func (s *fakeService) ListEndpoints(_ context.Context, q Query) ([]Endpoint, error) {
	a := s.lock()
	defer s.unlock()
	s.b.query = q
	var list []Endpoint
	for _, name := range slices.Sorted(maps.Keys(a.endpoints)) {
		if e := a.endpoints[name]; matches(e.Tags, q.Tags) {
			list = append(list, e)
		}
	}
	return list, nil
}

func (s *fakeService) GetEndpoint(_ context.Context, name string) (Endpoint, error) {
	a := s.lock()
	defer s.unlock()
	s.b.names = append(s.b.names, name)
	if e, ok := a.endpoints[name]; ok {
		return e, nil
	}
	return Endpoint{}, notFound("endpoint", name)
}

func (s *fakeService) UpdateEndpoint(_ context.Context, spec EndpointSpec) (Endpoint, error) {
	a := s.lock()
	defer s.unlock()
	e, ok := a.endpoints[spec.Name]
	if !ok {
		return Endpoint{}, notFound("endpoint", spec.Name)
	}
	e.EndpointSpec = spec
	a.endpoints[spec.Name] = e
	return e, nil
}

func (s *fakeService) DeleteEndpoint(_ context.Context, name string) error {
	a := s.lock()
	defer s.unlock()
	s.b.names = append(s.b.names, name)
	if _, ok := a.endpoints[name]; !ok {
		return notFound("endpoint", name)
	}
	delete(a.endpoints, name)
	return nil
}

func (s *fakeService) ListTasks(_ context.Context, q TaskQuery) ([]Task, error) {
	a := s.lock()
	defer s.unlock()
	s.b.taskQuery = q
	var list []Task
	for _, id := range slices.Sorted(maps.Keys(a.tasks)) {
		if t := a.tasks[id]; (q.Function == "" || t.Function == q.Function) && (q.State == "" || t.State == q.State) {
			list = append(list, t)
		}
	}
	return list, nil
}

func (s *fakeService) GetTask(_ context.Context, id string) (Task, error) {
	a := s.lock()
	defer s.unlock()
	if t, ok := a.tasks[id]; ok {
		return t, nil
	}
	return Task{}, notFound("task", id)
}

func (s *fakeService) StopTask(_ context.Context, id string) (Task, error) {
	a := s.lock()
	defer s.unlock()
	t, ok := a.tasks[id]
	switch {
	case !ok:
		return Task{}, notFound("task", id)
	case t.State == TaskCompleted || t.State == TaskFailed || t.State == TaskStopped:
		return Task{}, fmt.Errorf("%w: task %s has ended (%s)", api.ErrConflict, id, t.State)
	}
	t.State = TaskStopped
	a.tasks[id] = t
	return t, nil
}

func (s *fakeService) TaskResult(_ context.Context, id string) (Response, error) {
	a := s.lock()
	defer s.unlock()
	t, ok := a.tasks[id]
	if !ok {
		return Response{}, notFound("task", id)
	}
	resp, ok := a.results[id]
	if !ok {
		return Response{}, fmt.Errorf("%w: task %s is %s", api.ErrConflict, id, t.State)
	}
	return resp, nil
}

func (s *fakeService) ListTags(context.Context) ([]Tag, error) {
	a := s.lock()
	defer s.unlock()
	count := map[[2]string]*Tag{}
	add := func(tags map[string]string, fn bool) {
		for k, v := range tags {
			t := count[[2]string{k, v}]
			if t == nil {
				t = &Tag{Key: k, Value: v}
				count[[2]string{k, v}] = t
			}
			if fn {
				t.Functions++
			} else {
				t.Endpoints++
			}
		}
	}
	for _, fn := range a.functions {
		add(fn.Tags, true)
	}
	for _, e := range a.endpoints {
		add(e.Tags, false)
	}
	var list []Tag
	for _, kv := range slices.SortedFunc(maps.Keys(count), func(x, y [2]string) int {
		if x[0] != y[0] {
			return cmp.Compare(x[0], y[0])
		}
		return cmp.Compare(x[1], y[1])
	}) {
		list = append(list, *count[kv])
	}
	return list, nil
}

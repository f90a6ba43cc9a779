package gateway

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/dms/internal/testclock"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// fakeRunner is a Runner and a Caller whose warm instances and calls go
// as a test says. Each submitted job (a warm instance) plays the steps
// play returns for its spec: by default it runs at once, on a node of the
// fake's; a job left running serves calls until the test ends it
// (finish) or the gateway cancels it. Each call on a running instance is
// answered by calls (by default: completed, stdout "ok").
type fakeRunner struct {
	play  func(spec *jobs.Spec) []api.Job
	calls func(ctx context.Context, c fakeCall) (*types.CallReply, error)

	mu        sync.Mutex
	blobs     map[string][]byte
	jobs      map[string]*fakeJob
	allocs    map[types.AllocationID]string // allocation -> job
	specs     []*jobs.Spec
	made      []fakeCall // every call, in order
	cancelled []string
	submitted chan string // every job ID, as it is submitted
}

type fakeJob struct {
	spec    *jobs.Spec
	history []api.Job
	changed chan struct{} // closed, and replaced, at each change
}

// fakeCall is one call the gateway sent to an instance.
type fakeCall struct {
	Peer string
	Job  string
	Spec *jobs.Spec // the instance's
	Req  types.CallRequest
}

func newFakeRunner() *fakeRunner {
	f := &fakeRunner{
		blobs: map[string][]byte{}, jobs: map[string]*fakeJob{}, allocs: map[types.AllocationID]string{},
		submitted: make(chan string, 2*MaxAccountInFlight),
	}
	f.play = func(*jobs.Spec) []api.Job { return held() }
	f.calls = func(context.Context, fakeCall) (*types.CallReply, error) { return answer("ok"), nil }
	return f
}

var (
	_ Runner = (*fakeRunner)(nil)
	_ Caller = (*fakeRunner)(nil)
)

// fakeNode is the peer every fake instance runs on.
const fakeNode = "12D3KooWnode"

// Steps of an instance's job.
func running() api.Job { return api.Job{State: types.JobRunning, Node: fakeNode} }

func failed(reason string) []api.Job { return []api.Job{{State: types.JobFailed, Reason: reason}} }

func held() []api.Job { return []api.Job{running()} }

// Answers of a call.
func answer(stdout string) *types.CallReply {
	return &types.CallReply{Status: types.CallOK, Stdout: []byte(stdout)}
}

func exited(code int, stderr string) *types.CallReply {
	return &types.CallReply{Status: types.CallOK, ExitCode: code, Stderr: []byte(stderr)}
}

func (f *fakeRunner) put(data []byte) string {
	c := types.CIDOf(data).String()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[c] = data
	return c
}

// setPlay says how the instances submitted from now go.
func (f *fakeRunner) setPlay(play func(spec *jobs.Spec) []api.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.play = play
}

// setCalls says how the calls sent from now are answered.
func (f *fakeRunner) setCalls(calls func(ctx context.Context, c fakeCall) (*types.CallReply, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = calls
}

func (f *fakeRunner) SubmitJob(ctx context.Context, spec *jobs.Spec) (api.Job, error) {
	if spec.Warm == nil {
		return api.Job{}, fmt.Errorf("%w: the gateway submitted a job that is not a warm instance", api.ErrBadRequest)
	}
	f.mu.Lock()
	play := f.play
	f.mu.Unlock()
	steps := play(spec)
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("job-%d", len(f.specs)+1)
	f.specs = append(f.specs, spec)
	f.add(id, spec, steps...)
	f.submitted <- id
	return api.Job{ID: id, Name: spec.Name, State: types.JobPending}, nil
}

// add records a job and its steps. Callers hold f.mu.
func (f *fakeRunner) add(id string, spec *jobs.Spec, steps ...api.Job) {
	j := &fakeJob{spec: spec, history: []api.Job{{ID: id, Name: spec.Name, State: types.JobPending}}, changed: make(chan struct{})}
	f.jobs[id] = j
	f.step(id, steps...)
}

// step appends steps to a job's history; a running step gets the job's
// allocation. Callers hold f.mu.
func (f *fakeRunner) step(id string, steps ...api.Job) {
	j := f.jobs[id]
	for _, s := range steps {
		s.ID, s.Name = id, j.history[0].Name
		if s.State == types.JobRunning && len(s.Attempts) == 0 {
			alloc := "alloc-" + id
			s.Attempts = []api.Attempt{{AllocationID: alloc, Node: s.Node, State: "active"}}
			f.allocs[types.AllocationID(alloc)] = id
		}
		j.history = append(j.history, s)
	}
	close(j.changed)
	j.changed = make(chan struct{})
}

// Call implements Caller: a call on an instance whose job runs is
// answered by f.calls; any other gets CallUnknown, as from a node.
func (f *fakeRunner) Call(ctx context.Context, peer string, req *types.CallRequest) (*types.CallReply, error) {
	f.mu.Lock()
	id := f.allocs[req.Allocation]
	j := f.jobs[id]
	if j == nil || j.history[len(j.history)-1].State != types.JobRunning || peer != fakeNode {
		f.mu.Unlock()
		return &types.CallReply{Seq: req.Seq, Status: types.CallUnknown}, nil
	}
	c := fakeCall{Peer: peer, Job: id, Spec: j.spec, Req: *req}
	f.made = append(f.made, c)
	calls := f.calls
	f.mu.Unlock()
	return calls(ctx, c)
}

// callsMade returns the calls sent so far.
func (f *fakeRunner) callsMade() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.made)
}

// finish plays the steps of a job left running.
func (f *fakeRunner) finish(id string, steps ...api.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step(id, steps...)
}

// spec returns the spec of the n-th job submitted (from 1).
func (f *fakeRunner) spec(n int) *jobs.Spec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.specs[n-1]
}

func (f *fakeRunner) submissions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.specs)
}

func (f *fakeRunner) wasCancelled(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.cancelled, id)
}

// next waits for the next job submitted.
func (f *fakeRunner) next(t *testing.T) string {
	t.Helper()
	select {
	case id := <-f.submitted:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no job submitted within 10s")
		return ""
	}
}

func (f *fakeRunner) WatchJob(ctx context.Context, id string) (<-chan api.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jobs[id] == nil {
		return nil, fmt.Errorf("%w: job %q", api.ErrNotFound, id)
	}
	out := make(chan api.Job)
	go f.watch(ctx, id, out)
	return out, nil
}

func (f *fakeRunner) watch(ctx context.Context, id string, out chan<- api.Job) {
	defer close(out)
	for sent := 0; ; {
		f.mu.Lock()
		j := f.jobs[id]
		news, changed := slices.Clone(j.history[sent:]), j.changed
		f.mu.Unlock()
		for _, s := range news {
			select {
			case out <- s:
			case <-ctx.Done():
				return
			}
			if s.State.Terminal() {
				return
			}
		}
		sent += len(news)
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

func (f *fakeRunner) GetJob(ctx context.Context, id string) (api.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	if j == nil {
		return api.Job{}, fmt.Errorf("%w: job %q", api.ErrNotFound, id)
	}
	return j.history[len(j.history)-1], nil
}

func (f *fakeRunner) CancelJob(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	switch {
	case j == nil:
		return fmt.Errorf("%w: job %q", api.ErrNotFound, id)
	case j.history[len(j.history)-1].State.Terminal():
		return fmt.Errorf("%w: job %q ended", api.ErrConflict, id)
	}
	f.cancelled = append(f.cancelled, id)
	f.step(id, api.Job{State: types.JobCancelled, Reason: "cancelled by its submitter"})
	return nil
}

func (f *fakeRunner) PutBlob(ctx context.Context, r io.Reader) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	return f.put(data), nil
}

func (f *fakeRunner) GetBlob(ctx context.Context, c string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.blobs[c]
	if !ok {
		return nil, fmt.Errorf("%w: blob %s", api.ErrNotFound, c)
	}
	return data, nil
}

func (f *fakeRunner) HasBlob(ctx context.Context, c string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.blobs[c]
	return ok, nil
}

// clock is a settable clock.
type clock = testclock.Clock

// rig is a gateway over a database in memory and a fake runner, started,
// with account "alice" and its key.
type rig struct {
	g     *Gateway
	f     *fakeRunner
	clock *clock
	db    *store.DB
	alice Service
	key   string
}

// start is a Monday, 10:00 UTC.
var start = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func newRig(t *testing.T) *rig {
	t.Helper()
	db, err := store.OpenInMemory(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newRigOn(t, db, newFakeRunner(), testclock.New(start))
}

// newRigOn starts a gateway over db and f; alice is made if she is new.
func newRigOn(t *testing.T, db *store.DB, f *fakeRunner, c *clock) *rig {
	t.Helper()
	g, err := New(Config{DB: db, Runner: f, Caller: f, Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	r := &rig{g: g, f: f, clock: c, db: db}
	if _, err := g.GetAccount(t.Context(), "alice"); err != nil {
		_, k, err := g.CreateAccount(t.Context(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		r.key = k.Secret
	}
	r.alice = r.as(t, "alice")
	return r
}

func (r *rig) as(t *testing.T, account string) Service {
	t.Helper()
	s, err := r.g.As(t.Context(), account)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// account makes an account and returns its service and key.
func (r *rig) account(t *testing.T, name string) (Service, string) {
	t.Helper()
	_, k, err := r.g.CreateAccount(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return r.as(t, name), k.Secret
}

// deploy deploys a function of svc from a module the runner holds.
func (r *rig) deploy(t *testing.T, svc Service, d Deploy) Revision {
	t.Helper()
	if d.Module == "" {
		d.Module = r.f.put([]byte("\x00asm module of " + d.Name))
	}
	rev, err := svc.Deploy(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// eventually waits for cond, checking it every few milliseconds, for at
// most 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		<-tick.C
	}
}

// taskIn waits for a task of svc to reach state.
func taskIn(t *testing.T, svc Service, id string, state TaskState) Task {
	t.Helper()
	var task Task
	eventually(t, "task "+id+" "+string(state), func() bool {
		var err error
		task, err = svc.GetTask(t.Context(), id)
		return err == nil && task.State == state
	})
	return task
}

// answering answers every call from now with the stdout made from it.
func (f *fakeRunner) answering(stdout func(c fakeCall) string) {
	f.setCalls(func(_ context.Context, c fakeCall) (*types.CallReply, error) { return answer(stdout(c)), nil })
}

// replying answers every call from now with r.
func (f *fakeRunner) replying(r *types.CallReply) {
	f.setCalls(func(context.Context, fakeCall) (*types.CallReply, error) { return r, nil })
}

// hold makes the calls from now wait until release is called (or their
// ctx ends), then answer "ok".
func (f *fakeRunner) hold() (release func()) {
	gate := make(chan struct{})
	f.setCalls(func(ctx context.Context, c fakeCall) (*types.CallReply, error) {
		select {
		case <-gate:
			return answer("ok"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }
}

// lastCall is the last call sent; the test fails if there is none.
func (f *fakeRunner) lastCall(t *testing.T) fakeCall {
	t.Helper()
	made := f.callsMade()
	if len(made) == 0 {
		t.Fatal("no call was sent")
	}
	return made[len(made)-1]
}

// live counts the instance jobs whose last step is running.
func (f *fakeRunner) live() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, j := range f.jobs {
		if j.history[len(j.history)-1].State == types.JobRunning {
			n++
		}
	}
	return n
}

// cancels counts the jobs the gateway cancelled.
func (f *fakeRunner) cancels() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.cancelled)
}

// state is the last state of a job.
func (f *fakeRunner) state(id string) types.JobState {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	return j.history[len(j.history)-1].State
}

// callsIn waits for n calls to have been sent.
func callsIn(t *testing.T, f *fakeRunner, n int) []fakeCall {
	t.Helper()
	eventually(t, fmt.Sprintf("%d calls sent", n), func() bool { return len(f.callsMade()) >= n })
	return f.callsMade()
}

// wantEnv checks the CGI environment a call got: the variables of want
// with their values, none of absent.
func wantEnv(t *testing.T, c fakeCall, want map[string]string, absent ...string) {
	t.Helper()
	for k, v := range want {
		if got, ok := c.Req.Env[k]; !ok || got != v {
			t.Errorf("call on %s: %s=%q, want %q", c.Spec.Name, k, got, v)
		}
	}
	for _, k := range absent {
		if v, ok := c.Req.Env[k]; ok {
			t.Errorf("call on %s: %s=%q, want none", c.Spec.Name, k, v)
		}
	}
}

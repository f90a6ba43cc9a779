package gateway

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/dms/internal/testclock"
	"github.com/opendms/dms/types"
)

func TestNewChecksItsConfig(t *testing.T) {
	_, err := New(Config{TaskRetention: -1})
	for _, want := range []string{"DB", "Runner", "Caller", "TaskRetention"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New: %v, want it to name %s", err, want)
		}
	}
}

func TestStartTwice(t *testing.T) {
	r := newRig(t)
	if err := r.g.Start(t.Context()); err == nil {
		t.Error("a second Start did not fail")
	}
	r.g.Close()
	if err := r.g.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	if _, err := r.alice.Invoke(t.Context(), "nope", Call{}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("a bad call after Close: %v", err)
	}
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	if _, err := r.alice.Invoke(t.Context(), "echo", Call{}); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("a call after Close: %v", err)
	}
}

// openDisk opens a database in dir, closed at the test's end.
func openDisk(t *testing.T, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(store.Options{Dir: dir + "/db", BlobDir: dir + "/blobs"})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestEverythingSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	db := openDisk(t, dir)
	f, c := newFakeRunner(), testclock.New(start)
	r := newRigOn(t, db, f, c)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "echo", Tags: map[string]string{"team": "web"}})
	r.deploy(t, r.alice, Deploy{Name: "echo", NoDefault: true})
	if _, err := r.alice.CreateEndpoint(ctx, EndpointSpec{Name: "pub", Function: "echo", DailyQuota: 3}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.g.CallEndpoint(ctx, "pub", Call{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	async, err := r.alice.InvokeAsync(ctx, "echo", Call{})
	if err != nil {
		t.Fatal(err)
	}
	taskIn(t, r.alice, async.ID, TaskCompleted)
	r.g.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDisk(t, dir)
	t.Cleanup(func() { db.Close() })
	again := newRigOn(t, db, f, c)
	if acct, err := again.g.Authenticate(ctx, r.key); err != nil || acct != "alice" {
		t.Fatalf("alice's key after a restart: %q %v", acct, err)
	}
	fn, err := again.alice.GetFunction(ctx, "echo")
	if err != nil || fn.LatestRevision != 2 || fn.DefaultRevision != 1 || fn.Calls != 3 || fn.Tags["team"] != "web" {
		t.Fatalf("function after a restart: %+v %v", fn, err)
	}
	ep, err := again.alice.GetEndpoint(ctx, "pub")
	if err != nil || ep.Today != 2 || *ep.Remaining != 1 {
		t.Fatalf("endpoint after a restart: %+v %v", ep, err)
	}
	if _, err := again.g.CallEndpoint(ctx, "pub", Call{}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := again.g.CallEndpoint(ctx, "pub", Call{}, ""); !errors.Is(err, api.ErrTooManyRequests) {
		t.Errorf("the 4th call of a quota of 3 across a restart: %v", err)
	}
	tasks, err := again.alice.ListTasks(ctx, TaskQuery{State: TaskCompleted})
	if err != nil || len(tasks) != 4 {
		t.Fatalf("tasks after a restart: %d %v", len(tasks), err)
	}
	if res, err := again.alice.TaskResult(ctx, async.ID); err != nil || string(res.Body) != "ok" {
		t.Errorf("the async task's result after a restart: %+v %v", res, err)
	}
}

// saveTask writes a task as a run left it.
func saveTask(t *testing.T, db *store.DB, task Task) {
	t.Helper()
	if err := db.Put(taskKey(task.Account, task.ID), task); err != nil {
		t.Fatal(err)
	}
}

// TestStartResumesTasks: an async task with its input kept runs again
// after a restart (at least once); a sync one, whose caller is gone,
// fails, as does one whose input or function is gone.
func TestStartResumesTasks(t *testing.T) {
	dir := t.TempDir()
	db := openDisk(t, dir)
	t.Cleanup(func() { db.Close() })
	f, c := newFakeRunner(), testclock.New(start)
	first := newRigOn(t, db, f, c)
	first.deploy(t, first.alice, Deploy{Name: "echo"})
	first.g.Close()

	tasks := map[string]Task{}
	for _, kind := range []string{"async", "sync", "no input", "no function"} {
		c.Add(time.Second)
		task := Task{ID: newTaskID(c.Now()), Account: "alice", Function: "echo", Revision: 1, State: TaskScheduled, CreatedAt: c.Now(), Async: kind != "sync"}
		if kind == "no function" {
			task.Function = "gone"
		}
		saveTask(t, db, task)
		if kind == "async" || kind == "no function" {
			if err := db.Put(inputKey(task.Account, task.ID), callInput{Env: map[string]string{"REQUEST_METHOD": "PUT"}, Stdin: []byte("again")}); err != nil {
				t.Fatal(err)
			}
		}
		tasks[kind] = task
	}

	f.answering(func(c fakeCall) string { return "ran " + string(c.Req.Stdin) })
	r := newRigOn(t, db, f, c)
	done := taskIn(t, r.alice, tasks["async"].ID, TaskCompleted)
	if res, err := r.alice.TaskResult(t.Context(), done.ID); err != nil || string(res.Body) != "ran again" {
		t.Errorf("result of a task resumed: %+v %v", res, err)
	}
	wantEnv(t, f.lastCall(t), map[string]string{"REQUEST_METHOD": "PUT"})
	if found, _ := db.Lookup(inputKey("alice", done.ID), new(callInput)); found {
		t.Error("the input of a task that ended is kept")
	}
	for kind, says := range map[string]string{"sync": "restarted during the call", "no input": "restarted during the call", "no function": "gone"} {
		if got := taskIn(t, r.alice, tasks[kind].ID, TaskFailed); !strings.Contains(got.Reason, says) {
			t.Errorf("%s: task %+v, want it failed: %s", kind, got, says)
		}
	}
	if n := len(f.callsMade()); n != 1 {
		t.Errorf("%d calls after the restart, want the async task's one", n)
	}
}

// TestCloseDetachesCalls: Close leaves an async call's task as it is and
// releases the instances; the next Start runs it again.
func TestCloseDetachesCalls(t *testing.T) {
	dir := t.TempDir()
	db := openDisk(t, dir)
	t.Cleanup(func() { db.Close() })
	f, c := newFakeRunner(), testclock.New(start)
	r := newRigOn(t, db, f, c)
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	f.hold()
	task, err := r.alice.InvokeAsync(t.Context(), "slow", Call{})
	if err != nil {
		t.Fatal(err)
	}
	callsIn(t, f, 1)
	r.g.Close()
	if got, _ := r.alice.GetTask(t.Context(), task.ID); got.State.Terminal() {
		t.Fatalf("task after Close: %+v, want it left as it was", got)
	}
	if !f.wasCancelled("job-1") {
		t.Error("Close did not release the instance")
	}

	f.replying(answer("late"))
	again := newRigOn(t, db, f, c)
	taskIn(t, again.alice, task.ID, TaskCompleted)
	if res, err := again.alice.TaskResult(t.Context(), task.ID); err != nil || string(res.Body) != "late" {
		t.Errorf("the resumed task's result: %+v %v", res, err)
	}
	if last := f.lastCall(t); last.Job != "job-2" {
		t.Errorf("the resumed call went to %s, want a new instance", last.Job)
	}
}

func TestRetention(t *testing.T) {
	r := newRig(t)
	ended := func(at time.Time) *time.Time { return &at }
	old := Task{ID: newTaskID(start), Account: "alice", State: TaskCompleted, EndedAt: ended(start.Add(-DefaultTaskRetention - time.Second))}
	recent := Task{ID: newTaskID(start), Account: "alice", State: TaskFailed, EndedAt: ended(start.Add(-time.Hour))}
	open := Task{ID: newTaskID(start), Account: "alice", State: TaskRunning, Job: "job-x", CreatedAt: start.Add(-30 * 24 * time.Hour)}
	for _, task := range []Task{old, recent, open} {
		saveTask(t, r.db, task)
	}
	if n, err := r.g.expire(start); err != nil || n != 1 {
		t.Fatalf("expire: %d %v, want 1", n, err)
	}
	if _, err := r.alice.GetTask(t.Context(), old.ID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("an old task: %v", err)
	}
	for _, task := range []Task{recent, open} {
		if _, err := r.alice.GetTask(t.Context(), task.ID); err != nil {
			t.Errorf("task %s: %v", task.State, err)
		}
	}
}

func TestBlobs(t *testing.T) {
	r := newRig(t)
	rev := r.deploy(t, r.alice, Deploy{Name: "echo"})
	res, err := r.alice.Invoke(t.Context(), "echo", Call{})
	if err != nil {
		t.Fatal(err)
	}
	// A sync call's output went to its caller: not kept.
	if task, _ := r.alice.GetTask(t.Context(), res.Task); task.Response != "" {
		t.Errorf("task response %s, want none", task.Response)
	}
	if blobs, err := r.g.Blobs(); err != nil || !slices.Equal(blobs, []string{rev.Module}) {
		t.Fatalf("Blobs %q %v, want only the module %s", blobs, err, rev.Module)
	}
	r.f.replying(answer("later"))
	async, err := r.alice.InvokeAsync(t.Context(), "echo", Call{})
	if err != nil {
		t.Fatal(err)
	}
	async = taskIn(t, r.alice, async.ID, TaskCompleted)
	if async.Response != types.CIDOf([]byte("later")).String() {
		t.Errorf("async task response %s", async.Response)
	}
	want := []string{rev.Module, async.Response}
	slices.Sort(want)
	if blobs, err := r.g.Blobs(); err != nil || !slices.Equal(blobs, want) {
		t.Fatalf("Blobs %q %v, want the module and the async output %q", blobs, err, want)
	}
}

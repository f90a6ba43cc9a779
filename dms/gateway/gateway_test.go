package gateway

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func TestNewChecksItsConfig(t *testing.T) {
	_, err := New(Config{TaskRetention: -1})
	for _, want := range []string{"DB", "Runner", "TaskRetention"} {
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
	f, c := newFakeRunner(), &clock{now: start}
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
	if err != nil || fn.LatestRevision != 2 || fn.DefaultRevision != 1 || fn.Calls != 2 || fn.Tags["team"] != "web" {
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
	if err != nil || len(tasks) != 3 {
		t.Fatalf("tasks after a restart: %d %v", len(tasks), err)
	}
	if res, err := again.alice.TaskResult(ctx, tasks[2].ID); err != nil || string(res.Body) != "ok" {
		t.Errorf("the first task's result after a restart: %+v %v", res, err)
	}
}

// saveTask writes a task as a run left it.
func saveTask(t *testing.T, db *store.DB, task Task) {
	t.Helper()
	if err := db.Put(taskKey(task.Account, task.ID), task); err != nil {
		t.Fatal(err)
	}
}

func TestStartResumesTasks(t *testing.T) {
	dir := t.TempDir()
	db := openDisk(t, dir)
	t.Cleanup(func() { db.Close() })
	f := newFakeRunner()
	out := f.answer("finished while we were away")
	f.mu.Lock()
	f.add("job-done", "fn:alice/echo@1", out...)
	f.add("job-live", "fn:alice/echo@1", running())
	f.mu.Unlock()
	c := &clock{now: start}
	tasks := map[string]Task{}
	for i, job := range []string{"job-done", "job-live", "job-lost", ""} {
		c.Add(time.Second)
		task := Task{ID: newTaskID(c.Now()), Account: "alice", Function: "echo", Revision: 1, State: TaskRunning, Job: job, CreatedAt: c.Now()}
		if job == "" {
			task.State = TaskScheduled
		}
		saveTask(t, db, task)
		tasks[[]string{"done", "live", "lost", "unplaced"}[i]] = task
	}

	r := newRigOn(t, db, f, c)
	done := taskIn(t, r.alice, tasks["done"].ID, TaskCompleted)
	if res, err := r.alice.TaskResult(t.Context(), done.ID); err != nil || string(res.Body) != "finished while we were away" {
		t.Errorf("result of a task resumed: %+v %v", res, err)
	}
	if lost := taskIn(t, r.alice, tasks["lost"].ID, TaskFailed); !strings.Contains(lost.Reason, "job-lost") {
		t.Errorf("a task whose job the node lost: %+v", lost)
	}
	if unplaced := taskIn(t, r.alice, tasks["unplaced"].ID, TaskFailed); !strings.Contains(unplaced.Reason, "before the call was placed") {
		t.Errorf("a task never placed: %+v", unplaced)
	}
	if live, _ := r.alice.GetTask(t.Context(), tasks["live"].ID); live.State != TaskRunning {
		t.Errorf("a task whose job still runs: %+v", live)
	}
	f.finish("job-live", out[1])
	taskIn(t, r.alice, tasks["live"].ID, TaskCompleted)
}

func TestCloseDetachesCalls(t *testing.T) {
	dir := t.TempDir()
	db := openDisk(t, dir)
	t.Cleanup(func() { db.Close() })
	f, c := newFakeRunner(), &clock{now: start}
	r := newRigOn(t, db, f, c)
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	f.setPlay(func(*jobs.Spec) []api.Job { return held() })
	task, err := r.alice.InvokeAsync(t.Context(), "slow", Call{})
	if err != nil {
		t.Fatal(err)
	}
	job := f.next(t)
	taskIn(t, r.alice, task.ID, TaskRunning)
	r.g.Close()
	if got, _ := r.alice.GetTask(t.Context(), task.ID); got.State != TaskRunning || f.wasCancelled(job) {
		t.Fatalf("task after Close: %+v (job cancelled: %v), want it left running", got, f.wasCancelled(job))
	}

	again := newRigOn(t, db, f, c)
	f.finish(job, f.answer("late")[1])
	taskIn(t, again.alice, task.ID, TaskCompleted)
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
	r.f.next(t) // the sync call's job
	task, _ := r.alice.GetTask(t.Context(), res.Task)
	if task.Response != types.CIDOf([]byte("ok")).String() {
		t.Errorf("task response %s", task.Response)
	}
	// A sync call's output went to its caller: not kept.
	if blobs, err := r.g.Blobs(); err != nil || !slices.Equal(blobs, []string{rev.Module}) {
		t.Fatalf("Blobs %q %v, want only the module %s", blobs, err, rev.Module)
	}
	r.f.setPlay(func(*jobs.Spec) []api.Job { return held() })
	async, err := r.alice.InvokeAsync(t.Context(), "echo", Call{})
	if err != nil {
		t.Fatal(err)
	}
	job := r.f.next(t)
	out := r.f.answer("later")
	r.f.finish(job, out[1])
	taskIn(t, r.alice, async.ID, TaskCompleted)
	async, _ = r.alice.GetTask(t.Context(), async.ID)
	want := []string{rev.Module, async.Response}
	slices.Sort(want)
	if blobs, err := r.g.Blobs(); err != nil || !slices.Equal(blobs, want) {
		t.Fatalf("Blobs %q %v, want the module and the async output %q", blobs, err, want)
	}
}

package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

func TestInvoke(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "echo", Env: map[string]string{"MODE": "fn", "REQUEST_METHOD": "NOT-MINE"}, Args: []string{"-v"}})
	r.f.setPlay(func(*jobs.Spec) []api.Job { return r.f.answer("Status: 201 Created\nContent-Type: text/plain\n\nmade") })
	res, err := r.alice.Invoke(ctx, "echo", Call{
		Method: http.MethodPost, Path: "/a/b", RawQuery: "x=1", Header: http.Header{"X-Token": {"t"}, "Authorization": {"Bearer secret"}},
		Body: strings.NewReader("hello"), Host: "gw.example", Scheme: "https", Proto: "HTTP/2.0", ClientIP: "192.0.2.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusCreated || string(res.Body) != "made" || res.Header.Get("Content-Type") != "text/plain" || res.Task == "" {
		t.Fatalf("response %+v", res)
	}
	spec := r.f.spec(1)
	want := map[string]string{
		"REQUEST_METHOD": "POST", "PATH_INFO": "/a/b", "QUERY_STRING": "x=1", "HTTP_X_TOKEN": "t", "MODE": "fn",
		"SCRIPT_NAME": "/v1/functions/echo/invoke", "CONTENT_LENGTH": "5", "REMOTE_ADDR": "192.0.2.1",
	}
	for k, v := range want {
		if spec.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, spec.Env[k], v)
		}
	}
	if _, ok := spec.Env["HTTP_AUTHORIZATION"]; ok {
		t.Error("the caller's Authorization reached the function")
	}
	if spec.Name != "fn:alice/echo@1" || spec.Stdin != "hello" || spec.Args[0] != "-v" || spec.EnoughBids != callEnoughBids ||
		spec.BidWindow != jobs.Duration(callBidWindow) || spec.Retries != 0 {
		t.Errorf("spec %+v", spec)
	}
	var problems *jobs.SpecError // the job's name is the gateway's own form: "fn:" is not in jobs' names
	if errors.As(spec.Validate(), &problems) && (len(problems.Problems) != 1 || problems.Problems[0].Field != "name") {
		t.Errorf("the call's spec is not valid: %v", problems)
	}

	task, err := r.alice.GetTask(ctx, res.Task)
	if err != nil {
		t.Fatal(err)
	}
	if task.State != TaskCompleted || task.Status != http.StatusCreated || task.Job != "job-1" || task.Node != "12D3KooWnode" ||
		task.ExitCode == nil || *task.ExitCode != 0 || task.Response == "" || task.StartedAt == nil || task.EndedAt == nil || task.Revision != 1 {
		t.Fatalf("task %+v", task)
	}
	if fn, _ := r.alice.GetFunction(ctx, "echo"); fn.Calls != 1 {
		t.Errorf("calls %d, want 1", fn.Calls)
	}
	if again, err := r.alice.TaskResult(ctx, res.Task); err != nil || string(again.Body) != "made" || again.Status != http.StatusCreated {
		t.Errorf("TaskResult: %+v %v", again, err)
	}
}

func TestInvokeRevisions(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	r.deploy(t, r.alice, Deploy{Name: "echo", NoDefault: true})
	if _, err := r.alice.Invoke(ctx, "echo", Call{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.alice.Invoke(ctx, "echo", Call{Revision: 2}); err != nil {
		t.Fatal(err)
	}
	if a, b := r.f.spec(1).Name, r.f.spec(2).Name; a != "fn:alice/echo@1" || b != "fn:alice/echo@2" {
		t.Errorf("jobs %q and %q, want the default then revision 2", a, b)
	}
	_, err := r.alice.Invoke(ctx, "echo", Call{Revision: 3})
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "no revision 3") {
		t.Errorf("revision 3: %v", err)
	}
	if _, err := r.alice.Invoke(ctx, "nope", Call{}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown function: %v", err)
	}
	if n := r.f.submissions(); n != 2 {
		t.Errorf("%d jobs submitted, want 2", n)
	}
}

func TestInvokeFailures(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "fn"})
	tests := []struct {
		name   string
		steps  func() []api.Job
		status int
		reason string
	}{
		{"no bid", func() []api.Job { return failed("no node bid: 2 nodes declined: memory: need 1 TiB (2 nodes)") }, 503, "2 nodes declined"},
		{"timeout", func() []api.Job { return failed("failed on node p: jobs: timeout: stopped after 1s") }, 504, "stopped after 1s"},
		{"trap", func() []api.Job { return failed("failed on node p: jobs: program trapped: wasm error: unreachable") }, 502, "unreachable"},
		{"exit", func() []api.Job { return r.f.exit(2, "bad input\nmore") }, 502, "code 2: bad input | more"},
		{"bad output", func() []api.Job { return r.f.answer("Status: nope\n\nx") }, 502, "bad program output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.f.setPlay(func(*jobs.Spec) []api.Job { return tt.steps() })
			_, err := r.alice.Invoke(t.Context(), "fn", Call{})
			var ce *CallError
			if !errors.As(err, &ce) || api.StatusOf(err) != tt.status || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("Invoke: %v (status %d), want a CallError, %d, %q", err, api.StatusOf(err), tt.status, tt.reason)
			}
			task, err := r.alice.GetTask(t.Context(), ce.Task)
			if err != nil || task.State != TaskFailed || task.Status != tt.status || !strings.Contains(task.Reason, tt.reason) {
				t.Fatalf("task %+v %v", task, err)
			}
			_, err = r.alice.TaskResult(t.Context(), ce.Task)
			if api.StatusOf(err) != tt.status || !errors.As(err, &ce) || ce.Task != task.ID {
				t.Errorf("TaskResult: %v", err)
			}
		})
	}
}

func TestInvokeBadCalls(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "small", MaxBody: 10})
	_, err := r.alice.Invoke(t.Context(), "small", Call{Body: strings.NewReader(strings.Repeat("x", 11))})
	if !errors.Is(err, api.ErrTooLarge) || !strings.Contains(err.Error(), "10 B") {
		t.Errorf("a body over the limit: %v", err)
	}
	if _, err := r.alice.Invoke(t.Context(), "small", Call{Body: strings.NewReader(strings.Repeat("x", 10))}); err != nil {
		t.Errorf("a body at the limit: %v", err)
	}
	big := http.Header{"X-Big": {strings.Repeat("x", jobs.MaxArgsEnv)}}
	if _, err := r.alice.Invoke(t.Context(), "small", Call{Header: big}); !errors.Is(err, api.ErrHeadersTooLarge) {
		t.Errorf("headers over the environment: %v", err)
	}
	if _, err := r.alice.Invoke(t.Context(), "small", Call{Path: "/%zz"}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("a path that does not decode: %v", err)
	}
	if tasks, _ := r.alice.ListTasks(t.Context(), TaskQuery{}); len(tasks) != 1 {
		t.Errorf("%d tasks, want only the call that ran", len(tasks))
	}
}

func TestInvokeAsync(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	r.f.setPlay(func(*jobs.Spec) []api.Job { return held() })
	call, cancel := context.WithCancel(ctx)
	task, err := r.alice.InvokeAsync(call, "slow", Call{Body: strings.NewReader("in")})
	cancel() // the caller's leaving does not touch an async call
	if err != nil || task.State != TaskScheduled || !task.Async {
		t.Fatalf("InvokeAsync: %+v %v", task, err)
	}
	job := r.f.next(t)
	taskIn(t, r.alice, task.ID, TaskRunning)
	if _, err := r.alice.TaskResult(ctx, task.ID); !errors.Is(err, api.ErrConflict) {
		t.Errorf("TaskResult of a running task: %v", err)
	}
	out := r.f.answer("done")
	r.f.finish(job, out[1])
	taskIn(t, r.alice, task.ID, TaskCompleted)
	res, err := r.alice.TaskResult(ctx, task.ID)
	if err != nil || string(res.Body) != "done" || res.Task != task.ID {
		t.Fatalf("TaskResult: %+v %v", res, err)
	}
	if r.f.wasCancelled(job) {
		t.Error("the async call's job was cancelled")
	}
}

func TestStopTask(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	r.f.setPlay(func(*jobs.Spec) []api.Job { return held() })
	task, err := r.alice.InvokeAsync(ctx, "slow", Call{})
	if err != nil {
		t.Fatal(err)
	}
	job := r.f.next(t)
	taskIn(t, r.alice, task.ID, TaskRunning)
	stopped, err := r.alice.StopTask(ctx, task.ID)
	if err != nil || stopped.State != TaskStopped || stopped.EndedAt == nil {
		t.Fatalf("StopTask: %+v %v", stopped, err)
	}
	if !r.f.wasCancelled(job) {
		t.Error("the job was not cancelled")
	}
	if _, err := r.alice.StopTask(ctx, task.ID); !errors.Is(err, api.ErrConflict) {
		t.Errorf("stopping twice: %v", err)
	}
	_, err = r.alice.TaskResult(ctx, task.ID)
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "stopped by its account") {
		t.Errorf("TaskResult of a stopped task: %v", err)
	}
	// The run sees its job cancelled and leaves the task as StopTask did;
	// Close waits for it to end.
	r.g.Close()
	if got, _ := r.alice.GetTask(ctx, task.ID); got.State != TaskStopped || got.Reason != "stopped by its account" {
		t.Errorf("task %+v", got)
	}
}

func TestStopSyncCall(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	r.f.setPlay(func(*jobs.Spec) []api.Job { return held() })
	done := make(chan error, 1)
	go func() {
		_, err := r.alice.Invoke(t.Context(), "slow", Call{})
		done <- err
	}()
	r.f.next(t)
	tasks := waitTasks(t, r.alice, 1)
	taskIn(t, r.alice, tasks[0].ID, TaskRunning)
	if _, err := r.alice.StopTask(t.Context(), tasks[0].ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "stopped") {
			t.Errorf("the stopped call answers %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end")
	}
}

func TestCallerLeaves(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	r.f.setPlay(func(*jobs.Spec) []api.Job { return held() })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := r.alice.Invoke(ctx, "slow", Call{})
		done <- err
	}()
	job := r.f.next(t)
	task := waitTasks(t, r.alice, 1)[0]
	taskIn(t, r.alice, task.ID, TaskRunning)
	cancel()
	var ce *CallError
	if err := <-done; !errors.Is(err, context.Canceled) || !errors.As(err, &ce) || ce.Task != task.ID {
		t.Fatalf("the call answers %v", err)
	}
	if !r.f.wasCancelled(job) {
		t.Error("the job of a call whose caller left was not cancelled")
	}
	if got := taskIn(t, r.alice, task.ID, TaskStopped); got.Reason != "the caller left" {
		t.Errorf("task %+v", got)
	}
}

// waitTasks waits for svc to have n tasks, and returns them.
func waitTasks(t *testing.T, svc Service, n int) []Task {
	t.Helper()
	var tasks []Task
	eventually(t, "tasks made", func() bool {
		tasks, _ = svc.ListTasks(t.Context(), TaskQuery{})
		return len(tasks) == n
	})
	return tasks
}

// TestCallsInFlightAreBounded: an account that floods the gateway with
// async calls is told to come back (429 with Retry-After) once it runs
// MaxAccountInFlight of them; another account still calls, and a slot
// freed is a call admitted again.
func TestCallsInFlightAreBounded(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	r.f.setPlay(func(*jobs.Spec) []api.Job { return held() })
	for i := range MaxAccountInFlight {
		if _, err := r.alice.InvokeAsync(ctx, "slow", Call{}); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	_, err := r.alice.InvokeAsync(ctx, "slow", Call{})
	var retry api.Retryer
	if !errors.Is(err, api.ErrTooManyRequests) || !errors.As(err, &retry) || retry.RetryAfter() <= 0 {
		t.Fatalf("the call over the account's bound: %v", err)
	}
	if _, err := r.alice.Invoke(ctx, "slow", Call{}); !errors.Is(err, api.ErrTooManyRequests) {
		t.Fatalf("a sync call over the bound: %v", err)
	}
	if _, _, err := r.g.CreateAccount(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	bob := r.as(t, "bob")
	r.deploy(t, bob, Deploy{Name: "slow"})
	if _, err := bob.InvokeAsync(ctx, "slow", Call{}); err != nil {
		t.Fatalf("another account's call: %v", err)
	}
	job := r.f.next(t)
	r.f.finish(job, r.f.answer("done")[1])
	eventually(t, "a slot freed", func() bool {
		_, err := r.alice.InvokeAsync(ctx, "slow", Call{})
		return err == nil
	})
}

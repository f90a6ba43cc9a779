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
	"github.com/opendms/dms/types"
)

func TestInvoke(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "echo", Env: map[string]string{"MODE": "fn", "REQUEST_METHOD": "NOT-MINE"}, Args: []string{"-v"}})
	r.f.answering(func(fakeCall) string { return "Status: 201 Created\nContent-Type: text/plain\n\nmade" })
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
	call := r.f.lastCall(t)
	wantEnv(t, call, map[string]string{
		"REQUEST_METHOD": "POST", "PATH_INFO": "/a/b", "QUERY_STRING": "x=1", "HTTP_X_TOKEN": "t",
		"SCRIPT_NAME": "/v1/functions/echo/invoke", "CONTENT_LENGTH": "5", "REMOTE_ADDR": "192.0.2.1",
	}, "HTTP_AUTHORIZATION", "MODE")
	if string(call.Req.Stdin) != "hello" || call.Req.Allocation != "alloc-job-1" || call.Req.Timeout <= 0 {
		t.Errorf("call request %+v", call.Req)
	}
	// The revision's own args and env are the instance's; the call's
	// environment wins over them on the node.
	spec := r.f.spec(1)
	if spec.Name != "fn:alice/echo@1" || spec.Args[0] != "-v" || spec.Env["MODE"] != "fn" || spec.Env["REQUEST_METHOD"] != "NOT-MINE" ||
		spec.Stdin != "" || spec.EnoughBids != callEnoughBids || spec.BidWindow != jobs.Duration(callBidWindow) || spec.Retries != 0 {
		t.Errorf("spec %+v", spec)
	}
	if spec.Warm == nil || spec.Warm.Concurrency != DefaultConcurrency || spec.Warm.KeepAlive != DefaultKeepAlive {
		t.Errorf("instance %+v, want the default concurrency and keep-alive", spec.Warm)
	}
	var problems *jobs.SpecError // the job's name is the gateway's own form: "fn:" is not in jobs' names
	if errors.As(spec.Validate(), &problems) && (len(problems.Problems) != 1 || problems.Problems[0].Field != "name") {
		t.Errorf("the instance's spec is not valid: %v", problems)
	}

	task, err := r.alice.GetTask(ctx, res.Task)
	if err != nil {
		t.Fatal(err)
	}
	if task.State != TaskCompleted || task.Status != http.StatusCreated || task.Job != "job-1" || task.Node != fakeNode ||
		task.ExitCode == nil || *task.ExitCode != 0 || task.StartedAt == nil || task.EndedAt == nil || task.Revision != 1 {
		t.Fatalf("task %+v", task)
	}
	if fn, _ := r.alice.GetFunction(ctx, "echo"); fn.Calls != 1 {
		t.Errorf("calls %d, want 1", fn.Calls)
	}
	// A synchronous call's output went to its caller only.
	if _, err := r.alice.TaskResult(ctx, res.Task); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "not kept") {
		t.Errorf("TaskResult of a sync call: %v, want ErrNotFound: not kept", err)
	}
	// The next call goes to the same warm instance.
	if _, err := r.alice.Invoke(ctx, "echo", Call{}); err != nil {
		t.Fatal(err)
	}
	if n, c := r.f.submissions(), r.f.lastCall(t); n != 1 || c.Job != "job-1" {
		t.Errorf("%d instances, the second call on %s; want one, job-1", n, c.Job)
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
	made := r.f.callsMade()
	if a, b := made[0].Spec.Name, made[1].Spec.Name; a != "fn:alice/echo@1" || b != "fn:alice/echo@2" {
		t.Errorf("calls on %q and %q, want the default then revision 2", a, b)
	}
	_, err := r.alice.Invoke(ctx, "echo", Call{Revision: 3})
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "no revision 3") {
		t.Errorf("revision 3: %v", err)
	}
	if _, err := r.alice.Invoke(ctx, "nope", Call{}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown function: %v", err)
	}
	if n := r.f.submissions(); n != 2 {
		t.Errorf("%d instances started, want one a revision", n)
	}
}

func TestInvokeFailures(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "fn"})
	r.deploy(t, r.alice, Deploy{Name: "nowhere"})
	tests := []struct {
		name   string
		fn     string
		reply  *types.CallReply
		status int
		reason string
	}{
		{"no node", "nowhere", nil, 503, "2 nodes declined"},
		{"timeout", "fn", &types.CallReply{Status: types.CallFailed, Error: "jobs: timeout: stopped after 1s"}, 504, "stopped after 1s"},
		{"trap", "fn", &types.CallReply{Status: types.CallFailed, Error: "jobs: program trapped: wasm error: unreachable"}, 502, "unreachable"},
		{"exit", "fn", exited(2, "bad input\nmore"), 502, "code 2: bad input | more"},
		{"bad output", "fn", answer("Status: nope\n\nx"), 502, "bad program output"},
	}
	r.f.setPlay(func(spec *jobs.Spec) []api.Job {
		if strings.Contains(spec.Name, "nowhere") {
			return failed("no node bid: 2 nodes declined: memory: need 1 TiB (2 nodes)")
		}
		return held()
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.f.replying(tt.reply)
			_, err := r.alice.Invoke(t.Context(), tt.fn, Call{})
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
	if n := len(r.f.callsMade()); n != 1 {
		t.Errorf("%d calls sent, want 1", n)
	}
}

func TestInvokeAsync(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	release := r.f.hold()
	call, cancel := context.WithCancel(ctx)
	task, err := r.alice.InvokeAsync(call, "slow", Call{Body: strings.NewReader("in")})
	cancel() // the caller's leaving does not touch an async call
	if err != nil || task.State != TaskScheduled || !task.Async {
		t.Fatalf("InvokeAsync: %+v %v", task, err)
	}
	if c := callsIn(t, r.f, 1)[0]; string(c.Req.Stdin) != "in" {
		t.Errorf("stdin %q", c.Req.Stdin)
	}
	if _, err := r.alice.TaskResult(ctx, task.ID); !errors.Is(err, api.ErrConflict) {
		t.Errorf("TaskResult of a task in flight: %v", err)
	}
	release()
	taskIn(t, r.alice, task.ID, TaskCompleted)
	res, err := r.alice.TaskResult(ctx, task.ID)
	if err != nil || string(res.Body) != "ok" || res.Task != task.ID {
		t.Fatalf("TaskResult: %+v %v", res, err)
	}
	if r.f.wasCancelled("job-1") || r.f.state("job-1") != types.JobRunning {
		t.Error("the instance did not stay warm after the async call")
	}
}

// TestStopTask: StopTask ends the call in flight; the instance it ran on
// stays warm and serves the next call.
func TestStopTask(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	r.f.hold()
	task, err := r.alice.InvokeAsync(ctx, "slow", Call{})
	if err != nil {
		t.Fatal(err)
	}
	callsIn(t, r.f, 1)
	stopped, err := r.alice.StopTask(ctx, task.ID)
	if err != nil || stopped.State != TaskStopped || stopped.EndedAt == nil {
		t.Fatalf("StopTask: %+v %v", stopped, err)
	}
	if _, err := r.alice.StopTask(ctx, task.ID); !errors.Is(err, api.ErrConflict) {
		t.Errorf("stopping twice: %v", err)
	}
	_, err = r.alice.TaskResult(ctx, task.ID)
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "stopped by its account") {
		t.Errorf("TaskResult of a stopped task: %v", err)
	}
	eventually(t, "the stopped call's slot freed", func() bool {
		in, err := r.alice.Instances(ctx, "slow")
		return err == nil && len(in) == 1 && in[0].InFlight == 0
	})
	if r.f.wasCancelled("job-1") {
		t.Error("the instance of a stopped call was released")
	}
	r.f.replying(answer("next"))
	if res, err := r.alice.Invoke(ctx, "slow", Call{}); err != nil || string(res.Body) != "next" || r.f.lastCall(t).Job != "job-1" {
		t.Errorf("the next call: %+v %v", res, err)
	}
	r.g.Close()
	if got, _ := r.alice.GetTask(ctx, task.ID); got.State != TaskStopped || got.Reason != "stopped by its account" {
		t.Errorf("task %+v", got)
	}
}

func TestStopSyncCall(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "slow"})
	r.f.hold()
	done := make(chan error, 1)
	go func() {
		_, err := r.alice.Invoke(t.Context(), "slow", Call{})
		done <- err
	}()
	callsIn(t, r.f, 1)
	tasks := waitTasks(t, r.alice, 1)
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
	r.f.hold()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := r.alice.Invoke(ctx, "slow", Call{})
		done <- err
	}()
	callsIn(t, r.f, 1)
	task := waitTasks(t, r.alice, 1)[0]
	cancel()
	var ce *CallError
	if err := <-done; !errors.Is(err, context.Canceled) || !errors.As(err, &ce) || ce.Task != task.ID {
		t.Fatalf("the call answers %v", err)
	}
	if r.f.wasCancelled("job-1") {
		t.Error("the instance of a call whose caller left was released")
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
	r.deploy(t, r.alice, Deploy{Name: "slow", Scaling: &Scaling{MaxQueue: MaxQueue}})
	release := r.f.hold()
	defer release()
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
	bob, _ := r.account(t, "bob")
	r.deploy(t, bob, Deploy{Name: "slow"})
	if _, err := bob.InvokeAsync(ctx, "slow", Call{}); err != nil {
		t.Fatalf("another account's call: %v", err)
	}
	release()
	eventually(t, "a slot freed", func() bool {
		_, err := r.alice.InvokeAsync(ctx, "slow", Call{})
		return err == nil
	})
}

package gateway

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

func TestTaskStateNext(t *testing.T) {
	states := []TaskState{TaskScheduled, TaskRunning, TaskCompleted, TaskFailed, TaskStopped}
	allowed := map[[2]TaskState]bool{
		{TaskScheduled, TaskRunning}: true, {TaskScheduled, TaskFailed}: true, {TaskScheduled, TaskStopped}: true,
		{TaskRunning, TaskCompleted}: true, {TaskRunning, TaskFailed}: true, {TaskRunning, TaskStopped}: true,
	}
	for _, from := range states {
		for _, to := range states {
			err := from.Next(to)
			if want := allowed[[2]TaskState{from, to}]; (err == nil) != want {
				t.Errorf("%s -> %s: err %v, want allowed %v", from, to, err, want)
			}
			if err != nil && !errors.Is(err, api.ErrConflict) {
				t.Errorf("%s -> %s: %v does not match ErrConflict", from, to, err)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	completed := func(r types.Result) api.Job {
		return api.Job{State: types.JobCompleted, Node: "peer", Result: &r, Reason: "completed on node peer with exit code 0"}
	}
	fail := func(reason string) api.Job { return api.Job{State: types.JobFailed, Reason: reason} }
	tests := []struct {
		name   string
		e      ending
		state  TaskState
		status int
		reason string // a part of the reason
	}{
		{"answer", ending{Job: completed(types.Result{Stdout: "out"}), Stdout: []byte("hello")}, TaskCompleted, 200, ""},
		{"answer with a status", ending{Job: completed(types.Result{}), Stdout: []byte("Status: 404 Not Found\nContent-Type: text/plain\n\nnope")}, TaskCompleted, 404, ""},
		{"malformed output", ending{Job: completed(types.Result{}), Stdout: []byte("Status: many\n\nbody")}, TaskFailed, 502, "cgi: bad program output"},
		{"non-zero exit", ending{Job: completed(types.Result{ExitCode: 3}), Stderr: []byte("panic: boom\n\ngoroutine 1\nmain.main()\nmore")}, TaskFailed, 502, "exited with code 3: panic: boom |  | goroutine 1"},
		{"non-zero exit, no stderr", ending{Job: completed(types.Result{ExitCode: 1})}, TaskFailed, 502, "exited with code 1"},
		{"output cut", ending{Job: completed(types.Result{StdoutTruncated: true})}, TaskFailed, 502, "output limit"},
		{"output unreadable", ending{Job: completed(types.Result{}), ReadErr: errors.New("gone")}, TaskFailed, 502, "reading the function's output: gone"},
		{"no result", ending{Job: api.Job{State: types.JobCompleted}}, TaskFailed, 502, "without a result"},
		{"no node bid", ending{Job: fail("no node bid: 3 nodes declined: memory: need 1 TiB, offered 8 GiB (3 nodes)")}, TaskFailed, 503, "3 nodes declined"},
		{"no acceptable bid", ending{Job: fail("no acceptable bid within 500ms: 1 bid priced above 2 or malformed")}, TaskFailed, 503, "priced above"},
		{"none confirmed, gave up", ending{Job: fail("gave up after 4 attempts (3 reschedules, the limit): none of 2 bidders confirmed: a; b")}, TaskFailed, 503, "none of 2 bidders"},
		{"no capacity", ending{Job: fail("no capacity freed up within 2s: no node bid: 1 node declined: busy (1 node)")}, TaskFailed, 503, "no capacity"},
		{"timeout", ending{Job: fail("failed on node peer: jobs: timeout: stopped after 1s")}, TaskFailed, 504, "stopped after 1s"},
		{"trap", ending{Job: fail("failed on node peer: jobs: program trapped: wasm error: unreachable")}, TaskFailed, 502, "unreachable"},
		{"memory", ending{Job: fail("failed on node peer: jobs: memory limit exceeded: ... and then trapped: oom")}, TaskFailed, 502, "memory limit"},
		{"lost nodes", ending{Job: fail("gave up after 4 attempts (3 reschedules, the limit): failed on node p: node shutting down")}, TaskFailed, 502, "shutting down"},
		{"cancelled", ending{Job: api.Job{State: types.JobCancelled, Reason: "cancelled: by hand"}}, TaskStopped, 409, "by hand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := classify(tt.e)
			task := Task{ID: "t", State: TaskRunning}
			if err := v.apply(&task, start); err != nil {
				t.Fatal(err)
			}
			if task.State != tt.state || task.Status != tt.status || !strings.Contains(task.Reason, tt.reason) {
				t.Errorf("task %s, status %d, reason %q; want %s, %d, with %q", task.State, task.Status, task.Reason, tt.state, tt.status, tt.reason)
			}
			if tt.state == TaskCompleted {
				return
			}
			err := failure(task)
			if got := api.StatusOf(err); got != tt.status {
				t.Errorf("failure status %d (%v), want %d", got, err, tt.status)
			}
		})
	}
}

func TestClassifyKeepsTheAnswer(t *testing.T) {
	v := classify(ending{
		Job:    api.Job{State: types.JobCompleted, Node: "peer", Result: &types.Result{Stdout: "cid-out"}},
		Stdout: []byte("Content-Type: application/json\nX-One: 1\n\n{}"),
	})
	if v.State != TaskCompleted || v.Response.Status != http.StatusOK || string(v.Response.Body) != "{}" ||
		v.Response.Header.Get("Content-Type") != "application/json" || v.Response.Header.Get("X-One") != "1" {
		t.Fatalf("verdict %+v", v)
	}
	task := Task{State: TaskScheduled}
	if err := v.apply(&task, start); err != nil {
		t.Fatal(err)
	}
	if task.State != TaskCompleted || task.StartedAt == nil || task.Response != "cid-out" || task.Node != "peer" || *task.ExitCode != 0 {
		t.Fatalf("task %+v", task)
	}
}

func TestApplyKeepsAStoppedTask(t *testing.T) {
	task := Task{State: TaskStopped, Reason: "stopped by its account"}
	v := classify(ending{Job: api.Job{State: types.JobFailed, Reason: "no node bid: x"}})
	if err := v.apply(&task, start); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("apply to a stopped task: %v", err)
	}
}

func TestStderrHeadIsBounded(t *testing.T) {
	head := stderrHead([]byte(strings.Repeat("x", 10000)))
	if len(head) > stderrBytes+10 {
		t.Fatalf("head of %d bytes", len(head))
	}
}

// TestRedact: a job's reason reaches a caller without any address of a
// provider; peer IDs and the rest of the sentence stay.
func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"node 12D3KooWAbc lost: failed to dial /ip4/10.1.2.3/tcp/4001/p2p/12D3KooWAbc: timeout",
			"node 12D3KooWAbc lost: failed to dial <address>: timeout"},
		{"dial tcp 192.168.0.7:4001: connect: connection refused", "dial tcp <address>: connect: connection refused"},
		{"dial tcp [2001:db8::7]:4001: refused", "dial tcp <address>: refused"},
		{"/ip6/::1/udp/4001/quic-v1, /dns4/node.example/tcp/1", "<address>, <address>"},
		{"no node bid: 2 nodes declined: memory: need 900 TiB, offered 8 GiB (2 nodes)",
			"no node bid: 2 nodes declined: memory: need 900 TiB, offered 8 GiB (2 nodes)"},
		{"version 1.2.3 failed", "version 1.2.3 failed"},
	} {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

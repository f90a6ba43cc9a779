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

func TestClassifyCall(t *testing.T) {
	in := &instance{job: "job-1", peer: "peer"}
	ok := func(stdout string) *types.CallReply {
		return &types.CallReply{Status: types.CallOK, Stdout: []byte(stdout)}
	}
	failed := func(status types.CallStatus, why string) *types.CallReply {
		return &types.CallReply{Status: status, Error: why}
	}
	tests := []struct {
		name   string
		r      *types.CallReply
		state  TaskState
		status int
		reason string // a part of the reason
	}{
		{"answer", ok("hello"), TaskCompleted, 200, ""},
		{"answer with a status", ok("Status: 404 Not Found\nContent-Type: text/plain\n\nnope"), TaskCompleted, 404, ""},
		{"malformed output", ok("Status: many\n\nbody"), TaskFailed, 502, "cgi: bad program output"},
		{"non-zero exit", &types.CallReply{Status: types.CallOK, ExitCode: 3, Stderr: []byte("panic: boom\n\ngoroutine 1\nmain.main()\nmore")}, TaskFailed, 502, "exited with code 3: panic: boom |  | goroutine 1"},
		{"non-zero exit, no stderr", &types.CallReply{Status: types.CallOK, ExitCode: 1}, TaskFailed, 502, "exited with code 1"},
		{"non-zero exit with stdout", &types.CallReply{Status: types.CallOK, ExitCode: 1, Stdout: []byte("Status: 200 OK\n\nfine")}, TaskFailed, 502, "exited with code 1"},
		{"output cut", &types.CallReply{Status: types.CallOK, StdoutTruncated: true}, TaskFailed, 502, "output limit"},
		{"timeout", failed(types.CallFailed, "jobs: timeout: stopped after 1s"), TaskFailed, 504, "stopped after 1s"},
		{"trap", failed(types.CallFailed, "jobs: program trapped: wasm error: unreachable"), TaskFailed, 502, "unreachable"},
		{"memory", failed(types.CallFailed, "jobs: memory limit exceeded: ... and then trapped: oom"), TaskFailed, 502, "memory limit"},
		{"an address in the reason", failed(types.CallFailed, "dial tcp 10.0.0.1:4001: refused"), TaskFailed, 502, "dial tcp <address>: refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := classifyCall(tt.r, in)
			task := Task{ID: "t", State: TaskScheduled}
			if err := v.apply(&task, start); err != nil {
				t.Fatal(err)
			}
			if task.State != tt.state || task.Status != tt.status || !strings.Contains(task.Reason, tt.reason) {
				t.Errorf("task %s, status %d, reason %q; want %s, %d, with %q", task.State, task.Status, task.Reason, tt.state, tt.status, tt.reason)
			}
			if task.Node != "peer" || task.Job != "job-1" {
				t.Errorf("task on %s, %s; want the instance's", task.Node, task.Job)
			}
			if tt.r.Status == types.CallOK && (task.ExitCode == nil || *task.ExitCode != tt.r.ExitCode) {
				t.Errorf("exit code %v, want %d", task.ExitCode, tt.r.ExitCode)
			}
			if tt.r.Status != types.CallOK && task.ExitCode != nil {
				t.Errorf("exit code %d of a call that did not run to its end", *task.ExitCode)
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
	v := classifyCall(&types.CallReply{Status: types.CallOK, Stdout: []byte("Content-Type: application/json\nX-One: 1\n\n{}")},
		&instance{job: "job-1", peer: "peer"})
	if v.State != TaskCompleted || v.Response.Status != http.StatusOK || string(v.Response.Body) != "{}" ||
		v.Response.Header.Get("Content-Type") != "application/json" || v.Response.Header.Get("X-One") != "1" {
		t.Fatalf("verdict %+v", v)
	}
	v.Output = "cid-out"
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
	v := classifyCall(exited(1, ""), &instance{job: "job-1", peer: "peer"})
	if err := v.apply(&task, start); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("apply to a stopped task: %v", err)
	}
	if task.State != TaskStopped || task.Reason != "stopped by its account" {
		t.Fatalf("task %+v", task)
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

package gateway

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/cgi"
)

// Bounds of a task list.
const (
	DefaultTaskLimit = 100
	MaxTaskLimit     = 1000
)

// taskMoves is the one table of a task's moves (Galago's task states).
var taskMoves = map[TaskState][]TaskState{
	TaskScheduled: {TaskRunning, TaskFailed, TaskStopped},
	TaskRunning:   {TaskCompleted, TaskFailed, TaskStopped},
}

// Next checks a move from s to the state to: scheduled -> running, failed
// or stopped; running -> completed, failed or stopped. Any other move is
// an error matching api.ErrConflict.
func (s TaskState) Next(to TaskState) error {
	if slices.Contains(taskMoves[s], to) {
		return nil
	}
	return fmt.Errorf("%w: a task cannot go from %s to %s", api.ErrConflict, s, to)
}

// Terminal reports whether s is an end: completed, failed or stopped.
func (s TaskState) Terminal() bool {
	return s == TaskCompleted || s == TaskFailed || s == TaskStopped
}

// move takes t to the state to at now, if Next allows it.
func (t *Task) move(to TaskState, now time.Time) error {
	if err := t.State.Next(to); err != nil {
		return err
	}
	t.State = to
	if to == TaskRunning {
		t.StartedAt = &now
	} else {
		t.EndedAt = &now
	}
	return nil
}

// taskID is the form of a task ID: 16 hex digits that sort newer tasks
// first, then 16 random ones.
var taskID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// newTaskID makes the ID of a task made at now. IDs sort newest first, so
// the account's tasks are listed in key order.
func newTaskID(now time.Time) string {
	var r [8]byte
	rand.Read(r[:]) // never fails (crypto/rand)
	return fmt.Sprintf("%016x%s", uint64(math.MaxInt64-now.UnixNano()), hex.EncodeToString(r[:]))
}

// ListTasks lists the account's tasks that match q, newest first.
func (s *scope) ListTasks(ctx context.Context, q TaskQuery) ([]Task, error) {
	limit := cmp.Or(q.Limit, DefaultTaskLimit)
	switch {
	case limit < 0 || limit > MaxTaskLimit:
		return nil, fmt.Errorf("%w: limit %d: want 1 to %d", api.ErrBadRequest, limit, MaxTaskLimit)
	case q.State != "" && !q.State.Terminal() && q.State != TaskScheduled && q.State != TaskRunning:
		return nil, fmt.Errorf("%w: unknown task state %s", api.ErrBadRequest, quote(string(q.State)))
	}
	var out []Task
	err := each(s.g.db, tasksOf(s.account), func(_ string, t Task) error {
		t = s.g.overlay(t)
		if (q.Function == "" || t.Function == q.Function) && (q.State == "" || t.State == q.State) {
			out = append(out, t)
		}
		if len(out) == limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// GetTask returns one task.
func (s *scope) GetTask(ctx context.Context, id string) (Task, error) {
	t, err := s.g.readTask(ctx, s.account, id)
	return s.g.overlay(t), err
}

// readTask is task for a reader: a kept task that has not ended here is
// read again once this member caught up (it may have ended through
// another member a moment ago: a caller polling one member and then
// another never sees it go back).
func (g *Gateway) readTask(ctx context.Context, acct, id string) (Task, error) {
	t, err := g.task(acct, id)
	if err == nil && g.grp != nil && t.shared() && !t.State.Terminal() && g.fresh(ctx) == nil {
		t, err = g.task(acct, id)
	}
	return t, err
}

func (g *Gateway) task(acct, id string) (Task, error) {
	return findFresh[Task](g.ctx, g, taskID.MatchString(id), taskKey(acct, id), "task", id)
}

// errStopped is the cause of a call's end when its task is stopped.
var errStopped = errors.New("gateway: the task was stopped")

// StopTask stops a task that has not ended: the gateway stops waiting
// for its call (a call already sent runs on to its end on its instance,
// which goes on serving others); ErrConflict if it has ended.
func (s *scope) StopTask(ctx context.Context, id string) (Task, error) {
	t, err := s.g.updateTask(s.account, id, func(t *Task) error {
		if t.State.Terminal() {
			return fmt.Errorf("%w: task %s is %s already", api.ErrConflict, id, t.State)
		}
		t.Reason, t.Status = "stopped by its account", api.StatusOf(api.ErrConflict)
		return t.move(TaskStopped, s.g.now())
	})
	if err != nil {
		return Task{}, err
	}
	s.g.onTaskEnd(TaskStopped)
	if live, ok := s.g.calls.Load(id); ok {
		live.(*liveCall).cancel(errStopped)
	}
	return t, nil
}

// releaseJob cancels the job of a warm instance, releasing its
// capability; one that ended already is left. It outlives the gateway's
// closing by releaseTimeout, so a closing gateway releases its instances.
func (g *Gateway) releaseJob(job string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.ctx), releaseTimeout)
	defer cancel()
	if err := g.runner.CancelJob(ctx, job); err != nil && !errors.Is(err, api.ErrConflict) {
		g.log.Warn("releasing a warm instance", "job", job, "err", err)
	}
}

// releaseTimeout bounds the release of one warm instance.
const releaseTimeout = 5 * time.Second

// TaskResult is a completed task's response, read again from the output
// its task names; the error of a failed or stopped one (a *CallError);
// ErrConflict before it ends; ErrNotFound for a synchronous call without
// an Idempotency-Key, whose output was not kept.
func (s *scope) TaskResult(ctx context.Context, id string) (Response, error) {
	t, err := s.g.readTask(ctx, s.account, id)
	t = s.g.overlay(t)
	switch {
	case err != nil:
		return Response{}, err
	case !t.State.Terminal():
		return Response{}, fmt.Errorf("%w: task %s is %s", api.ErrConflict, id, t.State)
	case t.State != TaskCompleted:
		return Response{}, &CallError{Task: id, Err: failure(t)}
	case t.Response == "":
		return Response{}, fmt.Errorf("%w: the output of task %s is not kept: a synchronous call's answer goes to its caller only (send an %s to keep it)",
			api.ErrNotFound, id, HeaderIdempotencyKey)
	}
	_ = s.g.pin(t.Response) // in a group, from the member that ran it: the DHT may not know it yet
	out, err := s.g.runner.GetBlob(ctx, t.Response)
	if err != nil {
		return Response{}, fmt.Errorf("gateway: reading the output %s of task %s: %w", t.Response, id, err)
	}
	res, err := cgi.ParseOutput(out)
	if err != nil {
		return Response{}, &CallError{Task: id, Err: fmt.Errorf("%w: %s", api.ErrBadGateway, err.Error())}
	}
	return Response{Status: res.Status, Header: res.Header, Body: res.Body, Task: id}, nil
}

// updateTask applies change to a task and writes it, deleting the keys
// of del in the same write, under the task's lock; a change that returns
// an error leaves it as it is (and del too), and the task returned is the
// one stored.
func (g *Gateway) updateTask(acct, id string, change func(*Task) error, del ...string) (Task, error) {
	mu := g.stripe("task:" + id)
	mu.Lock()
	defer mu.Unlock()
	t, err := g.task(acct, id)
	if err != nil || !t.shared() {
		if err != nil {
			return t, err
		}
		edited := t
		if err := change(&edited); err != nil {
			return t, err
		}
		return edited, g.db.Write(map[string]any{taskKey(acct, id): edited}, del)
	}
	var edited Task
	err = g.update(g.ctx, func(tx *tx) error {
		var err error
		if t, err = txFind[Task](tx, taskID.MatchString(id), taskKey(acct, id), "task", id); err != nil {
			return err
		}
		edited = t
		if err := change(&edited); err != nil {
			return err
		}
		tx.set(taskKey(acct, id), edited)
		tx.delete(del...)
		return nil
	})
	if err != nil {
		return t, err
	}
	return edited, nil
}

package orchestrator

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

func testSpec() JobSpec {
	return JobSpec{
		ID: "j1", Name: "hello",
		Task:       types.Task{Executor: "wasm", Module: "bafymodule", Resources: types.Resources{CPU: 1000, Memory: 64 << 20}},
		EnoughBids: 1,
	}
}

func newTestJob(t *testing.T, spec JobSpec) *Job {
	t.Helper()
	j, err := NewJob(spec, JobConfig{Requester: "me"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func start(m machine, now time.Time) { m.(*Job).Start(now) }

// published tells the job that the request of attempt reached n1..nn.
func published(attempt, n int) event {
	return func(m machine, now time.Time) { m.(*Job).Published(attempt, nodes(n), now) }
}

func status(alloc string, state types.AllocationState, reason string) event {
	return func(m machine, now time.Time) {
		s := types.Status{JobID: "j1", AllocationID: types.AllocationID(alloc), State: state, Reason: reason}
		if state == types.AllocCompleted {
			s.Result = &types.Result{ExitCode: 0, Stdout: "bafyout", Files: map[string]string{"out.txt": "bafyfile"}}
		}
		m.(*Job).Status(s, now)
	}
}

func lost(alloc, reason string) event {
	return func(m machine, now time.Time) { m.(*Job).NodeLost(types.AllocationID(alloc), reason, now) }
}

// busy declines because the node's capacity is in use.
func busy(peer string) event {
	return func(m machine, now time.Time) {
		m.(*Job).Decline(types.Decline{JobID: "j1", Node: types.NodeID{PeerID: peer}, Reasons: []string{"cpu: need 1 core, available 0 cores (busy)"}, Busy: true}, now)
	}
}

func cancel(reason string) event {
	return func(m machine, now time.Time) {
		if err := m.(*Job).Cancel(reason, now); err != nil {
			panic(err)
		}
	}
}

func TestJobScenarios(t *testing.T) {
	sec := time.Second
	cases := []struct {
		name   string
		spec   func(*JobSpec)
		steps  []step
		reason string // the final Reason, when checked
	}{{
		name: "placed, run and completed",
		spec: func(s *JobSpec) { s.EnoughBids = 3 },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1 for wasm until 03:04:07.000"}, state: types.JobBidding},
			{at: 1 * ms, ev: published(1, 3)},
			{at: 2 * ms, ev: bid("n1", 3)},
			{at: 3 * ms, ev: bid("n2", 1)},
			{at: 4 * ms, ev: bid("n3", 2), want: []string{"accept j1-a1-n2 -> n2"}},
			{at: 10 * ms, ev: confirm("j1-a1-n2", 7), want: []string{"invoke j1-a1-n2 on n2 epoch 7", "release the bid for j1 on n1: placed on another node", "release the bid for j1 on n3: placed on another node"}, state: types.JobPlaced},
			{at: 20 * ms, ev: status("j1-a1-n2", types.AllocRunning, ""), state: types.JobRunning},
			{at: 500 * ms, ev: status("j1-a1-n2", types.AllocCompleted, ""), state: types.JobCompleted},
			{at: 600 * ms, ev: status("j1-a1-n2", types.AllocCompleted, "")},
		},
		reason: "completed on node n2 with exit code 0",
	}, {
		name: "node lost: released, rescheduled by default after the backoff on another node, completed",
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1"}},
			{at: 3 * ms, ev: status("j1-a1-n1", types.AllocRunning, ""), state: types.JobRunning},
			{at: 1 * sec, ev: lost("j1-a1-n1", "stream reset"), want: []string{
				"release j1-a1-n1 on n1: the requester lost contact: stream reset"}, state: types.JobPending},
			{at: 1099 * ms, ev: tick},
			{at: 1100 * ms, ev: tick, want: []string{"publish j1"}, state: types.JobBidding},
			{at: 1101 * ms, ev: bid("n2", 2), want: []string{"accept j1-a2-n2 -> n2"}},
			{at: 1103 * ms, ev: confirm("j1-a2-n2", 9), want: []string{"invoke j1-a2-n2 on n2 epoch 9"}},
			{at: 1104 * ms, ev: status("j1-a1-n1", types.AllocCompleted, ""), state: types.JobPlaced},
			{at: 1105 * ms, ev: lost("j1-a1-n1", "late")},
			{at: 2 * sec, ev: status("j1-a2-n2", types.AllocCompleted, ""), state: types.JobCompleted},
		},
		reason: "completed on node n2 with exit code 0",
	}, {
		name: "an auction without bidders is an attempt: retried, then the job fails",
		spec: func(s *JobSpec) { s.Retries = 1 },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 2 * sec, ev: tick, state: types.JobPending},
			{at: 2100 * ms, ev: tick, want: []string{"publish j1"}},
			{at: 4100 * ms, ev: tick, state: types.JobFailed},
		},
		reason: "gave up after 2 attempts: no node bid within 2s: no node answered",
	}, {
		name: "busy nodes: the job waits without spending a retry, then runs when one frees up",
		spec: func(s *JobSpec) { s.QueueTimeout = time.Minute },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: published(1, 2)},
			{at: 2 * ms, ev: busy("n1")},
			{at: 3 * ms, ev: decline("n2", mem900TiB), state: types.JobPending},
			{at: 103 * ms, ev: tick, want: []string{"publish j1"}, state: types.JobBidding},
			{at: 104 * ms, ev: published(1, 2)},
			{at: 105 * ms, ev: busy("n1"), state: types.JobBidding},
			{at: 106 * ms, ev: decline("n2", mem900TiB), state: types.JobPending},
			{at: 306 * ms, ev: tick, want: []string{"publish j1"}},
			{at: 307 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 308 * ms, ev: confirm("j1-a1-n1", 3), want: []string{"invoke j1-a1-n1 on n1 epoch 3"}, state: types.JobPlaced},
			{at: 400 * ms, ev: status("j1-a1-n1", types.AllocCompleted, ""), state: types.JobCompleted},
		},
		reason: "completed on node n1 with exit code 0",
	}, {
		name: "nodes the request reached but that stay silent count as busy: the job waits and asks again",
		spec: func(s *JobSpec) { s.QueueTimeout = time.Minute },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: published(1, 2)},
			{at: 2 * ms, ev: decline("n2", mem900TiB)},
			{at: 2 * sec, ev: tick, state: types.JobPending},
			{at: 2100 * ms, ev: tick, want: []string{"publish j1"}, state: types.JobBidding},
			{at: 2101 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2102 * ms, ev: confirm("j1-a1-n1", 3), want: []string{"invoke j1-a1-n1 on n1 epoch 3"}, state: types.JobPlaced},
			{at: 2200 * ms, ev: status("j1-a1-n1", types.AllocCompleted, ""), state: types.JobCompleted},
		},
		reason: "completed on node n1 with exit code 0",
	}, {
		name: "busy nodes past the queue timeout: the job fails saying so",
		spec: func(s *JobSpec) { s.QueueTimeout = 150 * ms },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: published(1, 1)},
			{at: 2 * ms, ev: busy("n1"), state: types.JobPending},
			{at: 102 * ms, ev: tick, want: []string{"publish j1"}},
			{at: 103 * ms, ev: published(1, 1)},
			{at: 104 * ms, ev: busy("n1"), state: types.JobPending},
			{at: 304 * ms, ev: tick, want: []string{"publish j1"}},
			{at: 305 * ms, ev: published(1, 1)},
			{at: 306 * ms, ev: busy("n1"), state: types.JobFailed},
		},
		reason: "no capacity freed up within 150ms: no node bid: 1 node declined: cpu: need 1 core, available 0 cores (busy) (1 node)",
	}, {
		name: "a single attempt keeps the auction's reason as is",
		spec: func(s *JobSpec) { s.Task.Resources.Memory = 900 << 40 },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: published(1, 2)},
			{at: 2 * ms, ev: decline("n1", mem900TiB)},
			{at: 3 * ms, ev: decline("n2", mem900TiB), state: types.JobFailed},
		},
		reason: "no node bid: 2 nodes declined: memory: need 900 TiB, offered 8 GiB (2 nodes)",
	}, {
		name: "a failed run is retried; a stale running status from it is released; a reject is not charged to retries",
		spec: func(s *JobSpec) { s.Retries = 1 },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1"}},
			{at: 3 * ms, ev: status("j1-a1-n1", types.AllocFailed, "out of memory"), state: types.JobPending},
			{at: 4 * ms, ev: status("j1-a1-n1", types.AllocRunning, ""), want: []string{
				"release j1-a1-n1 on n1: the job no longer runs on this node"}},
			{at: 5 * ms, ev: status("j1-a1-n1", types.AllocRunning, "")},
			{at: 103 * ms, ev: tick, want: []string{"publish j1"}},
			{at: 104 * ms, ev: bid("n1", 1), want: []string{"accept j1-a2-n1 -> n1"}},
			{at: 105 * ms, ev: reject("j1-a2-n1", "busy"), want: []string{"release j1-a2-n1 on n1: n1 rejected: busy"}, state: types.JobPending},
			{at: 305 * ms, ev: tick, want: []string{"publish j1"}},
			{at: 2305 * ms, ev: tick, state: types.JobFailed},
		},
		reason: "gave up after 3 attempts: no node bid within 2s: no node answered",
	}, {
		name: "cancelled while running: the node is released",
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1"}},
			{at: 3 * ms, ev: status("j1-a1-n1", types.AllocRunning, "")},
			{at: 4 * ms, ev: cancel("no longer needed"), want: []string{"release j1-a1-n1 on n1: cancelled: no longer needed"}, state: types.JobCancelled},
			{at: 5 * ms, ev: status("j1-a1-n1", types.AllocRunning, "")},
			{at: 6 * ms, ev: status("j1-a1-n1", types.AllocCancelled, "requester cancelled"), state: types.JobCancelled},
		},
		reason: "cancelled: no longer needed",
	}, {
		name: "cancelled while an accept is out: released, and so is the late confirm",
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2 * ms, ev: cancel(""), want: []string{"release j1-a1-n1 on n1: cancelled by its submitter"}, state: types.JobCancelled},
			{at: 3 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"release j1-a1-n1 on n1: confirmed too late"}},
			{at: 3 * sec, ev: tick},
		},
		reason: "cancelled by its submitter",
	}, {
		name: "the job deadline passes while running",
		spec: func(s *JobSpec) { s.Deadline = 10 * time.Second },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1"}},
			{at: 3 * ms, ev: status("j1-a1-n1", types.AllocRunning, "")},
			{at: 10 * sec, ev: tick, want: []string{"release j1-a1-n1 on n1: job deadline (10s) passed while running"}, state: types.JobFailed},
		},
		reason: "job deadline (10s) passed while running",
	}, {
		name: "no time left for a retry before the deadline",
		spec: func(s *JobSpec) { s.Retries, s.Deadline = 3, 2050*ms },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 2 * sec, ev: tick, state: types.JobFailed},
		},
		reason: "no node bid within 2s: no node answered; no time left to retry before the job deadline",
	}, {
		name: "a bid window cut short by the job deadline still says who declined",
		spec: func(s *JobSpec) { s.Retries, s.Deadline = 3, 1*time.Second },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1 for wasm until 03:04:06.000"}},
			{at: 1 * ms, ev: decline("n1", "busy")},
			{at: 1 * sec, ev: tick, state: types.JobFailed},
		},
		reason: "no node bid within 1s: 1 node declined: busy (1 node); no time left to retry before the job deadline",
	}, {
		name: "a publish failure fails the attempt at once",
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: func(m machine, now time.Time) { m.(*Job).PublishFailed(1, "no peers on the topic", now) }, state: types.JobFailed},
		},
		reason: "publishing the bid request: no peers on the topic",
	}, {
		name: "a completion without a result is the node's fault",
		spec: func(s *JobSpec) { s.Reschedule = RescheduleNever },
		steps: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
			{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1"}},
			{at: 3 * ms, ev: func(m machine, now time.Time) {
				m.(*Job).Status(types.Status{JobID: "j1", AllocationID: "j1-a1-n1", State: types.AllocCompleted}, now)
			}, state: types.JobFailed},
		},
		reason: "node n1 reported completion without a result; not rescheduled: the job says reschedule: never",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := testSpec()
			if c.spec != nil {
				c.spec(&spec)
			}
			j := newTestJob(t, spec)
			run(t, j, c.steps)
			if got := j.Info().Reason; c.reason != "" && got != c.reason {
				t.Fatalf("reason %q\nwant   %q", got, c.reason)
			}
		})
	}
}

func TestJobHistory(t *testing.T) {
	spec := testSpec()
	spec.Retries = 1
	j := newTestJob(t, spec)
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept"}},
		{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke"}},
		{at: 3 * ms, ev: lost("j1-a1-n1", "EOF"), want: []string{"release"}},
		{at: 103 * ms, ev: tick, want: []string{"publish"}},
		{at: 104 * ms, ev: bid("n2", 1), want: []string{"accept"}},
		{at: 105 * ms, ev: confirm("j1-a2-n2", 2), want: []string{"invoke"}},
		{at: 106 * ms, ev: status("j1-a1-n1", types.AllocCompleted, "")},
		{at: 107 * ms, ev: status("j1-a2-n2", types.AllocCompleted, "")},
	})
	info := j.Info()
	want := []Attempt{
		{Number: 1, AllocationID: "j1-a1-n1", Node: "n1", Addrs: []string{"/mem/n1"}, Epoch: 1, Price: types.Credit, PlacedAt: t0.Add(2 * ms), Outcome: OutcomeFailed, Reason: "lost node n1: EOF",
			StartedAt: t0, EndedAt: t0.Add(3 * ms), Notes: []string{"ignored a completed status from node n1 after the attempt ended"}, Charge: ChargeReschedule},
		{Number: 2, AllocationID: "j1-a2-n2", Node: "n2", Addrs: []string{"/mem/n2"}, Epoch: 2, Price: types.Credit, PlacedAt: t0.Add(105 * ms), Outcome: OutcomeCompleted, Reason: "completed on node n2 with exit code 0",
			StartedAt: t0.Add(103 * ms), EndedAt: t0.Add(107 * ms)},
	}
	if !reflect.DeepEqual(info.Attempts, want) {
		t.Fatalf("attempts\n%+v\nwant\n%+v", info.Attempts, want)
	}
	if info.Node != "n2" || info.Result == nil || info.Result.Stdout != "bafyout" || !info.UpdatedAt.Equal(t0.Add(107*ms)) {
		t.Fatalf("info %+v", info)
	}
	if err := j.Cancel("too late", t0.Add(time.Second)); !errors.Is(err, ErrJobDone) {
		t.Fatalf("Cancel after completion: %v", err)
	}
}

func TestJobInfoIsASnapshot(t *testing.T) {
	j := newTestJob(t, testSpec())
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish"}},
		{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept"}},
		{at: 2 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke"}},
		{at: 3 * ms, ev: status("j1-a1-n1", types.AllocCompleted, "")},
	})
	info := j.Info()
	info.Attempts[0].Node = "mallory"
	info.Result.Files["out.txt"] = "tampered"
	again := j.Info()
	if again.Attempts[0].Node != "n1" || again.Result.Files["out.txt"] != "bafyfile" {
		t.Fatal("Info shares memory with the job")
	}
	b, err := json.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	var back JobInfo
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, again) {
		t.Fatalf("JSON round trip: %v\n%s", err, b)
	}
}

func TestJobNextDeadline(t *testing.T) {
	spec := testSpec()
	spec.Retries, spec.Deadline = 1, time.Minute
	j := newTestJob(t, spec)
	check := func(want time.Time) {
		t.Helper()
		if got, ok := j.NextDeadline(); !ok || !got.Equal(want) {
			t.Fatalf("NextDeadline = %s, %v; want %s", got, ok, want)
		}
	}
	check(t0.Add(time.Minute))
	j.Start(t0)
	check(t0.Add(2 * time.Second)) // the bid window
	j.Tick(t0.Add(2 * time.Second))
	check(t0.Add(2100 * ms)) // the backoff
	j.Cancel("", t0.Add(2050*ms))
	if _, ok := j.NextDeadline(); ok {
		t.Fatal("a cancelled job still has a deadline")
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := backoff(1000); got != backoffCap {
		t.Errorf("backoff(1000) = %s", got)
	}
}

func TestNewJobRejectsBadSpecs(t *testing.T) {
	for name, mutate := range map[string]func(*JobSpec){
		"no id":              func(s *JobSpec) { s.ID = "" },
		"no executor":        func(s *JobSpec) { s.Task.Executor = "" },
		"negative resources": func(s *JobSpec) { s.Task.Resources.CPU = -1 },
		"negative retries":   func(s *JobSpec) { s.Retries = -1 },
		"negative window":    func(s *JobSpec) { s.BidWindow = -1 },
		"negative deadline":  func(s *JobSpec) { s.Deadline = -1 },
		"bad max price":      func(s *JobSpec) { s.Constraints.MaxPrice = -2 * types.Credit },
	} {
		spec := testSpec()
		mutate(&spec)
		if _, err := NewJob(spec, JobConfig{}, t0); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := NewJob(testSpec(), JobConfig{ConfirmTimeout: -1}, t0); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("negative confirm timeout: %v", err)
	}
}

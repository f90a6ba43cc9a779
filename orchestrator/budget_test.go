package orchestrator

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

func failedStatus(alloc string, fault types.Fault, reason string) event {
	return func(m machine, now time.Time) {
		m.(*Job).Status(types.Status{JobID: "j1", AllocationID: types.AllocationID(alloc), State: types.AllocFailed, Fault: fault, Reason: reason}, now)
	}
}

func exited(alloc string, code int) event {
	return func(m machine, now time.Time) {
		m.(*Job).Status(types.Status{JobID: "j1", AllocationID: types.AllocationID(alloc), State: types.AllocCompleted,
			Result: &types.Result{ExitCode: code, Stdout: "bafyout-" + alloc}}, now)
	}
}

func notSaved(alloc, reason string) event {
	return func(m machine, now time.Time) { m.(*Job).NotSaved(types.AllocationID(alloc), reason, now) }
}

// placedOn places attempt n of j1 (which starts at t0+at) on peer.
func placedOn(n int, peer string, at time.Duration) []step {
	alloc := fmt.Sprintf("j1-a%d-%s", n, peer)
	return []step{
		{at: at, ev: bid(peer, 1), want: []string{"accept " + alloc + " -> " + peer}},
		{at: at + 1*ms, ev: confirm(alloc, uint64(n)), want: []string{"invoke " + alloc + " on " + peer}, state: types.JobPlaced},
	}
}

// Every way an attempt can fail is charged to the budget it belongs to:
// the program's failures (and auctions no node bid in) to retries, the
// faults of nodes and of the network to reschedule. With the defaults
// (retries 0, reschedule 3), the first kind fails the job and the second
// places it again.
func TestJobChargesEachFailureToItsBudget(t *testing.T) {
	placed := append([]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms)...)
	cases := []struct {
		name   string
		before []step // from the start; the job is placed on n1 unless set
		ev     event
		want   []string // actions of ev
		charge Charge
		state  types.JobState
		reason string
	}{{
		name: "a lost node", ev: lost("j1-a1-n1", "status stream: ended before a final status"),
		want:   []string{"release j1-a1-n1 on n1: the requester lost contact"},
		charge: ChargeReschedule, state: types.JobPending,
		reason: "attempt 1 failed: lost node n1: status stream: ended before a final status; rescheduling in 100ms",
	}, {
		name: "an invocation that could not be delivered", ev: lost("j1-a1-n1", "invoking: stream reset"),
		want:   []string{"release j1-a1-n1 on n1"},
		charge: ChargeReschedule, state: types.JobPending,
	}, {
		name: "a node that refused the invocation: its lock expired", ev: failedStatus("j1-a1-n1", types.FaultNode, "node: lock expired"),
		charge: ChargeReschedule, state: types.JobPending,
		reason: "attempt 1 failed: failed on node n1: node: lock expired; rescheduling in 100ms",
	}, {
		name: "a node that could not fetch the module", ev: failedStatus("j1-a1-n1", types.FaultNode, "fetching the module: no route"),
		charge: ChargeReschedule, state: types.JobPending,
	}, {
		name: "a node cancelling on its own (shutting down)", ev: status("j1-a1-n1", types.AllocCancelled, "node shutting down"),
		charge: ChargeReschedule, state: types.JobPending,
	}, {
		name: "a completion without a result", ev: func(m machine, now time.Time) {
			m.(*Job).Status(types.Status{JobID: "j1", AllocationID: "j1-a1-n1", State: types.AllocCompleted}, now)
		},
		charge: ChargeReschedule, state: types.JobPending,
	}, {
		name: "a placement that could not be saved", ev: notSaved("j1-a1-n1", "disk full"),
		want:   []string{"release j1-a1-n1 on n1: the requester could not record the placement"},
		charge: ChargeReschedule, state: types.JobPending,
		reason: "attempt 1 failed: placed on node n1, not invoked: the job could not be saved: disk full; rescheduling in 100ms",
	}, {
		name: "bidders that all failed to confirm",
		before: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		},
		ev: reject("j1-a1-n1", "lock: insufficient capability"), want: []string{"release j1-a1-n1 on n1: n1 rejected"},
		charge: ChargeReschedule, state: types.JobPending,
		reason: "attempt 1 failed: none of 1 bidder confirmed: n1 rejected: lock: insufficient capability; rescheduling in 100ms",
	}, {
		name: "a bidder that did not confirm in time",
		before: []step{
			{at: 0, ev: start, want: []string{"publish j1"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		},
		ev: func(m machine, now time.Time) { m.Tick(now.Add(2 * time.Second)) }, want: []string{"release j1-a1-n1 on n1: n1 did not confirm within 2s"},
		charge: ChargeReschedule, state: types.JobPending,
	}, {
		name: "a program that failed", ev: failedStatus("j1-a1-n1", types.FaultProgram, "jobs: program trapped: unreachable"),
		charge: ChargeRetry, state: types.JobFailed,
		reason: "failed on node n1: jobs: program trapped: unreachable",
	}, {
		name: "a failure without a fault is the program's: never run again on a guess", ev: failedStatus("j1-a1-n1", "", "out of memory"),
		charge: ChargeRetry, state: types.JobFailed,
		reason: "failed on node n1: out of memory",
	}, {
		name: "a non-zero exit with no retry left completes the job", ev: exited("j1-a1-n1", 3),
		state:  types.JobCompleted,
		reason: "completed on node n1 with exit code 3",
	}, {
		name:   "an auction no node bid in",
		before: []step{{at: 0, ev: start, want: []string{"publish j1"}}, {at: 1 * ms, ev: published(1, 2)}, {at: 2 * ms, ev: decline("n1", mem900TiB)}},
		ev:     decline("n2", mem900TiB),
		charge: ChargeRetry, state: types.JobFailed,
		reason: "no node bid: 2 nodes declined: memory: need 900 TiB, offered 8 GiB (2 nodes)",
	}, {
		name:   "an auction with only busy nodes and no queue timeout",
		before: []step{{at: 0, ev: start, want: []string{"publish j1"}}, {at: 1 * ms, ev: published(1, 1)}},
		ev:     busy("n1"),
		charge: ChargeRetry, state: types.JobFailed,
	}, {
		name:   "a bid request that could not be published",
		before: []step{{at: 0, ev: start, want: []string{"publish j1"}}},
		ev:     func(m machine, now time.Time) { m.(*Job).PublishFailed(1, "no peers on the topic", now) },
		charge: ChargeRetry, state: types.JobFailed,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := newTestJob(t, testSpec())
			before := c.before
			if before == nil {
				before = placed
			}
			run(t, j, append(slices.Clone(before), step{at: 10 * ms, ev: c.ev, want: c.want, state: c.state}))
			info := j.Info()
			if got := info.Attempts[0].Charge; got != c.charge {
				t.Fatalf("attempt charged to %q, want %q (%s)", got, c.charge, info.Attempts[0].Reason)
			}
			if c.reason != "" && info.Reason != c.reason {
				t.Fatalf("reason %q\nwant   %q", info.Reason, c.reason)
			}
		})
	}
}

// charges lists the budget each attempt of j was charged to, "-" for none.
func charges(j *Job) []string {
	var out []string
	for _, a := range j.Info().Attempts {
		out = append(out, string(cmp.Or(a.Charge, "-")))
	}
	return out
}

// The budgets are counted apart, each against its own limit, and the job
// that fails says which ran out.
func TestJobBudgets(t *testing.T) {
	sec := time.Second
	cases := []struct {
		name    string
		spec    func(*JobSpec)
		steps   []step
		charges []string
		reason  string
		exit    int // the result's exit code, for a completed job
	}{{
		name: "reschedule: never fails the job on the first lost node, saying so",
		spec: func(s *JobSpec) { s.Retries, s.Reschedule = 2, RescheduleNever },
		steps: append(append([]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms)...),
			step{at: 10 * ms, ev: lost("j1-a1-n1", "no heartbeat for 1s"), want: []string{"release j1-a1-n1"}, state: types.JobFailed}),
		charges: []string{"reschedule"},
		reason:  "lost node n1: no heartbeat for 1s; not rescheduled: the job says reschedule: never",
	}, {
		name: "the default allows three reschedules: the fourth lost node fails the job",
		steps: slices.Concat(
			[]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms),
			[]step{{at: 10 * ms, ev: lost("j1-a1-n1", "EOF"), want: []string{"release"}, state: types.JobPending},
				{at: 110 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(2, "n1", 111*ms),
			[]step{{at: 120 * ms, ev: lost("j1-a2-n1", "EOF"), want: []string{"release"}, state: types.JobPending},
				{at: 320 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(3, "n1", 321*ms),
			[]step{{at: 330 * ms, ev: lost("j1-a3-n1", "EOF"), want: []string{"release"}, state: types.JobPending},
				{at: 730 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(4, "n1", 731*ms),
			[]step{{at: 740 * ms, ev: lost("j1-a4-n1", "EOF"), want: []string{"release"}, state: types.JobFailed}}),
		charges: []string{"reschedule", "reschedule", "reschedule", "reschedule"},
		reason:  "gave up after 4 attempts (3 reschedules, the limit): lost node n1: EOF",
	}, {
		name: "reschedules do not spend retries, nor retries reschedules",
		spec: func(s *JobSpec) { s.Retries, s.Reschedule = 1, 1 },
		steps: slices.Concat(
			[]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms),
			[]step{{at: 10 * ms, ev: lost("j1-a1-n1", "EOF"), want: []string{"release"}, state: types.JobPending},
				{at: 110 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(2, "n2", 111*ms),
			[]step{{at: 120 * ms, ev: failedStatus("j1-a2-n2", types.FaultProgram, "trap"), state: types.JobPending},
				{at: 320 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(3, "n3", 321*ms),
			[]step{{at: 330 * ms, ev: failedStatus("j1-a3-n3", types.FaultNode, "node restarted"), state: types.JobFailed}}),
		charges: []string{"reschedule", "retry", "reschedule"},
		reason:  "gave up after 3 attempts (1 reschedule, the limit): failed on node n3: node restarted",
	}, {
		name: "a program that keeps failing uses up retries, whatever reschedules are left",
		spec: func(s *JobSpec) { s.Retries = 1 },
		steps: slices.Concat(
			[]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms),
			[]step{{at: 10 * ms, ev: failedStatus("j1-a1-n1", "", "trap"), state: types.JobPending},
				{at: 110 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(2, "n2", 111*ms),
			[]step{{at: 120 * ms, ev: failedStatus("j1-a2-n2", types.FaultProgram, "trap"), state: types.JobFailed}}),
		charges: []string{"retry", "retry"},
		reason:  "gave up after 2 attempts: failed on node n2: trap",
	}, {
		name: "a non-zero exit is retried while retries last, then completes the job with its code",
		spec: func(s *JobSpec) { s.Retries = 2 },
		steps: slices.Concat(
			[]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms),
			[]step{{at: 10 * ms, ev: exited("j1-a1-n1", 3), state: types.JobPending},
				{at: 110 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(2, "n2", 111*ms),
			[]step{{at: 120 * ms, ev: lost("j1-a2-n2", "EOF"), want: []string{"release"}, state: types.JobPending},
				{at: 320 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(3, "n1", 321*ms),
			[]step{{at: 330 * ms, ev: exited("j1-a3-n1", 4), state: types.JobPending},
				{at: 730 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(4, "n2", 731*ms),
			[]step{{at: 740 * ms, ev: exited("j1-a4-n2", 5), state: types.JobCompleted}}),
		charges: []string{"retry", "reschedule", "retry", "-"},
		reason:  "completed on node n2 with exit code 5 after 4 attempts",
		exit:    5,
	}, {
		name: "a retried non-zero exit that then exits 0 completes as usual",
		spec: func(s *JobSpec) { s.Retries = 1 },
		steps: slices.Concat(
			[]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms),
			[]step{{at: 10 * ms, ev: exited("j1-a1-n1", 1), state: types.JobPending},
				{at: 110 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(2, "n2", 111*ms),
			[]step{{at: 120 * ms, ev: exited("j1-a2-n2", 0), state: types.JobCompleted}}),
		charges: []string{"retry", "-"},
		reason:  "completed on node n2 with exit code 0",
	}, {
		name: "a non-zero exit with a retry left but no time for it completes the job, saying why",
		spec: func(s *JobSpec) { s.Retries, s.Deadline = 1, 100*ms },
		steps: slices.Concat(
			[]step{{at: 0, ev: start, want: []string{"publish j1 for wasm until 03:04:05.100"}}}, placedOn(1, "n1", 1*ms),
			[]step{{at: 10 * ms, ev: exited("j1-a1-n1", 2), state: types.JobCompleted}}),
		charges: []string{"-"},
		reason:  "completed on node n1 with exit code 2; no time left to retry before the job deadline",
		exit:    2,
	}, {
		name: "a reschedule needs time before the deadline too",
		spec: func(s *JobSpec) { s.Deadline = 50 * ms },
		steps: slices.Concat(
			[]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms),
			[]step{{at: 10 * ms, ev: lost("j1-a1-n1", "EOF"), want: []string{"release"}, state: types.JobFailed}}),
		charges: []string{"reschedule"},
		reason:  "lost node n1: EOF; no time left to reschedule before the job deadline",
	}, {
		name: "a cancel and a passed deadline are charged to nothing",
		spec: func(s *JobSpec) { s.Deadline = sec },
		steps: slices.Concat(
			[]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms),
			[]step{{at: sec, ev: tick, want: []string{"release j1-a1-n1"}, state: types.JobFailed}}),
		charges: []string{"-"},
		reason:  "job deadline (1s) passed while placed",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := testSpec()
			if c.spec != nil {
				c.spec(&spec)
			}
			j := newTestJob(t, spec)
			run(t, j, c.steps)
			info := j.Info()
			if got := charges(j); !slices.Equal(got, c.charges) {
				t.Fatalf("charges %v, want %v", got, c.charges)
			}
			if info.Reason != c.reason {
				t.Fatalf("reason %q\nwant   %q", info.Reason, c.reason)
			}
			if info.State == types.JobCompleted && info.Result.ExitCode != c.exit {
				t.Fatalf("result %+v, want exit code %d", info.Result, c.exit)
			}
		})
	}
}

// A restarted requester counts each budget from the attempts its record
// holds: what was charged before the restart stays charged, and the auction
// the restart interrupted is charged to nothing.
func TestRestoredJobCountsItsBudgets(t *testing.T) {
	spec := testSpec()
	spec.Retries, spec.Reschedule = 1, 1
	j := newTestJob(t, spec)
	run(t, j, slices.Concat(
		[]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms),
		[]step{{at: 10 * ms, ev: lost("j1-a1-n1", "EOF"), want: []string{"release"}, state: types.JobPending},
			{at: 110 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(2, "n2", 111*ms),
		[]step{{at: 120 * ms, ev: exited("j1-a2-n2", 1), state: types.JobPending},
			{at: 320 * ms, ev: tick, want: []string{"publish j1"}, state: types.JobBidding}}))
	back := restored(t, record(j))
	run(t, back, slices.Concat(
		[]step{{at: time.Second, ev: resume, want: []string{"publish j1"}, state: types.JobBidding}},
		placedOn(4, "n3", time.Second+1*ms),
		[]step{{at: time.Second + 10*ms, ev: failedStatus("j1-a4-n3", types.FaultNode, "node restarted while the allocation was running"), state: types.JobFailed}}))
	if got, want := charges(back), []string{"reschedule", "retry", "-", "reschedule"}; !slices.Equal(got, want) {
		t.Fatalf("charges %v, want %v", got, want)
	}
	const reason = "gave up after 3 attempts (1 reschedule, the limit): failed on node n3: node restarted while the allocation was running"
	if info := back.Info(); info.Reason != reason || !info.Attempts[2].Interrupted {
		t.Fatalf("reason %q, attempts %+v", info.Reason, info.Attempts)
	}
}

// A job rescheduled after its node failed it goes elsewhere when another
// node bids, even one that ranks lower, and is not offered to the node
// that failed it even when that other node rejects: the attempt fails.
// Once every bidder failed the job, they are all candidates again (a
// fault may be passing), best first.
func TestRescheduledJobExcludesTheNodesThatFailedIt(t *testing.T) {
	spec := testSpec()
	spec.EnoughBids = 2
	j := newTestJob(t, spec)
	run(t, j, []step{
		{at: 0, ev: start, want: []string{"publish j1"}},
		{at: 1 * ms, ev: bid("n1", 1)},
		{at: 2 * ms, ev: bid("n2", 5), want: []string{"accept j1-a1-n1 -> n1"}},
		{at: 3 * ms, ev: confirm("j1-a1-n1", 1), want: []string{"invoke j1-a1-n1 on n1", "release the bid for j1 on n2"}},
		{at: 4 * ms, ev: failedStatus("j1-a1-n1", types.FaultNode, "docker: no such image on this node"), state: types.JobPending},
		{at: 200 * ms, ev: tick, want: []string{"publish j1"}},
		{at: 201 * ms, ev: bid("n1", 1)},
		{at: 202 * ms, ev: bid("n2", 5), want: []string{"release the bid for j1 on n1: excluded: the node failed this job before", "accept j1-a2-n2 -> n2"}},
		{at: 203 * ms, ev: reject("j1-a2-n2", "busy now"), want: []string{"release j1-a2-n2 on n2"}, state: types.JobPending},
		{at: 403 * ms, ev: tick, want: []string{"publish j1"}},
		{at: 404 * ms, ev: bid("n1", 1)},
		{at: 405 * ms, ev: bid("n2", 5), want: []string{"accept j1-a3-n1 -> n1"}},
	})
	if got := j.Info().Attempts[1].Unconfirmed; !slices.Equal(got, []string{"n2"}) {
		t.Fatalf("attempt 2 unconfirmed %v", got)
	}
}

// Each attempt keeps what its allocation used, from its node's final
// status: a failed run as well as the completed one, whose usage is also
// the job's result's. A snapshot shares none of it with the job.
func TestAttemptsKeepTheirUsage(t *testing.T) {
	failed := types.Usage{CPU: time.Second, Wall: 2 * time.Second, MemoryLimit: 1 << 20}.WithMemoryTime()
	done := types.Usage{CPU: time.Millisecond, Wall: 3 * time.Millisecond, MemoryLimit: 1 << 20, OutputBytes: 6}.WithMemoryTime()
	spec := testSpec()
	spec.Retries = 1
	j := newTestJob(t, spec)
	end := func(alloc string, state types.AllocationState, u types.Usage) event {
		return func(m machine, now time.Time) {
			m.(*Job).Status(types.Status{JobID: "j1", AllocationID: types.AllocationID(alloc), State: state, Fault: types.FaultProgram,
				Result: &types.Result{Stdout: "bafyout", Usage: &u}}, now)
		}
	}
	run(t, j, slices.Concat(
		[]step{{at: 0, ev: start, want: []string{"publish j1"}}}, placedOn(1, "n1", 1*ms),
		[]step{{at: 10 * ms, ev: end("j1-a1-n1", types.AllocFailed, failed), state: types.JobPending},
			{at: 110 * ms, ev: tick, want: []string{"publish j1"}}}, placedOn(2, "n2", 111*ms),
		[]step{{at: 120 * ms, ev: end("j1-a2-n2", types.AllocCompleted, done), state: types.JobCompleted}}))
	info := j.Info()
	if a := info.Attempts; len(a) != 2 || a[0].Usage == nil || *a[0].Usage != failed || a[1].Usage == nil || *a[1].Usage != done {
		t.Fatalf("attempts %+v", a)
	}
	if info.Result == nil || info.Result.Usage == nil || *info.Result.Usage != done {
		t.Fatalf("result %+v", info.Result)
	}
	info.Attempts[0].Usage.CPU, info.Result.Usage.CPU = 0, 0
	if again := j.Info(); again.Attempts[0].Usage.CPU != failed.CPU || again.Result.Usage.CPU != done.CPU {
		t.Fatal("a snapshot shares its usage with the job")
	}
}

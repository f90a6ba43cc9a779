package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

const waitLimit = 10 * time.Second

func startOrchestrator(t *testing.T, net *fakeNet, store Store) *Orchestrator {
	t.Helper()
	return startOrchestratorWith(t, net, store, func(*Config) {})
}

func startOrchestratorWith(t *testing.T, net *fakeNet, store Store, configure func(*Config)) *Orchestrator {
	t.Helper()
	cfg := Config{
		Self:     "requester",
		Addrs:    func() []string { return []string{"/mem/requester"} },
		Defaults: Defaults{BidWindow: 300 * ms, ConfirmTimeout: 200 * ms},
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	configure(&cfg)
	o, err := New(cfg, net, store)
	if err != nil {
		t.Fatal(err)
	}
	net.o = o
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
		if opened, closed := net.streams(); opened != closed {
			t.Errorf("%d status streams opened, %d closed", opened, closed)
		}
	})
	return o
}

func spec(mem types.Bytes, retries int) JobSpec {
	return JobSpec{
		Name:    "hello",
		Task:    types.Task{Executor: "wasm", Module: "bafymodule", Resources: types.Resources{CPU: 1000, Memory: mem}},
		Retries: retries,
	}
}

// collect reads a watch channel until it closes, within waitLimit.
func collect(t *testing.T, ch <-chan JobInfo) []JobInfo {
	t.Helper()
	var out []JobInfo
	deadline := time.After(waitLimit)
	for {
		select {
		case info, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, info)
		case <-deadline:
			t.Fatalf("watch still open after %s; got %d snapshots", waitLimit, len(out))
		}
	}
}

func submitAndWatch(t *testing.T, o *Orchestrator, s JobSpec) (JobInfo, []JobInfo) {
	t.Helper()
	info, ch := submitWatch(t, o, s)
	return info, collect(t, ch)
}

func states(infos []JobInfo) []types.JobState {
	var out []types.JobState
	for _, info := range infos {
		if len(out) == 0 || out[len(out)-1] != info.State {
			out = append(out, info.State)
		}
	}
	return out
}

func TestOrchestratorPlacesAndCompletes(t *testing.T) {
	net := newFakeNet(
		&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 3, mode: complete},
		&fakeNode{peer: "n2", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 1, mode: complete},
		&fakeNode{peer: "n3", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 2, mode: complete},
	)
	net.gate = make(chan struct{})
	store := &memStore{}
	o := startOrchestrator(t, net, store)
	info, err := o.Submit(t.Context(), spec(64<<20, 0))
	if err != nil || info.State != types.JobBidding || info.ID == "" {
		t.Fatalf("Submit = %+v, %v", info, err)
	}
	ch, err := o.Watch(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	close(net.gate)
	seen := collect(t, ch)
	want := []types.JobState{types.JobBidding, types.JobPlaced, types.JobRunning, types.JobCompleted}
	if got := states(seen); !slices.Equal(got, want) {
		t.Fatalf("watched states %v, want %v", got, want)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Revision != seen[i-1].Revision+1 {
			t.Fatalf("watch skipped from revision %d to %d", seen[i-1].Revision, seen[i].Revision)
		}
	}
	last := seen[len(seen)-1]
	if last.Node != "n2" || last.Result == nil || last.Result.Stdout != "bafy-n2" {
		t.Fatalf("final %+v", last)
	}
	if got, ok := o.Job(info.ID); !ok || got.Revision != last.Revision {
		t.Fatalf("Job() = %+v, %v", got, ok)
	}
	// Snapshots are saved in order, the last one included (superseded ones
	// may be skipped); the pending state of a new job is never visible,
	// since Submit starts it at once.
	waitSaved(t, store, info.ID, last.Revision)
	revs := store.revisions(info.ID)
	increasing := slices.IsSorted(revs) && len(slices.Compact(slices.Clone(revs))) == len(revs)
	if revs[0] < info.Revision || !increasing {
		t.Fatalf("saved revisions %v, submitted at %d, finished at %d", revs, info.Revision, last.Revision)
	}
}

// waitSaved waits until the store holds revision rev of job id.
func waitSaved(t *testing.T, store *memStore, id types.JobID, rev uint64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !slices.Contains(store.revisions(id), rev) {
		if time.Now().After(deadline) {
			t.Fatalf("revision %d of %s not saved within %s: %v", rev, id, waitLimit, store.revisions(id))
		}
		time.Sleep(time.Millisecond)
	}
}

// Close saves the last snapshot of every job, even one the saver had not
// reached yet.
func TestCloseSavesTheLastSnapshot(t *testing.T) {
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: hang})
	store := &memStore{}
	o := startOrchestrator(t, net, store)
	info, err := o.Submit(t.Context(), spec(64<<20, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Cancel(t.Context(), info.ID, "stop"); err != nil {
		t.Fatal(err)
	}
	final, _ := o.Job(info.ID)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if revs := store.revisions(info.ID); revs[len(revs)-1] != final.Revision {
		t.Fatalf("saved revisions %v; the last is %d", revs, final.Revision)
	}
}

func TestOrchestratorAllDeclineFailsWithinTheWindow(t *testing.T) {
	var nodes []*fakeNode
	for _, p := range []string{"n1", "n2", "n3", "n4", "n5"} {
		nodes = append(nodes, &fakeNode{peer: p, offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: complete})
	}
	o := startOrchestrator(t, newFakeNet(nodes...), nil)
	s := spec(900<<40, 0)
	s.BidWindow = 2 * time.Second
	began := time.Now()
	_, seen := submitAndWatch(t, o, s)
	last := seen[len(seen)-1]
	const want = "no node bid: 5 nodes declined: memory: need 900 TiB, offered 8 GiB (5 nodes)"
	if last.State != types.JobFailed || last.Reason != want {
		t.Fatalf("final %s: %q\nwant %q", last.State, last.Reason, want)
	}
	if took := time.Since(began); took >= 2*time.Second {
		t.Fatalf("took %s: the window should close as soon as every node declined", took)
	}
}

func TestOrchestratorReschedulesAfterNodeLost(t *testing.T) {
	net := newFakeNet(
		&fakeNode{peer: "flaky", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 1, mode: die},
		&fakeNode{peer: "steady", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 2, mode: complete},
	)
	o := startOrchestrator(t, net, nil)
	_, seen := submitAndWatch(t, o, spec(64<<20, 1))
	last := seen[len(seen)-1]
	if last.State != types.JobCompleted || last.Node != "steady" || len(last.Attempts) != 2 {
		t.Fatalf("final %+v", last)
	}
	first := last.Attempts[0]
	if first.Node != "flaky" || first.Outcome != OutcomeFailed || !strings.HasPrefix(first.Reason, "lost node flaky: status stream: stream reset") {
		t.Fatalf("first attempt %+v", first)
	}
	net.waitReleased(t, first.AllocationID)
	if got := states(seen); !slices.Contains(got, types.JobPending) {
		t.Fatalf("no backoff between attempts: %v", got)
	}
}

func TestOrchestratorNextCandidateAfterConfirmTimeout(t *testing.T) {
	net := newFakeNet(
		&fakeNode{peer: "slow", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 1, mode: complete, slowAccept: true},
		&fakeNode{peer: "quick", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 2, mode: complete},
	)
	o := startOrchestrator(t, net, nil)
	_, seen := submitAndWatch(t, o, spec(64<<20, 0))
	last := seen[len(seen)-1]
	if last.State != types.JobCompleted || last.Node != "quick" || len(last.Attempts) != 1 {
		t.Fatalf("final %+v", last)
	}
	net.waitReleased(t, fakeAlloc(last.ID, 1, "slow"))
}

func TestOrchestratorCancelWhileRunning(t *testing.T) {
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: hang})
	o := startOrchestrator(t, net, nil)
	ctx := t.Context()
	info, ch := submitWatch(t, o, spec(64<<20, 0))
	waitFor(t, ch, types.JobRunning)
	if err := o.Cancel(ctx, info.ID, "changed my mind"); err != nil {
		t.Fatal(err)
	}
	rest := collect(t, ch)
	if last := rest[len(rest)-1]; last.State != types.JobCancelled || last.Reason != "cancelled: changed my mind" {
		t.Fatalf("final %+v", last)
	}
	if r := net.waitReleased(t, fakeAlloc(info.ID, 1, "n1")); len(r) != 1 || r[0].Reason != "cancelled: changed my mind" {
		t.Fatalf("released %+v", r)
	}
	if err := o.Cancel(ctx, info.ID, "again"); !errors.Is(err, ErrJobDone) {
		t.Fatalf("second cancel: %v", err)
	}
}

func waitFor(t *testing.T, ch <-chan JobInfo, state types.JobState) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case info, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed before %s", state)
			}
			if info.State == state {
				return
			}
		case <-deadline:
			t.Fatalf("no %s within %s", state, waitLimit)
		}
	}
}

func TestOrchestratorErrors(t *testing.T) {
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: hang})
	o := startOrchestrator(t, net, nil)
	ctx := t.Context()
	s := spec(64<<20, 0)
	s.ID = "dup"
	if _, err := o.Submit(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Submit(ctx, s); !errors.Is(err, ErrJobExists) {
		t.Errorf("duplicate: %v", err)
	}
	s.ID, s.Task.Executor = "bad", ""
	if _, err := o.Submit(ctx, s); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("invalid: %v", err)
	}
	if err := o.Cancel(ctx, "nope", ""); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("cancel unknown: %v", err)
	}
	if _, err := o.Watch(ctx, "nope"); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("watch unknown: %v", err)
	}
	if _, ok := o.Job("nope"); ok {
		t.Error("Job(nope) found")
	}
	if jobs := o.Jobs(); len(jobs) != 1 || jobs[0].ID != "dup" {
		t.Errorf("Jobs() = %+v", jobs)
	}
	ch, err := o.Watch(ctx, "dup")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	collect(t, ch) // closed by Close
	if _, err := o.Submit(ctx, spec(1, 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("submit after close: %v", err)
	}
	o.HandleBid(&types.Bid{JobID: "dup"}) // returns at once
}

func TestNewValidates(t *testing.T) {
	net := newFakeNet()
	for name, cfg := range map[string]Config{
		"no self":          {},
		"negative default": {Self: "me", Defaults: Defaults{BidWindow: -1}},
		"bad ranking":      {Self: "me", Ranking: Ranking{MaxPrice: -types.MicroCredit}},
		"short lease":      {Self: "me", Lease: 99 * ms},
	} {
		if _, err := New(cfg, net, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := New(Config{Self: "me"}, nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("no network: %v", err)
	}
}

func TestWatchStopsWithItsContext(t *testing.T) {
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: hang})
	o := startOrchestrator(t, net, nil)
	info, err := o.Submit(t.Context(), spec(64<<20, 0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := o.Watch(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, types.JobRunning)
	cancel()
	collect(t, ch)
}

func TestAnswerTurnsAcceptOutcomesIntoEvents(t *testing.T) {
	acc := types.Accept{JobID: "j1", AllocationID: "j1-a1-n1"}
	cases := map[string]struct {
		msg  types.Message
		err  error
		want []string
	}{
		"confirm":           {&types.Confirm{JobID: "j1", AllocationID: "j1-a1-n1", Epoch: 3}, nil, []string{"invoke j1-a1-n1 on n1 epoch 3"}},
		"reject":            {&types.Reject{JobID: "j1", AllocationID: "j1-a1-n1", Reason: "busy"}, nil, []string{"release j1-a1-n1 on n1: n1 rejected: busy", "observe n1: rejected"}},
		"transport failure": {nil, errors.New("dial backoff"), []string{"release j1-a1-n1 on n1: n1 did not confirm: accept not answered: dial backoff", "observe n1: no_confirm"}},
		"another alloc":     {&types.Confirm{JobID: "j1", AllocationID: "j1-a1-c9"}, nil, []string{"release j1-a1-n1 on n1: n1 did not confirm: confirmed another allocation (j1-a1-c9)", "observe n1: no_confirm"}},
		"wrong kind":        {&types.Status{}, nil, []string{"release j1-a1-n1 on n1: n1 did not confirm: answered an accept with *types.Status", "observe n1: no_confirm"}},
	}
	for name, c := range cases {
		j := newTestJob(t, testSpec())
		run(t, j, []step{
			{at: 0, ev: start, want: []string{"publish"}},
			{at: 1 * ms, ev: bid("n1", 1), want: []string{"accept j1-a1-n1 -> n1"}},
		})
		(&Orchestrator{}).answer(j, acc, c.msg, c.err, t0.Add(2*ms))
		if got := actionStrings(j.Actions()); !slices.Equal(got, c.want) {
			t.Errorf("%s: actions %q, want %q", name, got, c.want)
		}
	}
}

// A finished job stays in memory for Retain, then only the Store has it:
// memory holds the jobs of the last minute, not every job ever submitted.
func TestOrchestratorForgetsFinishedJobsAfterRetain(t *testing.T) {
	store := &memStore{}
	net := newFakeNet(&fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, mode: complete})
	o := startOrchestratorWith(t, net, store, func(c *Config) { c.Retain = 400 * ms })
	info, ch := submitWatch(t, o, spec(64<<20, 0))
	final := collect(t, ch)
	if final[len(final)-1].State != types.JobCompleted {
		t.Fatalf("job ended %+v", final[len(final)-1])
	}
	if _, ok := o.Job(info.ID); !ok {
		t.Fatal("a job just finished is already forgotten")
	}
	deadline := time.Now().Add(waitLimit)
	for _, ok := o.Job(info.ID); ok; _, ok = o.Job(info.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("job still in memory %s after it finished", waitLimit)
		}
		time.Sleep(10 * ms)
	}
	if _, err := o.Watch(t.Context(), info.ID); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("watching a forgotten job: %v", err)
	}
	recs := store.latest()
	if len(recs) != 1 || recs[0].State != types.JobCompleted {
		t.Fatalf("the store holds %+v", recs)
	}
}

// An evicted job is unreachable: not left in the queue's backing array,
// where it would keep its whole job alive until an append moved it.
func TestEvictLeavesNoReferenceBehind(t *testing.T) {
	o := &Orchestrator{cfg: Config{Retain: time.Second}, jobs: map[types.JobID]*entry{}, active: map[types.JobID]*entry{}, infos: map[types.JobID]JobInfo{}}
	for i, id := range []types.JobID{"j1", "j2", "j3"} {
		e := &entry{job: &Job{info: JobInfo{ID: id}}, ended: t0.Add(time.Duration(i) * time.Second)}
		o.jobs[id], o.infos[id] = e, JobInfo{ID: id}
		o.finished = append(o.finished, e)
	}
	queue := o.finished
	o.evict(t0.Add(2500 * ms)) // j1 and j2 are due (ended at 0s and 1s, retained 1s)
	if len(o.finished) != 1 || o.finished[0].job.info.ID != "j3" || len(o.jobs) != 1 || len(o.infos) != 1 {
		t.Fatalf("after evicting two: finished %d, jobs %d, infos %d", len(o.finished), len(o.jobs), len(o.infos))
	}
	if queue[0] != nil || queue[1] != nil {
		t.Fatal("the queue's backing array still holds evicted entries")
	}
	o.evict(t0.Add(time.Hour))
	if o.finished != nil || len(o.jobs) != 0 || len(o.infos) != 0 || o.active == nil {
		t.Fatalf("after evicting all: finished %v, jobs %d, infos %d", o.finished, len(o.jobs), len(o.infos))
	}
}

func TestOrchestratorRetainMustOutlastLateConfirms(t *testing.T) {
	_, err := New(Config{Self: "me", Retain: time.Second, Defaults: Defaults{ConfirmTimeout: time.Second}}, newFakeNet(), nil)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("retain under twice the confirm timeout: %v", err)
	}
}

func TestOrchestratorDefaultRetainFollowsTheConfirmTimeout(t *testing.T) {
	o, err := New(Config{Self: "me", Defaults: Defaults{ConfirmTimeout: 10 * time.Second}}, newFakeNet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.cfg.Retain != 20*time.Second {
		t.Fatalf("retain %s with a 10s confirm timeout, want 20s", o.cfg.Retain)
	}
}

// A node a job lost is not waited for by the auctions that follow, that
// job's next attempt's or any other job's: it still looks reached (a
// cut-off node stays subscribed until its connection times out), and
// waiting for it held every auction open for its whole window.
func TestAuctionsDoNotWaitForANodeAnotherJobLost(t *testing.T) {
	dead := &fakeNode{peer: "n1", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 0, mode: die}
	net := newFakeNet(dead,
		&fakeNode{peer: "n2", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 1, mode: complete},
		&fakeNode{peer: "n3", offer: types.Resources{CPU: 4000, Memory: 8 << 30}, price: 1, mode: complete})
	o := startOrchestrator(t, net, nil)
	// Both jobs' windows are longer than the test waits: an auction closes
	// only once every node not lost answered.
	first := spec(64<<20, 1)
	first.BidWindow = time.Hour
	_, ch := submitWatch(t, o, first)
	if last := collect(t, ch); last[len(last)-1].State != types.JobCompleted || last[len(last)-1].Attempts[0].Node != "n1" {
		t.Fatalf("first job: %+v", last[len(last)-1])
	}
	second := spec(64<<20, 0)
	second.BidWindow = time.Hour
	_, ch = submitWatch(t, o, second)
	// Its watch may begin after the job was placed, even after it ended.
	if last := collect(t, ch); last[len(last)-1].State != types.JobCompleted {
		t.Fatalf("second job: %+v", last[len(last)-1])
	}
}

package dms

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// byPeer returns the node whose PeerID is peer.
func byPeer(t *testing.T, nodes []*DMS, peer string) *DMS {
	t.Helper()
	for _, d := range nodes {
		if d.host.ID() == peer {
			return d
		}
	}
	t.Fatalf("no node %s", peer)
	return nil
}

// allocation is what a provider's database says of one allocation (the
// node package's record, read as JSON).
type allocation struct {
	AllocationID types.AllocationID    `json:"allocation_id"`
	JobID        types.JobID           `json:"job_id"`
	Resources    types.Resources       `json:"resources"`
	LockExpiry   time.Time             `json:"lock_expiry"`
	State        types.AllocationState `json:"state"`
	Reason       string                `json:"reason"`
	LockedAt     time.Time             `json:"locked_at"`
	StartedAt    time.Time             `json:"started_at"`
	EndedAt      time.Time             `json:"ended_at"`
}

// allocations reads every allocation record of a provider.
func allocations(t *testing.T, d *DMS) []allocation {
	t.Helper()
	var out []allocation
	err := d.db.Scan("alloc/", func(_ string, v []byte) error {
		var a allocation
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func allocationOf(t *testing.T, d *DMS, id string) allocation {
	t.Helper()
	for _, a := range allocations(t, d) {
		if string(a.AllocationID) == id {
			return a
		}
	}
	t.Fatalf("node %s has no record of %s", d.host.ID(), id)
	return allocation{}
}

// waitReleased waits until a provider has all it offers available again.
func waitReleased(t *testing.T, d *DMS) {
	t.Helper()
	waitFor(t, 10*time.Second, "the provider to release its capability", func() bool {
		info, err := d.Node(context.Background())
		return err == nil && info.Available == info.Registered && info.Running == 0
	})
}

// nextState reads a job's events until one in state want, and returns it.
func nextState(t *testing.T, events <-chan api.Job, want types.JobState) api.Job {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case j, ok := <-events:
			if !ok {
				t.Fatalf("the job ended before %s", want)
			}
			if j.State == want {
				return j
			}
			if j.State.Terminal() {
				t.Fatalf("job %s (%s) before %s", j.State, j.Reason, want)
			}
		case <-timeout:
			t.Fatalf("no %s within 30s", want)
		}
	}
}

// runningSleep submits from req a tiny job sleeping 3s, with two retries,
// and waits until it runs: it returns the job's handle and that state.
func runningSleep(t *testing.T, req *DMS) (*Handle, api.Job) {
	t.Helper()
	spec := tinySpec(t, 3*time.Second, "slept\n")
	spec.Retries = 2
	h, err := req.Submit(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return h, nextState(t, h.Events(), types.JobRunning)
}

func waitEnd(t *testing.T, h *Handle) api.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// A provider that crashes while running a job (its process, and with it
// every stream, is gone) is noticed at once; the job is auctioned again and
// completes on another node.
func TestCrashedProviderJobCompletesElsewhere(t *testing.T) {
	nodes := relNet(t, 4, func(i int) bool { return i != 0 }, func(int) []Option { return nil })
	h, first := runningSleep(t, nodes[0])
	crashed := byPeer(t, nodes, first.Node)
	began := time.Now()
	crashed.Close()
	again := nextState(t, h.Events(), types.JobRunning)
	recovery := time.Since(began)
	job := waitEnd(t, h)
	t.Logf("crash -> running on another node: %s (first attempt: %s)", recovery, job.Attempts[0].Reason)
	if job.State != types.JobCompleted || job.Node == first.Node || again.Node != job.Node {
		t.Fatalf("job %s (%s) on %s; crashed %s", job.State, job.Reason, job.Node, first.Node)
	}
	if len(job.Attempts) != 2 || job.Attempts[0].State != "failed" || !strings.Contains(job.Attempts[0].Reason, first.Node) {
		t.Fatalf("attempts %+v", job.Attempts)
	}
	if recovery > 5*time.Second {
		t.Fatalf("recovery took %s", recovery)
	}
}

// A provider cut off silently (its connections stay open, nothing arrives)
// is declared lost when the lease runs out, and the job runs elsewhere. The
// release reaches the node over the network, so it stops the old run and
// frees its capability.
func TestSilentProviderIsDeclaredLostWithinTheLease(t *testing.T) {
	var cut sync.Map // allocation IDs whose invocation frames are dropped
	gate := withHeartbeatGate(func(id types.AllocationID) bool { _, dropped := cut.Load(id); return !dropped })
	nodes := relNet(t, 4, func(i int) bool { return i != 0 }, func(int) []Option { return []Option{gate} })
	h, first := runningSleep(t, nodes[0])
	firstAlloc := first.Attempts[len(first.Attempts)-1].AllocationID
	began := time.Now()
	cut.Store(types.AllocationID(firstAlloc), true)
	pending := nextState(t, h.Events(), types.JobPending)
	detection := time.Since(began)
	again := nextState(t, h.Events(), types.JobRunning)
	recovery := time.Since(began)
	job := waitEnd(t, h)
	t.Logf("silent cut -> declared lost: %s (lease %s); -> running again: %s, on the same node: %v",
		detection, DefaultLease, recovery, again.Node == first.Node)
	if !strings.Contains(pending.Reason, "no heartbeat for 1s") {
		t.Fatalf("pending because %q", pending.Reason)
	}
	if detection < DefaultLease-100*time.Millisecond || detection > DefaultLease+time.Second {
		t.Fatalf("declared lost after %s with a lease of %s", detection, DefaultLease)
	}
	if job.State != types.JobCompleted || len(job.Attempts) != 2 || job.Attempts[1].AllocationID == firstAlloc {
		t.Fatalf("job %s (%s), attempts %+v", job.State, job.Reason, job.Attempts)
	}
	old := byPeer(t, nodes, first.Node)
	waitFor(t, 10*time.Second, "the cut allocation to be cancelled", func() bool {
		return allocationOf(t, old, firstAlloc).State == types.AllocCancelled
	})
	if a := allocationOf(t, old, firstAlloc); !strings.Contains(a.Reason, "the requester lost contact: no heartbeat") {
		t.Fatalf("the cut allocation ended %s: %s", a.State, a.Reason)
	}
	waitReleased(t, old)
}

// Cancelling a running job stops its allocation: the job ends cancelled,
// saying so, and the provider gets its capability back.
func TestCancelRunningJobReleasesTheProvider(t *testing.T) {
	nodes := relNet(t, 3, func(i int) bool { return i != 0 }, func(int) []Option { return nil })
	h, err := nodes[0].Submit(context.Background(), tinySpec(t, time.Minute, "never\n"))
	if err != nil {
		t.Fatal(err)
	}
	running := nextState(t, h.Events(), types.JobRunning)
	provider := byPeer(t, nodes, running.Node)
	if info, _ := provider.Node(context.Background()); info.Available == info.Registered {
		t.Fatal("a running job holds nothing on its provider")
	}
	if err := nodes[0].CancelJob(context.Background(), h.ID); err != nil {
		t.Fatal(err)
	}
	job := waitEnd(t, h)
	if job.State != types.JobCancelled || job.Reason != "cancelled by its submitter" {
		t.Fatalf("job %s: %q", job.State, job.Reason)
	}
	waitReleased(t, provider)
	alloc := running.Attempts[len(running.Attempts)-1].AllocationID
	if a := allocationOf(t, provider, alloc); a.State != types.AllocCancelled || !strings.Contains(a.Reason, "cancelled by its submitter") {
		t.Fatalf("allocation %s: %s", a.State, a.Reason)
	}
	if err := nodes[0].CancelJob(context.Background(), h.ID); err == nil {
		t.Fatal("cancelling a cancelled job succeeded")
	}
}

// A job still running when its deadline passes fails, with a reason that
// names the deadline, and its provider is told to stop.
func TestDeadlineFailsARunningJobAndReleasesTheProvider(t *testing.T) {
	nodes := relNet(t, 3, func(i int) bool { return i != 0 }, func(int) []Option { return nil })
	spec := tinySpec(t, 10*time.Second, "too late\n")
	spec.Deadline = jobs.Duration(1500 * time.Millisecond) // bidding and placing take a few hundred ms under -race
	spec.Retries = 3
	began := time.Now()
	h, err := nodes[0].Submit(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	running := nextState(t, h.Events(), types.JobRunning)
	job := waitEnd(t, h)
	took := time.Since(began)
	if job.State != types.JobFailed || job.Reason != "job deadline (1.5s) passed while running" {
		t.Fatalf("job %s: %q", job.State, job.Reason)
	}
	if took > 5*time.Second {
		t.Fatalf("the job ended %s after its submission, with a 1.5s deadline", took)
	}
	provider := byPeer(t, nodes, running.Node)
	waitReleased(t, provider)
	alloc := running.Attempts[len(running.Attempts)-1].AllocationID
	if a := allocationOf(t, provider, alloc); a.State != types.AllocCancelled || !strings.Contains(a.Reason, "job deadline (1.5s) passed") {
		t.Fatalf("allocation %s: %s", a.State, a.Reason)
	}
}

func TestLeaseAndConfirmOptionsValidate(t *testing.T) {
	for name, opt := range map[string]Option{
		"short lease":   WithLease(50 * time.Millisecond),
		"long lease":    WithLease(time.Hour),
		"short confirm": WithConfirmTimeout(time.Millisecond),
		"long confirm":  WithConfirmTimeout(2 * time.Minute),
	} {
		if _, err := newConfig([]Option{WithHome("h"), opt}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := newConfig([]Option{WithHome("h")})
	if err != nil || c.lease != DefaultLease || c.confirm != 0 {
		t.Fatalf("defaults: lease %s, confirm %s, %v", c.lease, c.confirm, err)
	}
	if c, err = newConfig([]Option{WithHome("h"), WithLease(5 * time.Second), WithConfirmTimeout(3 * time.Second)}); err != nil || c.lease != 5*time.Second || c.confirm != 3*time.Second {
		t.Fatalf("lease %s, confirm %s, %v", c.lease, c.confirm, err)
	}
}

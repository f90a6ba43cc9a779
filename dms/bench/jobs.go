package bench

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// service is what a scenario drives: a node in this process (*dms.DMS) or
// a daemon through its API (*api.Client). Both are safe for concurrent use.
type service interface {
	SubmitJob(ctx context.Context, spec *jobs.Spec) (api.Job, error)
	WatchJob(ctx context.Context, id string) (<-chan api.Job, error)
	GetBlob(ctx context.Context, cid string) ([]byte, error)
}

// tinyOutput is what the tiny module prints.
const tinyOutput = "hello from dms bench\n"

// tinySpec is the tiny Wasm job: the module (a CID) with small resources,
// so that many run at once on one node.
func tinySpec(module string) (*jobs.Spec, error) {
	return jobs.Parse(fmt.Appendf(nil, "name: bench-tiny\nmodule: %s\nresources: {cpu: 0.1, memory: 16MiB}\ntimeout: 30s\n", module))
}

// run is the measurement of one job.
type run struct {
	job       api.Job // its last state
	submitted time.Time
	seen      map[types.JobState]time.Time // when each state was first seen
	done      time.Time                    // when its verified output was in
	err       error
}

func (r run) latency() time.Duration { return r.done.Sub(r.submitted) }

// runJob submits spec (a copy) to svc, follows it to its end, and fetches
// its stdout, which must hash to the result's CID and equal want.
func runJob(ctx context.Context, svc service, spec *jobs.Spec, want []byte) run {
	s := *spec
	r := run{submitted: time.Now(), seen: make(map[types.JobState]time.Time, 6)}
	job, err := svc.SubmitJob(ctx, &s)
	if err != nil {
		r.err = fmt.Errorf("bench: submitting a job: %w", err)
		return r
	}
	r.job, r.err = follow(ctx, svc, job, func(j api.Job) {
		if _, ok := r.seen[j.State]; !ok {
			r.seen[j.State] = time.Now()
		}
	})
	if r.err == nil {
		r.err = verifyStdout(ctx, svc, r.job, want)
	}
	r.done = time.Now()
	return r
}

// follow watches job until it ends, calling each for every state it sees,
// and returns its last state; an error if it did not complete.
func follow(ctx context.Context, svc service, job api.Job, each func(api.Job)) (api.Job, error) {
	events, err := svc.WatchJob(ctx, job.ID)
	if err != nil {
		return job, fmt.Errorf("bench: watching job %s: %w", job.ID, err)
	}
	for j := range events {
		each(j)
		job = j
	}
	switch {
	case job.State == types.JobCompleted:
		return job, nil
	case !job.State.Terminal():
		return job, fmt.Errorf("%w: job %s: lost its events while %s (%w)", ErrJob, job.ID, job.State, ctx.Err())
	}
	return job, fmt.Errorf("%w: job %s is %s: %s", ErrJob, job.ID, job.State, job.Reason)
}

// verifyStdout fetches a completed job's stdout and checks it against its
// CID and want.
func verifyStdout(ctx context.Context, svc service, job api.Job, want []byte) error {
	if job.Result == nil || job.Result.ExitCode != 0 {
		return fmt.Errorf("%w: job %s completed without success: %+v", ErrJob, job.ID, job.Result)
	}
	c, err := cid.Decode(job.Result.Stdout)
	if err != nil {
		return fmt.Errorf("%w: job %s: stdout CID: %w", ErrJob, job.ID, err)
	}
	out, err := svc.GetBlob(ctx, c.String())
	if err != nil {
		return fmt.Errorf("%w: job %s: fetching stdout: %w", ErrJob, job.ID, err)
	}
	if err := types.VerifyCID(c, out); err != nil {
		return fmt.Errorf("%w: job %s: stdout: %w", ErrJob, job.ID, err)
	}
	if want != nil && !bytes.Equal(out, want) {
		return fmt.Errorf("%w: job %s printed %q, want %q", ErrJob, job.ID, out, want)
	}
	return nil
}

// requesterGap spaces the submissions of runMany and runPool. The daemon
// of memory runs with the default bid-request rate, 50 a second, its own
// included (network.bid_request_rate), and must stay under it or measure
// the rate limiter; sequential jobs spaced so measure one job's latency,
// not the work the previous one left behind.
const requesterGap = time.Second / 40

// pacer lets goroutines start something at most once per gap. Safe for
// concurrent use.
type pacer struct {
	gap  time.Duration
	mu   sync.Mutex
	next time.Time
}

// wait returns when the caller's turn has come, or ctx's error.
func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	at := time.Now()
	if at.Before(p.next) {
		at = p.next
	}
	p.next = at.Add(p.gap)
	p.mu.Unlock()
	return sleepCtx(ctx, time.Until(at))
}

// runMany runs n jobs one after another, paced by requesterGap, until ctx
// ends.
func runMany(ctx context.Context, svc service, spec *jobs.Spec, want []byte, n int) []run {
	runs := make([]run, 0, n)
	p := pacer{gap: requesterGap}
	for range n {
		if p.wait(ctx) != nil {
			break
		}
		runs = append(runs, runJob(ctx, svc, spec, want))
	}
	return runs
}

// rateLimited reports whether a run failed because its requester was over
// its bid-request rate.
func rateLimited(r run) bool {
	return r.err != nil && r.job.State == types.JobFailed && strings.Contains(r.job.Reason, "rate_limited")
}

// firstError returns the first run's error, if any.
func firstError(runs []run) error {
	for _, r := range runs {
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

// withCounts adds to res, under keys that start with prefix, how many runs
// completed ("jobs") and failed ("failed"), and the first failure
// ("error"): a failed job is reported, never hidden.
func withCounts(res map[string]any, prefix string, runs []run) map[string]any {
	failed := 0
	for _, r := range runs {
		if r.err != nil {
			failed++
		}
	}
	res[prefix+"jobs"], res[prefix+"failed"] = len(runs)-failed, failed
	if err := firstError(runs); err != nil {
		res[prefix+"error"] = err.Error()
	}
	return res
}

// declined reads the count of an auction's failure reason, as in
// "no node bid: 4 nodes declined: memory: ...".
var declined = regexp.MustCompile(`(\d+) nodes? declined`)

// waitBidders submits jobs that no node can take until want nodes decline
// one: a bid request from svc then reaches want computing nodes, so the
// measured auctions see the whole network. (Connections come up before
// gossipsub subscriptions, which a node does not expose.)
func waitBidders(ctx context.Context, svc service, module string, want int, limit time.Duration) error {
	spec, err := jobs.Parse(fmt.Appendf(nil, "name: bench-probe\nmodule: %s\nresources: {cpu: 0.1, memory: 900TiB}\nbid_window: 1s\nqueue_timeout: 0s\n", module))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	got := 0
	for ctx.Err() == nil {
		s := *spec
		job, err := svc.SubmitJob(ctx, &s)
		if err != nil {
			return fmt.Errorf("bench: submitting a probe: %w", err)
		}
		job, _ = follow(ctx, svc, job, func(api.Job) {})
		if job.State != types.JobFailed {
			continue // ctx ended
		}
		m := declined.FindStringSubmatch(job.Reason)
		if m == nil {
			return fmt.Errorf("bench: a probe job failed with %q, not with the nodes that declined it", job.Reason)
		}
		if got, _ = strconv.Atoi(m[1]); got >= want {
			return nil
		}
	}
	return fmt.Errorf("%w: a bid request reaches %d of %d computing nodes after %s", ErrNotReady, got, want, limit)
}

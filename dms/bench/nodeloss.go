package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func init() {
	register(Scenario{
		Name: "node-loss",
		What: "close the node running a job (3 s of sleep.wasm, default settings: rescheduled): time until it runs on another node",
		Run:  nodeLoss,
	})
}

// lossJob is what a node-loss run submits.
type lossJob struct {
	module []byte
	args   []string
	want   []byte
}

// nodeLoss runs a job, closes the node running it as soon as it runs, and
// measures how long until the job runs elsewhere, in a fresh network each
// time. The node closes in process (its connections close at once, so the
// requester may learn of the loss from the stream rather than the lease);
// cmd/dms's fault tests kill daemon processes instead.
func nodeLoss(ctx context.Context, o Options) (map[string]any, error) {
	nodes, repeat := 4, 3
	var job lossJob
	if o.Quick {
		nodes, repeat = 3, 1
		job = lossJob{module: tinywasm.Module(time.Second, "slept\n"), want: []byte("slept\n")}
	} else {
		path, err := repoFile("examples/sleep/sleep.wasm")
		if err != nil {
			return nil, err
		}
		mod, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		job = lossJob{module: mod, args: []string{"3"}, want: []byte("1/3\n2/3\n3/3\nslept 3 seconds\n")}
	}
	var runs []map[string]any
	var recoveries []time.Duration
	for i := range repeat {
		r, rec, err := lossRun(ctx, o, nodes, job)
		if err != nil {
			return nil, fmt.Errorf("bench: node-loss run %d: %w", i+1, err)
		}
		o.Log.Info("node-loss run", "run", i+1, "recovery_ms", r["recovery_ms"])
		runs, recoveries = append(runs, r), append(recoveries, rec)
	}
	return map[string]any{"nodes": nodes, "recovery_ms": newDist(recoveries).pct(50), "runs": runs}, nil
}

// lossRun is one run of nodeLoss, in a network of its own.
func lossRun(ctx context.Context, o Options, nodes int, lj lossJob) (_ map[string]any, recovery time.Duration, err error) {
	c, err := startCluster(ctx, o, nodes, lj.module)
	if err != nil {
		return nil, 0, err
	}
	defer closeInto(c, &err)
	spec, err := jobs.Parse(fmt.Appendf(nil, "name: bench-loss\nmodule: %s\nresources: {cpu: 0.1, memory: 64MiB}\ntimeout: 60s\n", c.module))
	if err != nil {
		return nil, 0, err
	}
	spec.Args = lj.args
	job, err := c.req.SubmitJob(ctx, spec)
	if err != nil {
		return nil, 0, fmt.Errorf("submitting: %w", err)
	}
	w := lossWatch{c: c}
	job, err = follow(ctx, c.req, job, w.see)
	w.wg.Wait()
	ended := time.Now()
	if err == nil {
		err = verifyStdout(ctx, c.req, job, lj.want)
	}
	fetch := time.Since(ended)
	if err != nil {
		return nil, 0, err
	}
	if w.recovered == 0 {
		return nil, 0, fmt.Errorf("%w: job %s completed on %s without running on another node after its node closed", ErrJob, job.ID, job.Node)
	}
	return map[string]any{
		"recovery_ms": ms(w.recovered), "detect_ms": ms(w.detected), "close_ms": ms(w.closing),
		"attempts": len(job.Attempts), "fetch_ms": ms(fetch),
	}, w.recovered, nil
}

// lossWatch follows the job of a node-loss run: it closes the node the
// job first runs on, and times what follows from then.
type lossWatch struct {
	c         *cluster
	wg        sync.WaitGroup
	victim    string
	closed    time.Time
	detected  time.Duration // until the job was seen to have left the victim
	recovered time.Duration // until it ran on another node
	closing   time.Duration // how long the victim's Close took (set before wg.Wait returns)
}

func (w *lossWatch) see(j api.Job) {
	if w.victim == "" {
		if j.State == types.JobRunning {
			w.closeVictim(j.Node)
		}
		return
	}
	if w.detected == 0 && (j.Node != w.victim || j.State != types.JobRunning) {
		w.detected = time.Since(w.closed)
	}
	if w.recovered == 0 && j.State == types.JobRunning && j.Node != w.victim {
		w.recovered = time.Since(w.closed)
	}
}

// closeVictim closes the node with PeerID id in the background: the job's
// events go on meanwhile.
func (w *lossWatch) closeVictim(id string) {
	i := w.c.Index(id)
	if i < 0 {
		return // not a node of ours: the run fails for want of a recovery
	}
	w.victim, w.closed = id, time.Now()
	w.wg.Go(func() {
		_ = w.c.Nodes[i].Close()
		w.closing = time.Since(w.closed)
	})
}

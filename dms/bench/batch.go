package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator/quorum"
)

// The batch scenario asks what the batch engine (dms/batches.go) adds to
// the jobs it issues. Node 0 submits and offers no compute: it is the
// batches' manager; the other nodes compute. Every unit runs
// tinywasm.Args with its number as its one argument, and prints it. A
// batch with replication 1, then one with replication 2 and quorum 2,
// over other numbers; for each:
//
//   - makespan: from SubmitBatch until WatchBatch's last state;
//   - the plain rate, measured just before and just after the batch on
//     the same network: jobs of the same template submitted directly
//     (SubmitJob, then WatchJob to their end, as the engine does), as
//     many at once as the batch's parallel, each submitted as soon as one
//     ends; the ratio is makespan / (units × replication / the mean of
//     the two rates), 1 when the engine costs nothing; and the same
//     ratio of the process's CPU time per replica, which moves less
//     with what else the machine runs;
//   - heap per finished unit: the live heap of the process (every node's)
//     after a collection, sampled as heapFractions of the units end, and
//     the slope of the least-squares line through the samples. The
//     replicas under way and the finished jobs the orchestrator still
//     holds (its Retain, 10 s) weigh the same at every sample once the
//     batch runs steadily, so the slope is what stays per finished unit:
//     the engine's state, and whatever else a job leaves in any node, in
//     caches that keep minutes of messages too; and the same slope of the
//     quorum state alone (batchheap.go), the state the engine keeps per
//     unit;
//   - result bytes: what a client fetches with one request per unit (the
//     unit's record as BatchUnits returns it, then its stdout) against
//     one JSON of every record, and of every record with its output,
//     compressed with zstd: what a batched transfer would carry. That
//     transfer is not built yet. Every output is read from the node that
//     returned it and checked, and fetchSample of them are fetched
//     through the requester (GetBlob), one at a time, as a client would:
//     the median time of one such fetch.

func init() {
	register(Scenario{
		Name: "batch",
		What: "10,000 tiny units on 5 nodes, replication 1 then 2 (quorum 2), against the same jobs submitted directly: makespans, heap per finished unit, result bytes fetched per unit or in one zstd JSON",
		Run:  runBatchBench,
	})
}

// batchSize is the scenario's network and batches.
type batchSize struct {
	nodes    int // node 0 submits, the others compute
	units    int // of each batch
	parallel int // the batches', and the plain jobs' at once
	plain    int // plain jobs before the first batch and after each
}

// heapFractions are the shares of a batch's units ended at which the heap
// is sampled: from a fifth, once the orchestrator's finished jobs fill
// their 10 s, to nine tenths, before the batch drains.
var heapFractions = []float64{0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}

// Where the numbers of the plain jobs start: apart from the batches'.
const plainFrom = 1_000_000

type batchBench struct {
	c    *cluster
	size batchSize
}

func runBatchBench(ctx context.Context, o Options) (_ map[string]any, err error) {
	size := batchSize{nodes: 6, units: 10_000, parallel: jobs.DefaultParallel, plain: 3_000}
	if o.Quick {
		size = batchSize{nodes: 4, units: 50, parallel: 16, plain: 30}
	}
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = heapProfileRate
	c, err := startCluster(ctx, o, size.nodes, tinywasm.Args())
	if err != nil {
		return nil, err
	}
	defer closeInto(c, &err)
	warm := c.jobSpec()
	warm.Args = []string{"warm"}
	if err := c.warmUp(ctx, o, warm, []byte("warm\n"), 4*(size.nodes-1), runBurst); err != nil {
		return nil, err
	}
	b := &batchBench{c: c, size: size}
	res := map[string]any{"nodes": size.nodes, "computing_nodes": size.nodes - 1, "units": size.units, "parallel": size.parallel}
	before, err := b.plainPace(ctx, o, 0)
	if err != nil {
		return nil, err
	}
	for k, replication := range []int{1, 2} {
		if before, err = b.measure(ctx, o, k, replication, before, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// pace is how fast plain jobs ran: jobs a second, and the process's CPU
// time per job.
type pace struct {
	perS float64
	cpu  time.Duration
}

// measure runs batch k with replication and a quorum of as many, then
// plain jobs again, and adds the figures to res under "r<replication>_":
// the batch's against the mean of the plain paces before and after it
// (the machine's pace drifts). It returns the plain pace after.
func (b *batchBench) measure(ctx context.Context, o Options, k, replication int, before pace, res map[string]any) (pace, error) {
	spec, err := b.spec(fmt.Sprintf("units-%d", k), k*b.size.units, b.size.units, replication)
	if err != nil {
		return pace{}, err
	}
	run, err := b.run(ctx, spec)
	if err != nil {
		return pace{}, err
	}
	n := run.last.Counts
	o.Log.Info("batch done", "replication", replication, "makespan", run.took.Round(time.Millisecond), "counts", n)
	after, err := b.plainPace(ctx, o, k+1)
	if err != nil {
		return pace{}, err
	}
	p := fmt.Sprintf("r%d_", replication)
	run.figures(res, p, replication, before, after)
	return after, b.transfer(ctx, run.last.ID, n.Units, p, res)
}

// figures adds the run's figures to res under prefix p, against the mean
// of the plain paces before and after it.
func (r batchRun) figures(res map[string]any, p string, replication int, before, after pace) {
	n, rate, cpu := r.last.Counts, (before.perS+after.perS)/2, (before.cpu+after.cpu)/2
	res[p+"plain_per_s"], res[p+"plain_before_per_s"], res[p+"plain_after_per_s"] = round3(rate), round3(before.perS), round3(after.perS)
	res[p+"makespan_ms"], res[p+"units_per_s"] = ms(r.took), round3(float64(n.Units)/r.took.Seconds())
	res[p+"ratio"] = round3(r.took.Seconds() / (float64(n.Units*replication) / rate))
	res[p+"plain_cpu_ms_per_job"], res[p+"cpu_ms_per_replica"] = ms(cpu), ms(r.cpu/time.Duration(n.Replicas))
	res[p+"cpu_ratio"] = round3(float64(r.cpu) / float64(n.Replicas) / float64(cpu))
	// Cores used: under the machine's cores, the run waited for something
	// else than CPU, or shared the machine.
	res[p+"cores"], res[p+"plain_cores"] = round3(r.cpu.Seconds()/r.took.Seconds()), round3(cpu.Seconds()*rate)
	res[p+"completed"], res[p+"failed"], res[p+"replicas"], res[p+"disagreed"], res[p+"late"] = n.Completed, n.Failed, n.Replicas, n.Disagreed, n.Late
	if len(r.heap) >= 2 { // a slope needs two: a small batch may end between the watch's snapshots
		res[p+"heap_per_unit_bytes"] = math.Round(slope(r.heap, func(h heapSample) uint64 { return h.Bytes }))
		res[p+"quorum_per_unit_bytes"] = math.Round(slope(r.heap, func(h heapSample) uint64 { return h.Quorum }))
	}
	res[p+"heap_samples"] = r.heap
	if n.Failed > 0 {
		res[p+"error"] = r.last.Reason
	}
}

// plainPace runs the k-th set of plain jobs.
func (b *batchBench) plainPace(ctx context.Context, o Options, k int) (pace, error) {
	plain, err := b.spec(fmt.Sprintf("plain-%d", k), plainFrom+k*b.size.plain, b.size.plain, 1)
	if err != nil {
		return pace{}, err
	}
	cpu, err := processCPU()
	if err != nil {
		return pace{}, err
	}
	took, err := runPlainJobs(ctx, b.c.req, plain, b.size.parallel)
	if err != nil {
		return pace{}, fmt.Errorf("the plain jobs: %w", err)
	}
	end, err := processCPU()
	if err != nil {
		return pace{}, err
	}
	p := pace{perS: float64(b.size.plain) / took.Seconds(), cpu: (end - cpu) / time.Duration(b.size.plain)}
	o.Log.Info("plain jobs done", "jobs", b.size.plain, "took", took.Round(time.Millisecond), "per_s", round3(p.perS), "cpu_per_job", p.cpu)
	return p, nil
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("bench: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// spec is a batch of n units numbered from from, with replication and a
// quorum of as many.
func (b *batchBench) spec(name string, from, n, replication int) (*jobs.Batch, error) {
	return jobs.ParseBatch(fmt.Appendf(nil, `
name: %s
template: {module: %s, args: ["{{unit}}"], resources: {cpu: 0.1, memory: 16MiB}, timeout: 30s}
units: {range: %d..%d}
replication: %d
quorum: %d
parallel: %d
`, name, b.c.module, from, from+n-1, replication, replication, b.size.parallel))
}

// runPlainJobs runs the units of spec as plain jobs, parallel at once, each
// submitted as one ends and followed to its end (not its output: the
// engine does not fetch its units' outputs either), and returns how long
// they took.
func runPlainJobs(ctx context.Context, svc service, spec *jobs.Batch, parallel int) (time.Duration, error) {
	began := time.Now()
	err := forEach(spec.Len(), parallel, func(i int) error { return runPlain(ctx, svc, spec, i) })
	return time.Since(began), err
}

// forEach calls f(i) for every i below n from parallel goroutines, each
// taking the next i as its call returns, until a call fails; it returns
// the first failure.
func forEach(n, parallel int, f func(i int) error) error {
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range min(n, parallel) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // the others take no more
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// runPlain runs unit i of spec as a job and follows it to its end.
func runPlain(ctx context.Context, svc service, spec *jobs.Batch, i int) error {
	s, _, err := spec.Unit(i)
	if err != nil {
		return err
	}
	job, err := svc.SubmitJob(ctx, s)
	if err != nil {
		return fmt.Errorf("bench: submitting a job: %w", err)
	}
	if job, err = follow(ctx, svc, job, func(api.Job) {}); err != nil {
		return err
	}
	if job.Result == nil || job.Result.ExitCode != 0 {
		return fmt.Errorf("%w: job %s completed without success: %+v", ErrJob, job.ID, job.Result)
	}
	return nil
}

// batchRun is one batch measured: its makespan, the process's CPU time
// meanwhile (but for the heap's samples), its last state, and the heap
// sampled as its units ended.
type batchRun struct {
	took time.Duration
	cpu  time.Duration
	last api.Batch
	heap []heapSample
}

// run submits spec on the requester and watches it to its end, sampling
// the heap on the way.
func (b *batchBench) run(ctx context.Context, spec *jobs.Batch) (batchRun, error) {
	var r batchRun
	from, err := processCPU() // moved on by each heap sample's own CPU time
	if err != nil {
		return r, err
	}
	began := time.Now()
	sub, err := b.c.req.SubmitBatch(ctx, spec)
	if err != nil {
		return r, fmt.Errorf("bench: submitting a batch: %w", err)
	}
	// The watch's own context, ended with it: the engine keeps a watched
	// batch's state until the watcher's context ends.
	watch, stop := context.WithCancel(ctx)
	defer stop()
	events, err := b.c.req.WatchBatch(watch, sub.ID)
	if err != nil {
		return r, fmt.Errorf("bench: watching batch %s: %w", sub.ID, err)
	}
	next := 0
	for r.last = range events {
		ended := r.last.Counts.Completed + r.last.Counts.Failed
		due := next
		for due < len(heapFractions) && float64(ended) >= heapFractions[due]*float64(spec.Len()) {
			due++
		}
		if due > next { // one sample for the fractions passed at once
			h, err := sampleHeap(ended)
			if err != nil {
				return r, err
			}
			r.heap, from, next = append(r.heap, h), from+h.cpu, due
		}
	}
	r.took = time.Since(began)
	end, err := processCPU()
	if err != nil {
		return r, err
	}
	r.cpu = end - from
	if r.last.State != api.BatchCompleted {
		return r, errors.Join(fmt.Errorf("%w: batch %s is %s %q, its watch ended", ErrBatch, sub.ID, r.last.State, r.last.Reason), ctx.Err())
	}
	return r, nil
}

// fetchSample is how many units' outputs transfer fetches through the
// requester, one at a time, to time one fetch per unit as a client would
// make it.
const fetchSample = 20

// transfer reads the records of the n units of batch id (one call) and
// every unit's output, checks each output, and adds to res under prefix p
// the bytes of the two ways to carry them to a client: one request per
// record and per output, or one JSON of them all, compressed with zstd;
// and where the replicas ran, and how many failed.
func (b *batchBench) transfer(ctx context.Context, id string, n int, p string, res map[string]any) error {
	units, err := b.c.req.BatchUnits(ctx, id, 0, n)
	if err != nil {
		return fmt.Errorf("bench: batch %s's units: %w", id, err)
	}
	outputs, err := b.outputs(ctx, units)
	if err != nil {
		return err
	}
	if res[p+"fetch_output_p50_ms"], err = b.fetchOne(ctx, units); err != nil {
		return err
	}
	type withOutput struct {
		api.BatchUnit
		Output []byte `json:"output"`
	}
	records, outBytes, all := 0, 0, make([]withOutput, len(units))
	for i, u := range units {
		one, err := json.Marshal([]api.BatchUnit{u}) // as BatchUnits(id, i, 1) returns it
		if err != nil {
			return err
		}
		records, outBytes, all[i] = records+len(one), outBytes+len(outputs[i]), withOutput{u, outputs[i]}
	}
	recordsJSON, err := json.Marshal(units)
	if err != nil {
		return err
	}
	allJSON, err := json.Marshal(all)
	if err != nil {
		return err
	}
	zRecords, err := zstdSize(recordsJSON)
	if err != nil {
		return err
	}
	zAll, err := zstdSize(allJSON)
	if err != nil {
		return err
	}
	res[p+"unit_records_bytes"], res[p+"outputs_bytes"] = records, outBytes
	res[p+"records_json_bytes"], res[p+"records_zstd_bytes"], res[p+"with_outputs_zstd_bytes"] = len(recordsJSON), zRecords, zAll
	perNode, failed, reason := b.replicas(units)
	res[p+"replicas_per_node"], res[p+"replicas_failed"] = perNode, failed
	if failed > 0 {
		res[p+"replica_failure"] = reason
	}
	return nil
}

// outputs reads every unit's stdout from the node that returned its
// verdict (in this process), parallel at once, and checks that it is the
// unit's number on a line.
func (b *batchBench) outputs(ctx context.Context, units []api.BatchUnit) ([][]byte, error) {
	out := make([][]byte, len(units))
	return out, forEach(len(units), b.size.parallel, func(i int) error {
		u := units[i]
		node := b.c.Index(u.Node)
		if u.Result == nil || node < 0 {
			return fmt.Errorf("%w: unit %d is %s, without a result from a node of the network", ErrBatch, u.Index, u.State)
		}
		data, err := b.c.Nodes[node].GetBlob(ctx, u.Result.Stdout)
		if err != nil {
			return fmt.Errorf("%w: unit %d: reading its output: %w", ErrBatch, u.Index, err)
		}
		if want := u.Value + "\n"; string(data) != want {
			return fmt.Errorf("%w: unit %d printed %q, want %q", ErrBatch, u.Index, data, want)
		}
		out[i] = data
		return nil
	})
}

// fetchOne fetches the outputs of fetchSample units spread over the
// batch through the requester, one at a time, and returns the median
// time of a fetch.
func (b *batchBench) fetchOne(ctx context.Context, units []api.BatchUnit) (float64, error) {
	var took []time.Duration
	for i := 0; i < len(units); i += max(1, len(units)/fetchSample) {
		began := time.Now()
		if _, err := b.c.req.GetBlob(ctx, units[i].Result.Stdout); err != nil {
			return 0, fmt.Errorf("%w: unit %d: fetching its output: %w", ErrBatch, units[i].Index, err)
		}
		took = append(took, time.Since(began))
	}
	return newDist(took).pct(50), nil
}

// replicas counts the replicas each node ran, by its index, and those
// that failed, with the last one's reason.
func (b *batchBench) replicas(units []api.BatchUnit) (perNode []int, failed int, reason string) {
	perNode = make([]int, len(b.c.Nodes))
	for _, u := range units {
		for _, r := range u.Replicas {
			if i := b.c.Index(r.Node); i >= 0 {
				perNode[i]++
			}
			if r.State == quorum.Failed {
				failed, reason = failed+1, r.Reason
			}
		}
	}
	return perNode, failed, reason
}

// zstdSize is the size of data compressed with zstd at its default level.
func zstdSize(data []byte) (int, error) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return 0, err
	}
	defer enc.Close()
	return len(enc.EncodeAll(data, nil)), nil
}

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// The flow scenario asks what the workflow engine adds to the jobs it
// runs. A flow of two steps: fan, a fan-out of 1,000 tiny Wasm jobs
// (for_each over a list, each printing its item: tinywasm.Args), and
// fanin, whose inputs take every fan instance's stdout (1,000 files under
// /inputs/all/) and count their words (examples/wordcount's count; with
// Options.Quick, the tiny module: a Go program takes seconds to compile
// under the race detector). Measured on one network of real nodes: node
// 0 submits, 4 nodes compute, and node 1, a second requester, idles until
// the last measure:
//
//   - makespan: the flow submitted to node 0, until its end event (the
//     first run's, and every run's);
//   - jobs: the same 1,001 jobs submitted directly (SubmitJob, then
//     WatchJob to its end, at most the flow's parallel at once; then the
//     fan-in with the fan jobs' outputs as its input files), over other
//     items of the same lengths, so that no output is already where an
//     earlier run left it (the first run's, and every run's);
//   - overhead per step: (makespan - jobs) / the 1,001 instances. The
//     network's own pace moves by a factor of three from one minute to
//     the next on a shared machine, so the scenario runs the pair
//     (flow, jobs) five times, each time over new items, alternating
//     which goes first, and reports the median of the pairs' overheads;
//   - the cached rerun: the first flow submitted again, every instance
//     served from the cache: the requester submits no job (the first
//     rerun's time, and the median of five);
//   - where the first flow's instances ran: each step's per node;
//   - data locality: chains whose inputs weigh a megabyte each, with and
//     without locality ranking (node 1's ranking leaves it out; see
//     flowchains.go).
//
// Every node compiled both modules before anything is timed. The fan-in's
// output is checked: every item, once.

func init() {
	register(Scenario{
		Name: "flow",
		What: "a flow of 1,000 tiny Wasm jobs (for_each) and a fan-in of their 1,000 outputs on 4 computing nodes, against the same jobs submitted directly; then from the cache; then 32 chains of a 1 MiB output and its reader, with and without locality ranking: bytes moved",
		Run:  runFlowBench,
	})
}

// flowSize is the scenario's network and flow.
type flowSize struct {
	nodes      int // node 0 and node 1 submit, the others compute
	items      int // the fan-out's instances
	parallel   int // the flow's
	pairs      int // runs of the flow and of its jobs
	reruns     int // runs of the first flow again, from the cache
	chains     int // of the locality measure
	chainBytes int // what each chain's first step writes
}

// flowRequesters are the nodes of the scenario that offer no compute.
const flowRequesters = 2

// flowBench is the scenario's state: its network and the fan-in's
// program.
type flowBench struct {
	c        *cluster
	size     flowSize
	fanin    faninProgram
	faninCID string // the fan-in's module, held by the requesters
	chains   chainsSetup
}

// faninProgram is the module of the fan-in step and what it prints for a
// fan-out over items.
type faninProgram struct {
	module []byte
	args   []string
	want   func(items []string) []byte
	// warmEvery: every computing node must run it once before the
	// scenario measures (a compile of seconds); else one run will do.
	warmEvery bool
}

func runFlowBench(ctx context.Context, o Options) (_ map[string]any, err error) {
	size := flowSize{nodes: 6, items: 1000, parallel: jobs.DefaultParallel, pairs: 5, reruns: 5, chains: 32, chainBytes: 1 << 20}
	if o.Quick {
		size = flowSize{nodes: 4, items: 50, parallel: 16, pairs: 1, reruns: 2, chains: 4, chainBytes: 64 << 10}
	}
	fanin, err := faninFor(o.Quick)
	if err != nil {
		return nil, err
	}
	c, err := startClusterWith(ctx, o, size.nodes, flowRequesters, tinywasm.Args(), func(i int) []dms.Option {
		if i == 1 {
			return []dms.Option{dms.WithLocalityWeight(0)} // its ranking leaves locality out
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer closeInto(c, &err)
	b := &flowBench{c: c, size: size, fanin: fanin}
	if err := b.warmUp(ctx, o); err != nil {
		return nil, err
	}
	return b.measure(ctx, o)
}

// measure runs the pairs, the first flow again, and the chains on node 0
// and node 1.
func (b *flowBench) measure(ctx context.Context, o Options) (map[string]any, error) {
	flows, direct, err := b.pairs(ctx, o)
	if err != nil {
		return nil, err
	}
	reruns, ran, err := b.reruns(ctx)
	if err != nil {
		return nil, fmt.Errorf("the flow again: %w", err)
	}
	o.Log.Info("cached reruns done", "first", reruns[0].took.Round(time.Millisecond), "jobs", ran)
	chains, err := b.measureChains(ctx, o)
	if err != nil {
		return nil, err
	}
	res := b.figures(flows, direct)
	maps.Copy(res, chains)
	steps, hit, took := b.size.items+1, b.size.items+1, make([]time.Duration, len(reruns))
	for i, r := range reruns {
		hit, took[i] = min(hit, cached(r.flow)), r.took
	}
	res["cached_rerun_ms"], res["cached_reruns_ms"], res["cached_rerun_median_ms"] = ms(took[0]), msList(took), newDist(took).pct(50)
	res["rerun_jobs"], res["rerun_cached"] = ran, hit
	if ran != 0 || hit != steps {
		res["error"] = fmt.Sprintf("the reruns submitted %d jobs, and one took %d of %d instances from the cache: want none and all", ran, hit, steps)
	}
	return res, nil
}

// reruns submits the first pair's flow again, size.reruns times, and
// counts the jobs the requester submitted meanwhile.
func (b *flowBench) reruns(ctx context.Context) ([]flowRun, int, error) {
	before, err := b.c.req.ListJobs(ctx)
	if err != nil {
		return nil, 0, err
	}
	var runs []flowRun
	for range b.size.reruns {
		r, err := b.runFlow(ctx, b.c.req, items("f0", b.size.items))
		if err != nil {
			return nil, 0, err
		}
		runs = append(runs, r)
	}
	after, err := b.c.req.ListJobs(ctx)
	return runs, len(after) - len(before), err
}

// pairs runs the flow and its jobs size.pairs times, over new items each
// time, the flow first in the first pair and every other one.
func (b *flowBench) pairs(ctx context.Context, o Options) (flows, direct []flowRun, err error) {
	for k := range b.size.pairs {
		for _, flowNow := range []bool{k%2 == 0, k%2 != 0} {
			if flowNow {
				r, err := b.runFlow(ctx, b.c.req, items(fmt.Sprintf("f%d", k), b.size.items))
				if err != nil {
					return nil, nil, fmt.Errorf("the flow: %w", err)
				}
				o.Log.Info("flow done", "instances", b.size.items+1, "makespan", r.took.Round(time.Millisecond))
				flows = append(flows, r)
				continue
			}
			r, err := b.runJobs(ctx, items(fmt.Sprintf("j%d", k), b.size.items))
			if err != nil {
				return nil, nil, fmt.Errorf("the jobs without a flow: %w", err)
			}
			o.Log.Info("jobs done", "jobs", b.size.items+1, "took", r.took.Round(time.Millisecond))
			direct = append(direct, r)
		}
	}
	return flows, direct, nil
}

// figures sums the runs up: the first pair's times and where its flow's
// instances ran, every pair's makespans and overheads, and their median.
func (b *flowBench) figures(flows, direct []flowRun) map[string]any {
	steps := b.size.items + 1
	var spans, jobTimes, fanins, jobFanins []time.Duration
	var overheads []float64
	for k := range flows {
		spans, jobTimes = append(spans, flows[k].took), append(jobTimes, direct[k].took)
		fanins, jobFanins = append(fanins, flows[k].took-flows[k].fanDone), append(jobFanins, direct[k].took-direct[k].fanDone)
		overheads = append(overheads, round3(ms(flows[k].took-direct[k].took)/float64(steps)))
	}
	first, jobs := flows[0], direct[0]
	return map[string]any{
		"nodes": b.size.nodes, "computing_nodes": b.size.nodes - flowRequesters, "instances": steps, "parallel": b.size.parallel,
		"makespan_ms": ms(first.took), "fan_ms": ms(first.fanDone), "fanin_ms": ms(first.took - first.fanDone),
		"jobs_ms": ms(jobs.took), "jobs_fan_ms": ms(jobs.fanDone), "jobs_fanin_ms": ms(jobs.took - jobs.fanDone),
		"makespans_ms": msList(spans), "jobs_runs_ms": msList(jobTimes), "fanins_ms": msList(fanins), "jobs_fanins_ms": msList(jobFanins),
		"overhead_per_step_ms": median(overheads), "overheads_per_step_ms": overheads,
		"instances_per_node": b.perNode(first.flow),
	}
}

// median is the middle value (the mean of the two middle ones).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return round3((s[n/2-1] + s[n/2]) / 2)
}

// items are n items: prefix + "i" + 0, 1, ...: words of letters and
// digits, the same lengths for prefixes of the same length.
func items(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "i" + strconv.Itoa(i)
	}
	return out
}

// faninFor is examples/wordcount's count, or with quick the tiny module,
// which prints a fixed text.
func faninFor(quick bool) (faninProgram, error) {
	if quick {
		return faninProgram{module: tinywasm.Module(0, "counted\n"), want: func([]string) []byte { return []byte("counted\n") }}, nil
	}
	path, err := repoFile("examples/wordcount/wordcount.wasm")
	if err != nil {
		return faninProgram{}, err
	}
	module, err := os.ReadFile(path)
	if err != nil {
		return faninProgram{}, fmt.Errorf("bench: %w", err)
	}
	return faninProgram{module: module, args: []string{"count"}, want: wordCounts, warmEvery: true}, nil
}

// wordCounts is what wordcount count prints for files holding items, one
// each: every item (a word of letters and digits) once, sorted.
func wordCounts(items []string) []byte {
	var b bytes.Buffer
	for _, it := range slices.Sorted(slices.Values(items)) {
		fmt.Fprintf(&b, "%s\t1\n", it)
	}
	return b.Bytes()
}

// doc is the flow over items, in YAML.
func (b *flowBench) doc(items []string) ([]byte, error) {
	list, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	args, err := json.Marshal(b.fanin.args)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `name: bench-flow
parallel: %d
steps:
  fan:
    for_each: %s
    module: %s
    args: ["{{item}}"]
    resources: {cpu: 0.1, memory: 16MiB}
    timeout: 30s
    queue_timeout: 20s
  fanin:
    module: %s
    args: %s
    inputs: {all/: fan.stdout}
    resources: {cpu: 0.25, memory: 64MiB}
    timeout: 60s
    queue_timeout: 20s
`, b.size.parallel, list, b.c.module, b.faninCID, args), nil
}

// warmUp stores the fan-in's and the chains' modules and has every
// computing node run the fan's and the fan-in's: their first runs compile
// them, which is not what the scenario times. (The chains' modules are a
// few hundred bytes each: they compile in a millisecond.)
func (b *flowBench) warmUp(ctx context.Context, o Options) error {
	var err error
	if b.faninCID, err = b.putOnRequesters(ctx, b.fanin.module); err != nil {
		return err
	}
	if err = b.prepareChains(ctx); err != nil {
		return err
	}
	f, err := b.flow(items("warm", 1))
	if err != nil {
		return err
	}
	fan := *f.Step("fan").Job
	fan.Args = []string{"warm"}
	if err := b.c.warmUp(ctx, o, &fan, []byte("warm\n"), 4*(b.size.nodes-flowRequesters), runBurst); err != nil {
		return err
	}
	return b.warmFanin(ctx, o, f.Step("fanin").Job)
}

// putOnRequesters stores module on every requester and returns its CID.
func (b *flowBench) putOnRequesters(ctx context.Context, module []byte) (string, error) {
	var c string
	for _, req := range b.c.Nodes[:flowRequesters] {
		var err error
		if c, err = req.PutBlob(ctx, bytes.NewReader(module)); err != nil {
			return "", fmt.Errorf("bench: storing a module: %w", err)
		}
	}
	return c, nil
}

// warmFanin runs spec, with a small input directory, once, or with
// fanin.warmEvery in bursts of a job per computing node until every
// computing node ran it (at most 10 bursts). Each job then asks for over
// half of the smallest node's CPU, so that a node runs one at a time: the
// auction's ranking would otherwise send them all to its favourite.
func (b *flowBench) warmFanin(ctx context.Context, o Options, spec *jobs.Spec) error {
	cpu, err := b.smallestCPU(ctx)
	if err != nil {
		return err
	}
	s, err := b.withWarmInput(ctx, spec)
	if err != nil {
		return err
	}
	s.Resources.CPU = cpu * 3 / 5
	want, ran := b.size.nodes-flowRequesters, map[string]bool{}
	if !b.fanin.warmEvery {
		want = 1
	}
	for range 10 {
		for _, r := range runBurst(ctx, b.c.req, s, nil, want) {
			if r.err == nil {
				ran[r.job.Node] = true
			}
		}
		if len(ran) >= want {
			o.Log.Info("warmed up the fan-in", "nodes", len(ran))
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: the fan-in's module ran on %d of %d computing nodes in 10 bursts", ErrJob, len(ran), want)
}

// withWarmInput returns a copy of spec whose input_dir is a directory of
// one small text file, uploaded to the requester.
func (b *flowBench) withWarmInput(ctx context.Context, spec *jobs.Spec) (*jobs.Spec, error) {
	dir, err := os.MkdirTemp("", "dms-bench-flow-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "warm.txt"), []byte("warm\n"), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	s := *spec
	s.InputDir = dir
	if err := api.Upload(ctx, b.c.req, &s); err != nil {
		return nil, fmt.Errorf("bench: uploading the fan-in's warm-up input: %w", err)
	}
	return &s, nil
}

// smallestCPU is the least CPU a computing node offers.
func (b *flowBench) smallestCPU(ctx context.Context) (types.MilliCPU, error) {
	var least types.MilliCPU
	for _, d := range b.c.Nodes[flowRequesters:] {
		info, err := d.Node(ctx)
		if err != nil {
			return 0, fmt.Errorf("bench: %w", err)
		}
		if least == 0 || info.Registered.CPU < least {
			least = info.Registered.CPU
		}
	}
	return least, nil
}

// flow parses the flow over items.
func (b *flowBench) flow(items []string) (*jobs.Flow, error) {
	doc, err := b.doc(items)
	if err != nil {
		return nil, err
	}
	f, err := jobs.ParseFlow(doc)
	if err != nil {
		return nil, fmt.Errorf("bench: the flow: %w", err)
	}
	return f, nil
}

// flowRun is one run of the flow, or of its jobs without it.
type flowRun struct {
	flow    api.Flow      // at its end, with every instance (a flow's run only)
	took    time.Duration // from the submission to the end
	fanDone time.Duration // from the submission until every fan instance ended
}

// runFlow submits the flow over items to req and follows it to its end,
// which must be a success with the fan-in's expected output.
func (b *flowBench) runFlow(ctx context.Context, req *dms.DMS, items []string) (flowRun, error) {
	f, err := b.flow(items)
	if err != nil {
		return flowRun{}, err
	}
	start := time.Now()
	fl, err := req.SubmitFlow(ctx, f)
	if err != nil {
		return flowRun{}, fmt.Errorf("bench: submitting the flow: %w", err)
	}
	r, err := followFlow(ctx, req, fl.ID, "fan", len(items), start)
	if err != nil {
		return r, err
	}
	if r.flow.State != api.FlowCompleted {
		return r, fmt.Errorf("%w: flow %s %s: %s", ErrFlow, fl.ID, r.flow.State, r.flow.Reason)
	}
	if len(r.flow.Outputs) != 1 {
		return r, fmt.Errorf("%w: flow %s answered %d outputs, want the fan-in's stdout", ErrFlow, fl.ID, len(r.flow.Outputs))
	}
	return r, b.checkOutput(ctx, req, r.flow.Outputs[0].CID, items)
}

// checkOutput fetches the fan-in's stdout and checks it.
func (b *flowBench) checkOutput(ctx context.Context, req *dms.DMS, c string, items []string) error {
	out, err := req.GetBlob(ctx, c)
	if err != nil {
		return fmt.Errorf("bench: fetching the fan-in's output: %w", err)
	}
	if want := b.fanin.want(items); !bytes.Equal(out, want) {
		return fmt.Errorf("%w: the fan-in printed %d bytes (%.60q), want %d (%.60q)", ErrJob, len(out), out, len(want), want)
	}
	return nil
}

// followFlow watches flow id until it ends, noting when the n instances
// of step fan have all ended; times count from start.
func followFlow(ctx context.Context, d *dms.DMS, id, fan string, n int, start time.Time) (flowRun, error) {
	var r flowRun
	ended := 0
	for ctx.Err() == nil {
		events, err := d.WatchFlow(ctx, id)
		if err != nil {
			return r, fmt.Errorf("bench: watching flow %s: %w", id, err)
		}
		for ev := range events {
			switch {
			case ev.Flow != nil && api.FlowEnded(ev.Flow.State):
				r.flow, r.took = *ev.Flow, time.Since(start)
				if r.fanDone == 0 {
					r.fanDone = r.took
				}
				return r, nil
			case ev.Flow != nil: // a watch's first event: the flow as it is
				ended = endedOf(*ev.Flow, fan)
			case ev.Step == fan && ev.Instance != nil && api.FlowEnded(ev.Instance.State):
				ended++
			}
			if ended >= n && r.fanDone == 0 {
				r.fanDone = time.Since(start)
			}
		}
	}
	return r, fmt.Errorf("bench: flow %s did not end: %w", id, ctx.Err())
}

// endedOf counts the instances of step name that ended.
func endedOf(f api.Flow, name string) int {
	c := step(f, name).Counts
	return c.Completed + c.Failed + c.Cancelled
}

// step returns f's step called name (the zero step if none).
func step(f api.Flow, name string) api.FlowStep {
	for _, s := range f.Steps {
		if s.Name == name {
			return s
		}
	}
	return api.FlowStep{}
}

// perNode counts each step's instances by the node, by its index in the
// network, that ran them (an instance served from the cache ran nowhere).
func (b *flowBench) perNode(f api.Flow) map[string][]int {
	out := make(map[string][]int, len(f.Steps))
	for _, s := range f.Steps {
		counts := make([]int, len(b.c.Nodes))
		for _, in := range s.Instances {
			if i := b.c.Index(in.Node); i >= 0 && !in.Cached {
				counts[i]++
			}
		}
		out[s.Name] = counts
	}
	return out
}

// cached counts the instances of f served from the cache, without a job.
func cached(f api.Flow) int {
	n := 0
	for _, s := range f.Steps {
		for _, in := range s.Instances {
			if in.Cached && in.JobID == "" {
				n++
			}
		}
	}
	return n
}

// runJobs runs the flow's jobs over items without the flow: the fan
// instances' specs as the planner makes them, at most parallel at once,
// then the fan-in's with their stdouts as its input files.
func (b *flowBench) runJobs(ctx context.Context, items []string) (flowRun, error) {
	f, err := b.flow(items)
	if err != nil {
		return flowRun{}, err
	}
	var r flowRun
	start := time.Now()
	fan, err := b.runPool(ctx, f.Step("fan").Job, items)
	if err != nil {
		return r, err
	}
	r.fanDone = time.Since(start)
	spec := *f.Step("fanin").Job
	spec.InputFiles = make([]types.InputFile, len(fan))
	for i, j := range fan {
		c := j.Result.Stdout
		spec.InputFiles[i] = types.InputFile{Path: "all/" + strconv.Itoa(i), CID: c, Size: j.Result.Sizes[c], From: []string{j.Node}}
	}
	job, err := b.c.req.SubmitJob(ctx, &spec)
	if err != nil {
		return r, fmt.Errorf("bench: submitting the fan-in: %w", err)
	}
	if job, err = follow(ctx, b.c.req, job, func(api.Job) {}); err != nil {
		return r, err
	}
	r.took = time.Since(start)
	if job.Result.ExitCode != 0 {
		return r, fmt.Errorf("%w: the fan-in job %s exited with code %d", ErrJob, job.ID, job.Result.ExitCode)
	}
	return r, b.checkOutput(ctx, b.c.req, job.Result.Stdout, items)
}

// runPool runs a job of spec per item (its args the item, as a fan
// instance's), parallel at once, and returns them completed, in order.
func (b *flowBench) runPool(ctx context.Context, spec *jobs.Spec, items []string) ([]api.Job, error) {
	out := make([]api.Job, len(items))
	errs := make([]error, len(items))
	next := make(chan int, len(items))
	for i := range items {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range b.size.parallel {
		wg.Go(func() {
			for i := range next {
				out[i], errs[i] = b.runFanJob(ctx, spec, i, items[i])
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// runFanJob runs the fan job of item i (the spec the planner makes for
// instance i) and follows it to its successful end.
func (b *flowBench) runFanJob(ctx context.Context, spec *jobs.Spec, i int, item string) (api.Job, error) {
	s := *spec
	s.Name, s.Args = "fan-"+strconv.Itoa(i), []string{item}
	job, err := b.c.req.SubmitJob(ctx, &s)
	if err != nil {
		return job, fmt.Errorf("bench: submitting a fan job: %w", err)
	}
	if job, err = follow(ctx, b.c.req, job, func(api.Job) {}); err != nil {
		return job, err
	}
	if job.Result.ExitCode != 0 {
		return job, fmt.Errorf("%w: job %s exited with code %d", ErrJob, job.ID, job.Result.ExitCode)
	}
	return job, nil
}

package dms

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator/flow"
	"github.com/opendms/dms/types"
)

// Records of flows: the flow (its spec and state), one record per
// instance (written as it changes, so a 1,000-instance fan-out writes each
// once per change, not the whole flow), and the result cache.
const (
	flowPrefix  = "flow/"      // flow/<id>
	instPrefix  = "flowi/"     // flowi/<flow id>/<step>/<index, 6 digits>
	cachePrefix = "flowcache/" // flowcache/<cache key>: a flow.Outcome
	// sharedPrefix records when this node last published the record of a
	// result it ran (sharedcache.go).
	sharedPrefix = "flowshared/" // flowshared/<cache key>: a time
)

type flowRecord struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Spec      json.RawMessage `json:"spec"`
	State     string          `json:"state"`
	Reason    string          `json:"reason,omitempty"`
	Outputs   []api.Output    `json:"outputs,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// flowRefs are the blobs a flow record's steps run from while the flow
// runs, for the collector; none once it ended.
func flowRefs(raw []byte) ([]string, error) {
	var rec flowRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	if rec.State != api.FlowRunning {
		return nil, nil
	}
	f, err := jobs.ParseFlow(rec.Spec)
	if err != nil {
		return nil, err
	}
	return f.Blobs(), nil
}

type instRecord struct {
	Step string `json:"step"`
	api.FlowInstance
}

func instKey(flowID, step string, index int) string {
	return fmt.Sprintf("%s%s/%s/%06d", instPrefix, flowID, step, index)
}

// flows runs this node's workflows: one goroutine per unfinished flow
// owns its Plan; instances run on goroutines of their own and report to it.
type flows struct {
	d    *DMS
	mu   sync.Mutex
	runs map[string]*flowRun // the unfinished flows
}

// flowRun is one flow being run.
type flowRun struct {
	fl     *flows
	rec    flowRecord
	spec   *jobs.Flow
	plan   *flow.Plan
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu   sync.Mutex // guards rec's state, inst and subs
	inst map[string][]api.FlowInstance
	subs map[chan api.FlowEvent]func() bool
}

// errFlowCancelled is the cause of a flow's context when its submitter
// cancels it.
var errFlowCancelled = errors.New("cancelled by its submitter")

// SubmitFlow validates and starts a flow whose local files were uploaded.
func (d *DMS) SubmitFlow(ctx context.Context, f *jobs.Flow) (api.Flow, error) {
	if err := d.running(); err != nil {
		return api.Flow{}, err
	}
	spec, err := json.Marshal(f)
	if err != nil {
		return api.Flow{}, err
	}
	// Read back: the flow is what its JSON says, as after a restart.
	f, err = jobs.ParseFlow(spec)
	if err != nil {
		return api.Flow{}, err
	}
	if err := d.checkFlowBlobs(ctx, f); err != nil {
		return api.Flow{}, err
	}
	now := time.Now().UTC()
	rec := flowRecord{ID: newID("f-"), Name: f.Name, Spec: spec, State: api.FlowRunning, CreatedAt: now, UpdatedAt: now}
	if err := d.db.Put(flowPrefix+rec.ID, rec); err != nil {
		return api.Flow{}, fmt.Errorf("dms: saving flow: %w", err)
	}
	r, err := d.flows.start(rec, f, nil)
	if err != nil {
		return api.Flow{}, err
	}
	return r.snapshot(false), nil
}

// checkFlowBlobs refuses a flow whose modules or for_each files are local
// paths (not uploaded) or blobs this node cannot find.
func (d *DMS) checkFlowBlobs(ctx context.Context, f *jobs.Flow) error {
	for _, s := range f.Steps {
		if s.ForEach != nil && s.ForEach.Dir != "" {
			return fmt.Errorf("%w: steps.%s.for_each: directory %q was not uploaded (api.UploadFlow turns it into files)", api.ErrBadRequest, s.Name, s.ForEach.Dir)
		}
		if s.Job == nil {
			continue
		}
		if _, err := d.task(ctx, s.Job); err != nil {
			return fmt.Errorf("steps.%s: %w", s.Name, err)
		}
	}
	return nil
}

// newID names a flow ("f-...") or a batch ("b-..."): 64 random bits.
func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// start runs a flow; prior holds the instances a previous run of this
// node recorded (nil for a new flow).
func (fl *flows) start(rec flowRecord, f *jobs.Flow, prior map[string]api.FlowInstance) (*flowRun, error) {
	plan, err := flow.New(f)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(fl.d.ctx)
	r := &flowRun{fl: fl, rec: rec, spec: f, plan: plan, cancel: cancel, done: make(chan struct{}),
		inst: map[string][]api.FlowInstance{}, subs: map[chan api.FlowEvent]func() bool{}}
	fl.mu.Lock()
	fl.runs[rec.ID] = r
	fl.mu.Unlock()
	fl.d.goDo(func(context.Context) {
		defer close(r.done)
		if prior != nil {
			fl.d.awaitNetwork(ctx, resumeWait)
		}
		r.loop(ctx, prior)
	})
	return r, nil
}

// resumeWait bounds how long a flow resumed at start waits for the node
// to hear of peers that take bid requests: its jobs would otherwise be
// auctioned to nobody, and fail, while the node is still joining.
const resumeWait = 10 * time.Second

// awaitNetwork waits, at most limit, until some peer takes bid requests.
func (d *DMS) awaitNetwork(ctx context.Context, limit time.Duration) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for d.host.TopicPeers() == 0 {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// finished is an instance's end, reported to its flow's loop.
type finished struct {
	t   flow.Task
	out flow.Outcome
	err error
}

// loop runs the flow to its end: it starts ready instances (at most
// Parallel at once), records their ends and starts what they made ready.
func (r *flowRun) loop(ctx context.Context, prior map[string]api.FlowInstance) {
	ends := make(chan finished)
	var queue []flow.Task
	running := 0
	fail := ""
	failWith := func(reason string) {
		if fail == "" && ctx.Err() == nil {
			fail = reason
			r.cancel(errors.New(fail)) // stop the instances still running
		}
	}
	for {
		if why := r.plan.Failed(); why != "" {
			failWith(why)
		}
		if fail == "" && ctx.Err() == nil {
			for fresh := r.plan.Start(); len(fresh) > 0; fresh = r.plan.Start() {
				for _, t := range fresh {
					// An instance a previous run finished is not run again.
					if p, ok := prior[priorKey(t.Step, t.Index)]; ok && p.State == api.FlowCompleted && p.Result != nil {
						r.set(t, p, false)
						if _, err := r.plan.Finish(t.Step, t.Index, flow.Outcome{Result: p.Result, Node: p.Node, Cached: p.Cached, CachedFrom: p.CachedFrom}); err != nil {
							failWith(err.Error())
						}
						continue
					}
					r.set(t, api.FlowInstance{Index: t.Index, Key: t.Key, State: api.FlowPending}, false)
					queue = append(queue, t)
				}
			}
			for running < r.spec.Parallel && len(queue) > 0 {
				t := queue[0]
				queue = queue[1:]
				running++
				job := prior[priorKey(t.Step, t.Index)].JobID
				r.fl.d.goDo(func(context.Context) {
					out, err := r.exec(ctx, t, job)
					if err == nil {
						r.keep(t, out)
					}
					ends <- finished{t: t, out: out, err: err}
				})
			}
		}
		if running == 0 {
			r.end(ctx, fail, queue)
			return
		}
		e := <-ends
		running--
		if r.fl.d.ctx.Err() != nil {
			continue // the node is closing: the records stay as they are, for the restart
		}
		if e.err != nil {
			state := api.FlowFailed
			if ctx.Err() != nil {
				state = api.FlowCancelled
			}
			r.set(e.t, api.FlowInstance{Index: e.t.Index, Key: e.t.Key, State: state, Reason: e.err.Error(),
				JobID: r.jobOf(e.t)}, true)
			failWith(fmt.Sprintf("step %s%s: %v", e.t.Step, keyLabel(e.t), e.err))
			continue
		}
		r.set(e.t, completed(e.t, r.jobOf(e.t), e.out), false) // keep saved it
		if _, err := r.plan.Finish(e.t.Step, e.t.Index, e.out); err != nil {
			failWith(err.Error())
		}
	}
}

func completed(t flow.Task, job string, out flow.Outcome) api.FlowInstance {
	return api.FlowInstance{Index: t.Index, Key: t.Key, State: api.FlowCompleted, JobID: job,
		Node: out.Node, Cached: out.Cached, CachedFrom: out.CachedFrom, Result: out.Result}
}

// keep saves a succeeded instance's record, and its result in the cache
// (one commit), from the instance's own goroutine: the loop, which every
// instance's end passes through, does no write of its own for them (two
// badger commits per instance there bounded a large fan-out's pace). A
// result this node ran is shared too, when the node shares.
func (r *flowRun) keep(t flow.Task, out flow.Outcome) {
	put := map[string]any{instKey(r.rec.ID, t.Step, t.Index): instRecord{Step: t.Step, FlowInstance: completed(t, r.jobOf(t), out)}}
	ran := t.CacheKey != "" && !out.Cached
	if ran {
		put[cachePrefix+t.CacheKey] = out
	}
	if err := r.fl.d.db.PutAll(put); err != nil {
		r.fl.d.log.Error("saving a flow instance", "flow", r.rec.ID, "step", t.Step, "err", err)
	}
	if ran {
		r.fl.d.shared.publish(r.rec.ID, t.Step, t.CacheKey, out)
	}
}

// priorKey names an instance in the records a resumed flow starts from.
func priorKey(step string, index int) string { return fmt.Sprintf("%s/%d", step, index) }

func keyLabel(t flow.Task) string {
	if t.Key == "" {
		return ""
	}
	return " [" + t.Key + "]"
}

// end records how the flow ended: completed, failed (fail) or cancelled;
// queued instances and steps never started are skipped.
func (r *flowRun) end(ctx context.Context, fail string, queue []flow.Task) {
	for _, t := range queue {
		r.set(t, api.FlowInstance{Index: t.Index, Key: t.Key, State: api.FlowSkipped}, true)
	}
	state, reason := api.FlowCompleted, ""
	switch {
	case errors.Is(context.Cause(ctx), errFlowCancelled):
		state, reason = api.FlowCancelled, errFlowCancelled.Error()
	case fail != "":
		state, reason = api.FlowFailed, fail
	case ctx.Err() != nil: // the node is closing: the flow resumes when it starts again
		r.closeWatchers()
		return
	case !r.plan.Done():
		state, reason = api.FlowFailed, "flow: steps left that can never start"
	}
	var outs []api.Output
	if state == api.FlowCompleted {
		files, err := r.plan.Outputs()
		if err != nil {
			state, reason = api.FlowFailed, err.Error()
		}
		for _, f := range files {
			o := api.Output{Name: f.Path, CID: f.CID, Size: f.Size}
			if len(f.From) > 0 {
				o.Node = f.From[0]
			}
			outs = append(outs, o)
		}
	}
	r.mu.Lock()
	r.rec.State, r.rec.Reason, r.rec.Outputs, r.rec.UpdatedAt = state, reason, outs, time.Now().UTC()
	rec := r.rec
	r.mu.Unlock()
	if err := r.fl.d.db.Put(flowPrefix+rec.ID, rec); err != nil {
		r.fl.d.log.Error("saving a flow's end", "flow", rec.ID, "err", err)
	}
	snap := r.snapshot(true)
	r.publish(api.FlowEvent{Flow: &snap, State: state, Reason: reason, At: rec.UpdatedAt})
	r.closeWatchers()
	r.fl.mu.Lock()
	delete(r.fl.runs, rec.ID)
	r.fl.mu.Unlock()
}

// closeWatchers ends every watch of the flow; later ones read the record.
func (r *flowRun) closeWatchers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch, stop := range r.subs {
		stop() // the watch's context no longer holds the run
		close(ch)
	}
	r.subs = nil
}

func (r *flowRun) jobOf(t flow.Task) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in := r.inst[t.Step]; t.Index < len(in) {
		return in[t.Index].JobID
	}
	return ""
}

// set records an instance's new state, persisting it when save (pending
// states are not: a restarted flow derives them again).
func (r *flowRun) set(t flow.Task, in api.FlowInstance, save bool) {
	r.mu.Lock()
	list := r.inst[t.Step]
	if t.Index >= len(list) {
		list = append(list, make([]api.FlowInstance, t.Index+1-len(list))...)
	}
	list[t.Index] = in
	r.inst[t.Step] = list
	r.rec.UpdatedAt = time.Now().UTC()
	r.mu.Unlock()
	if save {
		if err := r.fl.d.db.Put(instKey(r.rec.ID, t.Step, t.Index), instRecord{Step: t.Step, FlowInstance: in}); err != nil {
			r.fl.d.log.Error("saving a flow instance", "flow", r.rec.ID, "step", t.Step, "err", err)
		}
	}
	r.publish(api.FlowEvent{Step: t.Step, Instance: &in, At: time.Now().UTC()})
}

// publish sends an event to every watcher. A watcher too slow to keep a
// full buffer is dropped (its channel closed): it reads the flow again.
func (r *flowRun) publish(ev api.FlowEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch := range r.subs {
		select {
		case ch <- ev:
		default:
			r.subs[ch]()
			close(ch)
			delete(r.subs, ch)
		}
	}
}

// exec runs one instance: from the cache, by re-attaching to the job a
// previous run started (job), or as a new job or call.
func (r *flowRun) exec(ctx context.Context, t flow.Task, job string) (flow.Outcome, error) {
	d := r.fl.d
	if t.CacheKey != "" {
		if o, ok := r.cached(ctx, t); ok {
			return o, nil
		}
	}
	for c, data := range t.Blobs {
		if _, err := d.blobs.Put(data); err != nil {
			return flow.Outcome{}, fmt.Errorf("storing item %s: %w", c, err)
		}
	}
	if t.Call != nil {
		return r.call(ctx, t)
	}
	// The job's ID is recorded before the job is submitted: a node that
	// crashes in between finds no such job when it resumes, and submits
	// it then, so no instance runs twice for a crash of its requester.
	if job != "" {
		j, err := d.GetJob(ctx, job)
		switch {
		case err == nil && j.State == types.JobCancelled:
			// Cancelled by its node's closing (a job that could not be
			// saved), not by the flow, which ended then: run it anew.
			job = ""
		case err == nil:
			return r.await(ctx, job)
		case !errors.Is(err, api.ErrNotFound):
			return flow.Outcome{}, err
		}
	}
	if job == "" {
		job = uuid.NewString()
		if t.Spec.Replicated() {
			job = newID("b-") // a batch of one unit: see replicated.go
		}
		r.set(t, api.FlowInstance{Index: t.Index, Key: t.Key, State: api.FlowRunning, JobID: job}, true)
	}
	var err error
	if t.Spec.Replicated() {
		_, err = d.submitReplicated(ctx, t.Spec, job)
	} else {
		_, err = d.submitJob(ctx, t.Spec, types.JobID(job))
	}
	if err != nil {
		return flow.Outcome{}, err
	}
	return r.await(ctx, job)
}

// cached returns the outcome of t's cache key from this node's cache, or
// else from the shared cache of a node it trusts, which it then keeps in
// its own.
func (r *flowRun) cached(ctx context.Context, t flow.Task) (flow.Outcome, bool) {
	d := r.fl.d
	var o flow.Outcome
	if ok, err := d.db.Lookup(cachePrefix+t.CacheKey, &o); err == nil && ok && o.Result != nil {
		d.shared.refresh(r.rec.ID, t.Step, t.CacheKey, o)
		o.Cached = true
		return o, true
	}
	o, ok := d.shared.lookup(ctx, t.CacheKey)
	if ok {
		if err := d.db.Put(cachePrefix+t.CacheKey, o); err != nil {
			d.log.Error("saving a shared cache entry", "flow", r.rec.ID, "step", t.Step, "err", err)
		}
	}
	return o, ok
}

// await follows a job to its end; cancelling ctx cancels the job.
func (r *flowRun) await(ctx context.Context, job string) (flow.Outcome, error) {
	d := r.fl.d
	last, err := d.followJob(ctx, job)
	switch {
	case err != nil:
		return flow.Outcome{}, err
	case last.State != types.JobCompleted || last.Result == nil:
		return flow.Outcome{}, fmt.Errorf("job %s %s: %s", job, last.State, last.Reason)
	case last.Result.ExitCode != 0:
		return flow.Outcome{}, fmt.Errorf("job %s exited with code %d%s", job, last.Result.ExitCode, d.stderrHead(ctx, last.Result))
	}
	return flow.Outcome{Result: last.Result, Node: last.Node}, nil
}

// followJob follows a job to its end and returns it; cancelling ctx
// cancels the job (unless the node is closing: the job is then left to
// the restart), and an end of the watch before the job's, the node
// closing, is ErrClosed.
func (d *DMS) followJob(ctx context.Context, job string) (api.Job, error) {
	events, err := d.WatchJob(ctx, job)
	if err != nil {
		return api.Job{}, err
	}
	var last api.Job
	for j := range events {
		last = j
	}
	if ctx.Err() != nil {
		if !last.State.Terminal() && d.ctx.Err() == nil { // the caller gave up, not the node
			if err := d.cancelJob(context.WithoutCancel(ctx), job); err != nil && !errors.Is(err, api.ErrConflict) {
				d.log.Warn("cancelling a job given up on", "job", job, "err", err)
			}
		}
		return last, context.Cause(ctx)
	}
	if !last.State.Terminal() {
		return last, fmt.Errorf("job %s: %w", job, ErrClosed)
	}
	return last, nil
}

// stderrHead quotes the start of a failed job's stderr, for its reason.
func (d *DMS) stderrHead(ctx context.Context, res *types.Result) string {
	if res.Stderr == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	data, err := d.GetBlob(ctx, res.Stderr)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(data[:min(len(data), 200)])), "\n")
	return ": " + line
}

// call makes a call step's function call on this node's gateway, as the
// step's account; the response body becomes the instance's stdout.
func (r *flowRun) call(ctx context.Context, t flow.Task) (flow.Outcome, error) {
	d := r.fl.d
	r.set(t, api.FlowInstance{Index: t.Index, Key: t.Key, State: api.FlowRunning}, true)
	if d.gw == nil {
		return flow.Outcome{}, errors.New("this node serves no gateway: a call step needs dms run --gateway")
	}
	svc, err := d.gw.As(ctx, t.Call.Account)
	if err != nil {
		return flow.Outcome{}, fmt.Errorf("account %s: %w", t.Call.Account, err)
	}
	body := []byte(t.Call.Body)
	if f := t.Call.BodyFile; f != nil {
		if body, err = d.GetBlob(ctx, f.CID); err != nil {
			return flow.Outcome{}, fmt.Errorf("fetching the body: %w", err)
		}
	}
	s := r.spec.Step(t.Step)
	var resp gateway.Response
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(s.Call.Timeout))
		resp, err = svc.Invoke(cctx, t.Call.Function, gateway.Call{Method: "POST", Body: bytes.NewReader(body)})
		cancel()
		if err == nil && resp.Status >= 400 {
			err = fmt.Errorf("%s answered %d: %s", t.Call.Function, resp.Status, strings.TrimSpace(string(resp.Body[:min(len(resp.Body), 200)])))
		}
		if err == nil || attempt >= s.Call.Retries || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return flow.Outcome{}, err
	}
	c, err := d.blobs.Put(resp.Body)
	if err != nil {
		return flow.Outcome{}, err
	}
	empty, err := d.blobs.Put(nil)
	if err != nil {
		return flow.Outcome{}, err
	}
	res := &types.Result{Stdout: c, Stderr: empty, Sizes: map[string]int64{c: int64(len(resp.Body))}}
	return flow.Outcome{Result: res, Node: d.host.ID()}, nil
}

// snapshot describes the flow; with instances when full.
func (r *flowRun) snapshot(full bool) api.Flow {
	r.mu.Lock()
	defer r.mu.Unlock()
	return describeFlow(r.rec, r.spec, r.inst, full)
}

// describeFlow builds the API's view of a flow from its record and
// instances.
func describeFlow(rec flowRecord, f *jobs.Flow, inst map[string][]api.FlowInstance, full bool) api.Flow {
	out := api.Flow{ID: rec.ID, Name: rec.Name, State: rec.State, Reason: rec.Reason, Outputs: rec.Outputs,
		CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}
	if f == nil {
		return out
	}
	if full {
		out.Spec = f
	}
	order, err := f.Graph().Sort()
	if err != nil {
		order = nil
	}
	for _, name := range order {
		s := f.Step(name)
		st := api.FlowStep{Name: name, Needs: s.Needs, Kind: "job", FanOut: s.FanOut()}
		if s.Call != nil {
			st.Kind = "call"
		}
		for _, in := range inst[name] {
			st.Counts.Add(in)
		}
		st.State = st.Counts.State(rec.State)
		if full {
			st.Instances = slices.Clone(inst[name])
		}
		out.Steps = append(out.Steps, st)
	}
	return out
}

// ListFlows returns every flow this node ran or runs, newest first,
// without instances.
func (d *DMS) ListFlows(ctx context.Context) ([]api.Flow, error) {
	var out []api.Flow
	err := d.db.Scan(flowPrefix, func(key string, v []byte) error {
		var rec flowRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			d.log.Error("unreadable flow record skipped", "key", key, "err", err)
			return nil
		}
		if r := d.flows.run(rec.ID); r != nil {
			out = append(out, r.snapshot(false))
			return nil
		}
		f, inst, err := d.loadFlow(rec)
		if err != nil {
			d.log.Error("unreadable flow skipped", "flow", rec.ID, "err", err)
			return nil
		}
		out = append(out, describeFlow(rec, f, inst, false))
		return nil
	})
	slices.SortFunc(out, func(a, b api.Flow) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, err
}

// GetFlow returns one flow with its instances.
func (d *DMS) GetFlow(ctx context.Context, id string) (api.Flow, error) {
	if r := d.flows.run(id); r != nil {
		return r.snapshot(true), nil
	}
	var rec flowRecord
	ok, err := d.db.Lookup(flowPrefix+id, &rec)
	switch {
	case err != nil:
		return api.Flow{}, err
	case !ok:
		return api.Flow{}, fmt.Errorf("%w: flow %s", api.ErrNotFound, id)
	}
	f, inst, err := d.loadFlow(rec)
	if err != nil {
		return api.Flow{}, err
	}
	return describeFlow(rec, f, inst, true), nil
}

// loadFlow reads a flow's spec and instances from the database.
func (d *DMS) loadFlow(rec flowRecord) (*jobs.Flow, map[string][]api.FlowInstance, error) {
	f, err := jobs.ParseFlow(rec.Spec)
	if err != nil {
		return nil, nil, fmt.Errorf("flow %s: stored spec: %w", rec.ID, err)
	}
	inst := map[string][]api.FlowInstance{}
	err = d.db.Scan(instPrefix+rec.ID+"/", func(key string, v []byte) error {
		var in instRecord
		if err := json.Unmarshal(v, &in); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		list := inst[in.Step]
		for len(list) <= in.Index {
			list = append(list, api.FlowInstance{Index: len(list), State: api.FlowPending})
		}
		list[in.Index] = in.FlowInstance
		inst[in.Step] = list
		return nil
	})
	return f, inst, err
}

// WatchFlow sends the flow, then its changes until it ends.
func (d *DMS) WatchFlow(ctx context.Context, id string) (<-chan api.FlowEvent, error) {
	r := d.flows.run(id)
	if r == nil {
		f, err := d.GetFlow(ctx, id)
		if err != nil {
			return nil, err
		}
		out := make(chan api.FlowEvent, 1)
		out <- api.FlowEvent{Flow: &f, State: f.State, Reason: f.Reason, At: f.UpdatedAt}
		close(out)
		return out, nil
	}
	out := make(chan api.FlowEvent, 4096)
	r.mu.Lock()
	snap := describeFlow(r.rec, r.spec, r.inst, true)
	if r.subs == nil { // ended meanwhile
		r.mu.Unlock()
		return d.WatchFlow(ctx, id)
	}
	out <- api.FlowEvent{Flow: &snap, State: snap.State, At: snap.UpdatedAt}
	watchUntil(ctx, &r.mu, &r.subs, out)
	return out, nil
}

// CancelFlow stops a running flow and its jobs.
func (d *DMS) CancelFlow(ctx context.Context, id string) error {
	r := d.flows.run(id)
	if r == nil {
		f, err := d.GetFlow(ctx, id)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: flow %s is already %s", api.ErrConflict, id, f.State)
	}
	r.cancel(errFlowCancelled)
	select {
	case <-r.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The run stays listed a moment after it ended, its end already told:
	// a flow that ended on its own was not cancelled.
	r.mu.Lock()
	state := r.rec.State
	r.mu.Unlock()
	switch state {
	case api.FlowCancelled:
		return nil
	case api.FlowRunning: // the node closed first: the flow resumes at its next start
		return ErrClosed
	}
	return fmt.Errorf("%w: flow %s is already %s", api.ErrConflict, id, state)
}

func (fl *flows) run(id string) *flowRun {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.runs[id]
}

// restoreFlows resumes every unfinished flow in the database: finished
// instances are not run again, running ones follow their jobs (which the
// orchestrator restored), the rest start.
func (d *DMS) restoreFlows() error {
	var recs []flowRecord
	err := d.db.Scan(flowPrefix, func(key string, v []byte) error {
		var rec flowRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			d.log.Error("unreadable flow record left as is", "key", key, "err", err)
			return nil
		}
		if !api.FlowEnded(rec.State) {
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dms: reading flow records: %w", err)
	}
	for _, rec := range recs {
		f, inst, err := d.loadFlow(rec)
		if err != nil {
			d.log.Error("flow not resumed", "flow", rec.ID, "err", err)
			continue
		}
		prior := map[string]api.FlowInstance{}
		for step, list := range inst {
			for _, in := range list {
				prior[priorKey(step, in.Index)] = in
			}
		}
		if _, err := d.flows.start(rec, f, prior); err != nil {
			d.log.Error("flow not resumed", "flow", rec.ID, "err", err)
			continue
		}
		d.log.Info("resumed flow", "flow", rec.ID, "instances recorded", len(prior))
	}
	return nil
}

// watchUntil adds out to a run's watchers, *subs, guarded by mu, which
// the caller holds and watchUntil releases; when ctx ends, out is removed
// and closed, unless the run closed it first (and set *subs to nil),
// calling the stop function kept with it so that ctx lets the run go.
func watchUntil[T any](ctx context.Context, mu *sync.Mutex, subs *map[chan T]func() bool, out chan T) {
	defer mu.Unlock()
	(*subs)[out] = context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := (*subs)[out]; ok {
			delete(*subs, out)
			close(out)
		}
	})
}

package dms

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/group"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator/quorum"
	"github.com/opendms/dms/types"
)

// Records of batches: the batch (its spec and state) and one record per
// unit issued, written as its replicas are issued and end.
const (
	batchPrefix = "batch/"  // batch/<id>
	unitPrefix  = "batchu/" // batchu/<batch id>/<unit, 6 digits>: a unitRecord
)

// SpotCheck is the share of a trusted node's results that adaptive
// replication checks anyway, by a second replica (BOINC checks at random
// too, so that a trusted node cannot tell which results are checked).
const SpotCheck = 0.1

type batchRecord struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Spec      json.RawMessage `json:"spec"`
	State     string          `json:"state"`
	Reason    string          `json:"reason,omitempty"`
	Counts    api.BatchCounts `json:"counts"` // as of the end; live counts come from the run
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	// Managers run the batch for this node, its submitter, which has
	// collected the units up to position Collected of their order of
	// ending; none when it runs the batch itself.
	Managers  []string `json:"managers,omitempty"`
	Collected int      `json:"collected,omitempty"`
}

// unitRecord is a unit as persisted: its replicas and verdict, and the
// results its replicas returned: all of them while it is undecided, the
// verdict's once decided.
type unitRecord struct {
	quorum.Unit
	Results map[int]*types.Result `json:"results,omitempty"`
	// Issuers names, by replica, the manager that issued each replica
	// under way (managed batches only).
	Issuers []string `json:"issuers,omitempty"`
}

// batchRefs are the blobs a batch record's units run from while the
// batch runs, for the collector; none once it ended.
func batchRefs(raw []byte) ([]string, error) {
	var rec batchRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	if rec.State != api.BatchRunning {
		return nil, nil
	}
	return specBlobs(rec.Spec)
}

// managedRefs are the blobs of a batch this node manages: it serves them
// until its submitter releases it.
func managedRefs(raw []byte) ([]string, error) {
	var rec managedRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	return specBlobs(rec.Spec)
}

func specBlobs(spec json.RawMessage) ([]string, error) {
	b, err := jobs.ParseBatch(spec)
	if err != nil {
		return nil, err
	}
	return b.Blobs(), nil
}

func unitKey(batch string, unit int) string {
	return fmt.Sprintf("%s%s/%06d", unitPrefix, batch, unit)
}

// batches runs this node's batches: one goroutine per unfinished batch
// owns its quorum.Batch; replicas run as jobs on goroutines of their own
// and report to it.
type batches struct {
	d    *DMS
	mu   sync.Mutex
	runs map[string]*batchRun // the batches this node submitted, unfinished
	// managed are the batches this node manages for their submitters.
	managed map[string]*batchRun
}

type batchRun struct {
	bs     *batches
	spec   *jobs.Batch
	cancel context.CancelCauseFunc
	done   chan struct{}
	start  time.Time
	// commit runs a command on the batch's state: applied here and its
	// units handed to w, for a batch this node runs alone.
	commit func(ctx context.Context, c batchCmd) (batchOut, error)
	// w saves the units of a batch this node runs alone; nil for a
	// managed batch, whose raft log is its record.
	w *unitWriter

	mm sync.Mutex // guards m
	m  *batchMachine
	// grp replicates m among the batch's managers, for submitter; nil for
	// a batch this node runs alone.
	grp       *group.Group
	submitter string

	mu   sync.Mutex // guards rec and subs
	rec  batchRecord
	subs map[chan api.Batch]func() bool
}

var errBatchCancelled = errors.New("cancelled by its submitter")

// publishEvery bounds how often a running batch sends its counts to its
// watchers: its replicas may end hundreds of times a second.
const publishEvery = 100 * time.Millisecond

// SubmitBatch validates and starts a batch whose local files were
// uploaded.
func (d *DMS) SubmitBatch(ctx context.Context, b *jobs.Batch) (api.Batch, error) {
	return d.submitBatch(ctx, b, newID("b-"))
}

// submitBatch submits a batch under id, so a caller that records the ID
// first (a flow's replicated step) can tell after a crash whether it was.
func (d *DMS) submitBatch(ctx context.Context, b *jobs.Batch, id string) (api.Batch, error) {
	if err := d.running(); err != nil {
		return api.Batch{}, err
	}
	spec, err := json.Marshal(b)
	if err != nil {
		return api.Batch{}, err
	}
	if b, err = jobs.ParseBatch(spec); err != nil { // the batch is what its JSON says, as after a restart
		return api.Batch{}, err
	}
	if b.Units.Dir != "" {
		return api.Batch{}, fmt.Errorf("%w: units.dir: directory %q was not uploaded (api.UploadBatch turns it into files)", api.ErrBadRequest, b.Units.Dir)
	}
	if _, err := d.task(ctx, &b.Template); err != nil {
		return api.Batch{}, fmt.Errorf("template: %w", err)
	}
	if err := d.admitAccount(ctx, &b.Template); err != nil { // one unit's worth, at least
		return api.Batch{}, fmt.Errorf("template: %w", err)
	}
	now := time.Now().UTC()
	rec := batchRecord{ID: id, Name: b.Name, Spec: spec, State: api.BatchRunning, CreatedAt: now, UpdatedAt: now,
		Counts: api.BatchCounts{Units: b.Len(), Queued: b.Len()}}
	if !b.Managers.IsZero() {
		if rec.Managers, err = d.chooseManagers(ctx, b.Managers); err != nil {
			return api.Batch{}, err
		}
		if err := d.handOff(ctx, id, spec, rec.Managers); err != nil {
			return api.Batch{}, err
		}
	}
	if err := d.db.Put(batchPrefix+rec.ID, rec); err != nil {
		return api.Batch{}, fmt.Errorf("dms: saving batch: %w", err)
	}
	if rec.Managers != nil {
		return d.batches.startCollecting(rec, b).snapshot(), nil
	}
	r, err := d.batches.start(rec, b, nil)
	if err != nil {
		return api.Batch{}, err
	}
	return r.snapshot(), nil
}

// start runs a batch from the units a previous run of this node recorded
// (nil for a new batch).
func (bs *batches) start(rec batchRecord, b *jobs.Batch, units map[int]unitRecord) (*batchRun, error) {
	m, err := newBatchMachine(b, units)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(bs.d.ctx)
	r := &batchRun{bs: bs, spec: b, m: m, cancel: cancel, done: make(chan struct{}), start: time.Now(),
		rec: rec, subs: map[chan api.Batch]func() bool{}}
	r.commit, r.w = r.applyHere, newUnitWriter(bs.d.db, bs.d.log, bs.d.goDo)
	bs.mu.Lock()
	bs.runs[rec.ID] = r
	bs.mu.Unlock()
	bs.d.goDo(func(context.Context) {
		defer close(r.done)
		if units != nil {
			bs.d.awaitNetwork(ctx, resumeWait)
		}
		r.loop(ctx)
	})
	return r, nil
}

// applyHere applies a command to the state of a batch this node runs
// alone, and hands the units it changed to the writer, in the order of
// the commands: a replica's job waits for its record (unitsSaved).
func (r *batchRun) applyHere(_ context.Context, c batchCmd) (batchOut, error) {
	r.mm.Lock()
	defer r.mm.Unlock()
	out := r.m.apply(c)
	if len(out.Units) > 0 {
		put := make(map[string]any, len(out.Units))
		for _, u := range out.Units {
			put[unitKey(r.rec.ID, u)] = r.m.unitRecord(u)
		}
		r.w.put(put)
	}
	return out, nil
}

// unitsSaved waits until the units of every command applied so far are
// durable (at once for a managed batch), or ctx ends.
func (r *batchRun) unitsSaved(ctx context.Context) error {
	if r.w == nil {
		return nil
	}
	return r.w.saved(ctx)
}

// nodesBut lists the nodes of u's replicas other than k.
func nodesBut(u quorum.Unit, k int) []string {
	var out []string
	for i, r := range u.Replicas {
		if i != k && r.Node != "" {
			out = append(out, r.Node)
		}
	}
	return out
}

// replicaEnd is how one replica's job ended, reported to the loop.
type replicaEnd struct {
	t      quorum.Ticket
	node   string
	result *types.Result
	reason string // why it failed; "" when it returned a result
}

// loop runs the batch to its end: it issues the replicas the quorum asks
// for (at most Parallel under way), and turns their ends into verdicts.
// Every replica issued runs to its end, so that each is judged: the batch
// ends when every unit ended and no replica is under way.
//
// The replicas this node issued are followed by this loop whoever issued
// them: those a previous run of the node issued and did not see end (found
// in the records after a restart, or in a managed batch's log as it is
// replayed) are adopted, re-attached to their jobs; so is one whose end
// could not be committed, which commits it again.
func (r *batchRun) loop(ctx context.Context) {
	d := r.bs.d
	ends := make(chan replicaEnd)
	under := map[[2]int]bool{} // the replicas this loop follows
	launch := func(t quorum.Ticket, resumed bool) {
		under[[2]int{t.Unit, t.Replica}] = true
		d.goDo(func(context.Context) { ends <- r.runReplica(ctx, t, resumed) })
	}
	tick := time.NewTicker(time.Second) // deadlines; strays; the counts' rate
	defer tick.Stop()
	self := d.host.ID()
	var published, adopted time.Time
	for {
		now := time.Now()
		if ctx.Err() == nil && now.Sub(adopted) >= time.Second {
			for _, t := range r.strays(self, under) {
				launch(t, true)
			}
			adopted = now
		}
		if ctx.Err() == nil && r.leading() && !r.finished() {
			r.orphanLost(ctx)
			if _, err := r.commit(ctx, batchCmd{Op: opExpire, Now: now}); err != nil {
				d.log.Error("batch", "batch", r.rec.ID, "err", err)
			}
			if free := r.spec.Parallel - len(under); free > 0 {
				out, err := r.commit(ctx, batchCmd{Op: opIssue, Limit: free, Deadline: now.Add(time.Duration(r.spec.Deadline)), Issuer: self})
				if err != nil {
					d.log.Error("batch: issuing replicas", "batch", r.rec.ID, "err", err)
				}
				for _, t := range out.Tickets {
					launch(t, false)
				}
			}
		}
		if time.Since(published) >= publishEvery {
			r.publish()
			published = time.Now()
		}
		switch {
		case len(under) > 0:
		case r.grp == nil && (r.isDone() || ctx.Err() != nil):
			r.end(ctx)
			return
		case r.grp == nil:
		case r.finished() || ctx.Err() != nil: // a managed batch, ended: kept for its submitter to collect
			return
		case r.isDone() && r.leading():
			if _, err := r.commit(ctx, batchCmd{Op: opFinish, State: api.BatchCompleted, Reason: r.failedReason()}); err != nil {
				d.log.Warn("batch: recording its end", "batch", r.rec.ID, "err", err)
			}
			continue
		}
		select {
		case e := <-ends:
			delete(under, [2]int{e.t.Unit, e.t.Replica})
			if d.ctx.Err() != nil {
				continue // the node is closing: the records stay as they are, for the restart
			}
			r.apply(ctx, e)
		case <-tick.C:
		}
	}
}

// strays lists the replicas issued by self that the loop does not follow
// (under), in order.
func (r *batchRun) strays(self string, under map[[2]int]bool) []quorum.Ticket {
	r.mm.Lock()
	defer r.mm.Unlock()
	var out []quorum.Ticket
	for k, issuer := range r.m.issuers {
		if issuer == self && !under[k] {
			out = append(out, quorum.Ticket{Unit: k[0], Replica: k[1], Avoid: nodesBut(*r.m.q.Unit(k[0]), k[1])})
		}
	}
	slices.SortFunc(out, func(a, b quorum.Ticket) int { return cmp.Or(a.Unit-b.Unit, a.Replica-b.Replica) })
	return out
}

// runReplica runs one replica as a job, named after its batch, unit and
// replica: a resumed batch re-attaches to the job a previous run started,
// or starts it if the node crashed before it could.
func (r *batchRun) runReplica(ctx context.Context, t quorum.Ticket, resumed bool) replicaEnd {
	d := r.bs.d
	end := replicaEnd{t: t}
	id := types.JobID(fmt.Sprintf("%s-%d-%d", r.rec.ID, t.Unit, t.Replica))
	submit := true
	if resumed {
		_, err := d.GetJob(ctx, string(id))
		switch {
		case err == nil:
			submit = false
		case !errors.Is(err, api.ErrNotFound):
			end.reason = err.Error()
			return end
		}
	}
	if submit {
		if err := r.unitsSaved(ctx); err != nil { // a restart must find the replica recorded as issued
			end.reason = err.Error()
			return end
		}
		spec, _, err := r.spec.Unit(t.Unit)
		if err == nil {
			_, err = d.submitJobWith(ctx, spec, id, jobPlacement{avoid: t.Avoid, spread: fmt.Sprintf("%s/%d", r.rec.ID, t.Unit)})
		}
		if err != nil {
			end.reason = err.Error()
			return end
		}
	}
	last, err := d.followJob(ctx, string(id))
	end.node = last.Node
	switch {
	case err != nil:
		end.reason = err.Error()
	case last.State != types.JobCompleted || last.Result == nil:
		end.reason = fmt.Sprintf("job %s %s: %s", id, last.State, last.Reason)
	case last.Result.ExitCode != 0:
		end.reason = fmt.Sprintf("exited with code %d%s", last.Result.ExitCode, d.stderrHead(ctx, last.Result))
	case last.Result.StdoutTruncated:
		end.reason = fmt.Sprintf("its stdout passed the output limit (%d bytes) and was cut: a cut result is not the program's", jobs.DefaultOutputLimit)
	default:
		end.result = last.Result
	}
	return end
}

// apply records a replica's end: a result goes to its unit's quorum, and
// the verdict's judgement to the reputation of the nodes it names.
func (r *batchRun) apply(ctx context.Context, e replicaEnd) {
	d := r.bs.d
	c := batchCmd{Op: opEnd, Unit: e.t.Unit, Replica: e.t.Replica, Node: e.node, Result: e.result, Reason: e.reason}
	if e.reason == "" && r.spec.Adaptive { // only adaptive replication asks (a call into the orchestrator's loop)
		c.Trusted, _ = d.orch.Trusted(ctx, e.node)
		c.Spot = c.Trusted && rand.Float64() < SpotCheck
	}
	out, err := r.commit(ctx, c)
	if err == nil && out.Err != "" {
		err = errors.New(out.Err)
	}
	if err != nil {
		d.log.Error("batch replica", "batch", r.rec.ID, "unit", e.t.Unit, "replica", e.t.Replica, "err", err)
	}
	r.judge(ctx, out.Judgement)
}

// finished reports whether a managed batch's end was committed.
func (r *batchRun) finished() bool {
	r.mm.Lock()
	defer r.mm.Unlock()
	return r.m.state != ""
}

// failedReason says how many units failed, "" when none did.
func (r *batchRun) failedReason() string {
	if c := r.counts(); c.Failed > 0 {
		return fmt.Sprintf("%d of %d units failed: no quorum within their replicas", c.Failed, c.Units)
	}
	return ""
}

func (r *batchRun) isDone() bool {
	r.mm.Lock()
	defer r.mm.Unlock()
	return r.m.q.Done()
}

// judge hands a judgement to the reputation: a node whose result
// disagreed with its unit's verdict is distrusted from now on.
func (r *batchRun) judge(ctx context.Context, j quorum.Judgement) {
	d := r.bs.d
	for _, n := range j.Agreed {
		if err := d.orch.Judge(ctx, n, true); err != nil {
			d.log.Warn("recording an agreeing result", "peer", n, "err", err)
		}
	}
	for _, n := range j.Disagreed {
		d.log.Warn("a replica's result disagreed with its unit's quorum", "batch", r.rec.ID, "unit", j.Unit, "peer", n)
		if err := d.orch.Judge(ctx, n, false); err != nil {
			d.log.Warn("recording a disagreeing result", "peer", n, "err", err)
		}
	}
}

// end records how the batch ended: completed (every unit ended, some
// perhaps failed) or cancelled. A node closing leaves it running, to
// resume.
func (r *batchRun) end(ctx context.Context) {
	d := r.bs.d
	state, reason := api.BatchCompleted, ""
	switch {
	case errors.Is(context.Cause(ctx), errBatchCancelled):
		state, reason = api.BatchCancelled, errBatchCancelled.Error()
	case ctx.Err() != nil: // the node is closing
		r.closeWatchers()
		return
	}
	if err := r.unitsSaved(d.ctx); err != nil { // the node is closing: the batch resumes from its units when it starts again
		d.log.Warn("batch: its end not recorded: the node closed before its units were written", "batch", r.rec.ID, "state", state)
		r.closeWatchers()
		return
	}
	counts := r.counts()
	if state == api.BatchCompleted {
		reason = r.failedReason()
	}
	r.mu.Lock()
	r.rec.State, r.rec.Reason, r.rec.Counts, r.rec.UpdatedAt = state, reason, counts, time.Now().UTC()
	rec := r.rec
	r.mu.Unlock()
	if err := d.db.Put(batchPrefix+rec.ID, rec); err != nil {
		d.log.Error("saving a batch's end", "batch", rec.ID, "err", err)
	}
	r.publish()
	r.closeWatchers()
	r.bs.mu.Lock()
	delete(r.bs.runs, rec.ID)
	r.bs.mu.Unlock()
}

// counts counts the units and replicas.
func (r *batchRun) counts() api.BatchCounts {
	r.mm.Lock()
	defer r.mm.Unlock()
	if r.m == nil { // collected from managers: as they counted
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.rec.Counts
	}
	t := r.m.q.Tally()
	c := api.BatchCounts{Units: r.m.q.Len(), Completed: t.Decided, Failed: t.Failed, Running: t.Running, Queued: t.Queued,
		Replicas: t.Replicas, Disagreed: t.Disagreed, Late: t.Late}
	ended := c.Completed + c.Failed
	if took := time.Since(r.start).Seconds(); took > 0 && ended > 0 {
		c.Rate = float64(ended) / took
		if left := c.Units - ended; left > 0 {
			c.ETA = time.Duration(float64(left) / c.Rate * float64(time.Second)).Round(time.Second)
		}
	}
	return c
}

// publish refreshes the live counts and sends the batch to its watchers;
// loop only. A watcher too slow to keep up misses states, never the last.
func (r *batchRun) publish() {
	c := r.counts()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.Counts = c
	snap := r.describe()
	for ch := range r.subs {
		select {
		case ch <- snap:
		default:
			select { // drop the oldest state for the newest
			case <-ch:
			default:
			}
			select {
			case ch <- snap:
			default:
			}
		}
	}
}

func (r *batchRun) closeWatchers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch, stop := range r.subs {
		stop() // the watch's context no longer holds the run
		close(ch)
	}
	r.subs = nil
}

// describe is the batch as readers see it; r.mu held.
func (r *batchRun) describe() api.Batch {
	return describeBatch(r.rec)
}

func (r *batchRun) snapshot() api.Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.describe()
}

func describeBatch(rec batchRecord) api.Batch {
	return api.Batch{ID: rec.ID, Name: rec.Name, State: rec.State, Reason: rec.Reason, Counts: rec.Counts,
		CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}
}

func (bs *batches) run(id string) *batchRun {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.runs[id]
}

// ListBatches implements api.BatchService.
func (d *DMS) ListBatches(ctx context.Context) ([]api.Batch, error) {
	var out []api.Batch
	err := d.db.Scan(batchPrefix, func(key string, v []byte) error {
		var rec batchRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			d.log.Error("unreadable batch record", "key", key, "err", err)
			return nil
		}
		if r := d.batches.run(rec.ID); r != nil {
			out = append(out, r.snapshot())
			return nil
		}
		out = append(out, describeBatch(rec))
		return nil
	})
	slices.SortFunc(out, func(a, b api.Batch) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, err
}

// GetBatch implements api.BatchService.
func (d *DMS) GetBatch(ctx context.Context, id string) (api.Batch, error) {
	var rec batchRecord
	ok, err := d.db.Lookup(batchPrefix+id, &rec)
	switch {
	case err != nil:
		return api.Batch{}, err
	case !ok:
		return api.Batch{}, fmt.Errorf("%w: batch %s", api.ErrNotFound, id)
	}
	b := describeBatch(rec)
	if r := d.batches.run(id); r != nil {
		b = r.snapshot()
	}
	spec, err := jobs.ParseBatch(rec.Spec)
	if err != nil {
		return api.Batch{}, fmt.Errorf("batch %s: its spec: %w", id, err)
	}
	b.Spec = spec
	return b, nil
}

// WatchBatch implements api.BatchService.
func (d *DMS) WatchBatch(ctx context.Context, id string) (<-chan api.Batch, error) {
	r := d.batches.run(id)
	if r == nil {
		b, err := d.GetBatch(ctx, id)
		if err != nil {
			return nil, err
		}
		out := make(chan api.Batch, 1)
		out <- b
		close(out)
		return out, nil
	}
	out := make(chan api.Batch, 1)
	r.mu.Lock()
	if r.subs == nil { // ended meanwhile: its record says how
		r.mu.Unlock()
		b, err := d.GetBatch(ctx, id)
		if err != nil {
			return nil, err
		}
		out <- b
		close(out)
		return out, nil
	}
	out <- r.describe()
	watchUntil(ctx, &r.mu, &r.subs, out)
	return out, nil
}

// CancelBatch implements api.BatchService.
func (d *DMS) CancelBatch(ctx context.Context, id string) error {
	r := d.batches.run(id)
	if r == nil {
		b, err := d.GetBatch(ctx, id)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: batch %s already %s", api.ErrConflict, id, b.State)
	}
	r.cancel(errBatchCancelled)
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// BatchUnits implements api.BatchService.
func (d *DMS) BatchUnits(ctx context.Context, id string, from, limit int) ([]api.BatchUnit, error) {
	b, err := d.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	if from < 0 || limit < 1 {
		return nil, fmt.Errorf("%w: units from %d, limit %d", api.ErrBadRequest, from, limit)
	}
	to := min(from+limit, b.Spec.Len())
	saved := map[int]unitRecord{}
	err = d.db.ScanRange(unitKey(id, from), unitKey(id, to), func(key string, v []byte) error {
		i, err := strconv.Atoi(key[strings.LastIndexByte(key, '/')+1:])
		if err != nil {
			return nil
		}
		var rec unitRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("unit %d: %w", i, err)
		}
		saved[i] = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]api.BatchUnit, 0, max(0, to-from))
	for i := from; i < to; i++ {
		_, value, err := b.Spec.Unit(i)
		if err != nil {
			return nil, err
		}
		u := api.BatchUnit{Index: i, Value: value, State: api.BatchQueued}
		if rec, ok := saved[i]; ok {
			u.Replicas, u.Failure = rec.Replicas, rec.Failure
			switch v := rec.Verdict; {
			case v != nil:
				u.State, u.Result, u.Node, u.Alone, u.Digest = api.BatchCompleted, rec.Results[v.Replica], rec.Replicas[v.Replica].Node, v.Alone, v.Digest
			case rec.Failure != "":
				u.State = api.BatchFailed
			case len(rec.Replicas) > 0:
				u.State = api.BatchRunning
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// restoreBatches resumes the batches a previous run of this node did not
// finish, from their units' records.
func (d *DMS) restoreBatches() error {
	var recs []batchRecord
	err := d.db.Scan(batchPrefix, func(key string, v []byte) error {
		var rec batchRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			d.log.Error("unreadable batch record left as is", "key", key, "err", err)
			return nil
		}
		if rec.State == api.BatchRunning {
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dms: reading batch records: %w", err)
	}
	for _, rec := range recs {
		if rec.Managers != nil {
			b, err := jobs.ParseBatch(rec.Spec)
			if err != nil {
				d.log.Error("batch not resumed", "batch", rec.ID, "err", err)
				continue
			}
			d.batches.startCollecting(rec, b)
			continue
		}
		if err := d.resumeBatch(rec); err != nil {
			d.log.Error("batch not resumed", "batch", rec.ID, "err", err)
		}
	}
	return nil
}

func (d *DMS) resumeBatch(rec batchRecord) error {
	b, err := jobs.ParseBatch(rec.Spec)
	if err != nil {
		return err
	}
	units := map[int]unitRecord{}
	err = d.db.Scan(fmt.Sprintf("%s%s/", unitPrefix, rec.ID), func(key string, v []byte) error {
		i, err := strconv.Atoi(key[strings.LastIndexByte(key, '/')+1:])
		if err != nil {
			return fmt.Errorf("unit record %s: %w", key, err)
		}
		var u unitRecord
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("unit record %s: %w", key, err)
		}
		units[i] = u
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := d.batches.start(rec, b, units); err != nil {
		return err
	}
	d.log.Info("resumed batch", "batch", rec.ID, "units recorded", len(units))
	return nil
}

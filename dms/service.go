package dms

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/jobs/docker"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

const (
	jobPrefix  = "job/"
	peerPrefix = "rep/" // rep/<peer ID>: the requester's orchestrator.PeerRecord of a peer
)

// jobStore persists the orchestrator's jobs: every change is written, so the
// database always holds each job's latest state and the spec to resume it.
// It keeps the requester's reputation of peers too (orchestrator.PeerStore).
type jobStore struct{ d *DMS }

var _ orchestrator.PeerStore = jobStore{}

// SavePeers writes the changed peer records and deletes the forgotten
// ones, in one write.
func (s jobStore) SavePeers(put []orchestrator.PeerRecord, drop []string) error {
	kvs := make(map[string]any, len(put))
	for _, rec := range put {
		kvs[peerPrefix+rec.Peer] = rec
	}
	keys := make([]string, len(drop))
	for i, p := range drop {
		keys[i] = peerPrefix + p
	}
	return s.d.db.Write(kvs, keys)
}

// loadPeers reads the reputation the requester saved; an unreadable record
// is logged and skipped (a reputation is a hint).
func (d *DMS) loadPeers() ([]orchestrator.PeerRecord, error) {
	var recs []orchestrator.PeerRecord
	err := d.db.Scan(peerPrefix, func(key string, v []byte) error {
		var rec orchestrator.PeerRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			d.log.Error("unreadable peer record skipped", "key", key, "err", err)
			return nil
		}
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dms: reading peer records: %w", err)
	}
	return recs, nil
}

// SaveJobs writes the records, and the producers of their results' blobs.
func (s jobStore) SaveJobs(recs []orchestrator.Record) error {
	kvs := make(map[string]any, len(recs))
	for _, rec := range recs {
		kvs[jobPrefix+string(rec.ID)] = rec
		indexProducers(kvs, rec.JobInfo)
	}
	return s.d.db.PutAll(kvs)
}

// restoreJobs hands the orchestrator every unfinished job in the database,
// as a restarted requester must: running jobs are watched again, pending
// ones placed. A record that cannot be read is logged and left alone; one
// that cannot be resumed ends failed, with the reason.
//
// Jobs placed or running go back to their nodes at once. Those that need
// a new auction wait, in the background and at most resumeWait, until the
// node hears of peers that take bid requests: auctioned while it is still
// joining, they would reach nobody and fail for the requester's restart.
// d.restored is closed once they are all back.
func (d *DMS) restoreJobs(ctx context.Context) error {
	var recs []orchestrator.Record
	err := d.db.Scan(jobPrefix, func(key string, v []byte) error {
		var rec orchestrator.Record
		if err := json.Unmarshal(v, &rec); err != nil {
			d.log.Error("unreadable job record left as is", "key", key, "err", err)
			return nil
		}
		if !rec.State.Terminal() {
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dms: reading job records: %w", err)
	}
	var back, later []orchestrator.Record
	for _, rec := range recs {
		if rec.Returning() {
			back = append(back, rec)
		} else {
			later = append(later, rec)
		}
	}
	d.restore(ctx, back, "placed or running")
	if len(later) == 0 {
		close(d.restored)
		return nil
	}
	d.goDo(func(ctx context.Context) {
		defer close(d.restored)
		d.awaitNetwork(ctx, resumeWait)
		d.restore(ctx, later, "to auction")
	})
	return nil
}

func (d *DMS) restore(ctx context.Context, recs []orchestrator.Record, what string) {
	if len(recs) == 0 || ctx.Err() != nil {
		return
	}
	n, err := d.orch.Restore(ctx, recs)
	if err != nil {
		d.log.Error("restoring jobs", "err", err)
	}
	d.log.Info("restored jobs", "jobs", what, "unfinished", len(recs), "resumed", n)
}

// awaitRestored waits until the jobs of a previous run are back in the
// orchestrator (restoreJobs), or ctx ends.
func (d *DMS) awaitRestored(ctx context.Context) error {
	select {
	case <-d.restored:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *DMS) running() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return ErrClosed
	case !d.started:
		return ErrNotStarted
	}
	return nil
}

// SubmitJob submits a job whose module (and input archive) are CIDs, as
// api.Upload leaves them. The blobs must be here or reachable in the network:
// nodes fetch them from this node.
func (d *DMS) SubmitJob(ctx context.Context, spec *jobs.Spec) (api.Job, error) {
	if spec.Replicated() {
		if err := d.admitAccount(ctx, spec); err != nil {
			return api.Job{}, err
		}
		return d.submitReplicated(ctx, spec, "")
	}
	id := types.JobID(uuid.NewString())
	if err := d.reserve(ctx, spec, id); err != nil {
		return api.Job{}, err
	}
	job, err := d.submitJob(ctx, spec, id)
	if err != nil {
		d.releaseHold(id)
	}
	return job, err
}

// admitAccount admits a job that bills an account of this node's gateway:
// the account must exist, and, with gateway.require_credits, have credits
// available, at least what the job may cost when it bounds its price
// (max_price x CPU x timeout, x replication). Refused, nothing is
// submitted and no provider is engaged.
func (d *DMS) admitAccount(ctx context.Context, spec *jobs.Spec) error {
	return d.admitting(spec, func(cost types.Credits) error { return d.gw.Admit(ctx, spec.Account, cost) })
}

// reserve admits job id as admitAccount does and, when it bounds what it
// may cost, holds that much of its account's credits until it ends
// (holds.go).
func (d *DMS) reserve(ctx context.Context, spec *jobs.Spec, id types.JobID) error {
	return d.admitting(spec, func(cost types.Credits) error {
		if err := d.gw.Reserve(ctx, spec.Account, holdID(id), cost, spec.Name); err != nil {
			return err
		}
		if cost > 0 {
			d.held.Store(id, struct{}{})
		}
		return nil
	})
}

func (d *DMS) admitting(spec *jobs.Spec, admit func(cost types.Credits) error) error {
	if spec.Account == "" {
		return nil
	}
	if err := d.running(); err != nil {
		return err
	}
	cost, err := maxCost(spec)
	if err == nil {
		err = admit(cost)
	}
	if errors.Is(err, api.ErrNotFound) {
		return fmt.Errorf("%w: account: %w", api.ErrBadRequest, err)
	}
	return err
}

// maxCost is the most a job may cost when its spec bounds its price and
// its time: 0 (unknown) otherwise.
func maxCost(spec *jobs.Spec) (types.Credits, error) {
	limit := spec.Constraints.MaxPrice
	if limit <= 0 || spec.Timeout <= 0 {
		return 0, nil
	}
	cost, err := types.Cost(limit, spec.Resources.CPU, time.Duration(spec.Timeout))
	if err != nil {
		return 0, err
	}
	return cost.Mul(int64(max(spec.Replication, 1)))
}

// submitJob submits a job under id ("": a new one), so a caller that
// records the ID first (a flow's instance) can tell after a crash whether
// its job was submitted.
func (d *DMS) submitJob(ctx context.Context, spec *jobs.Spec, id types.JobID) (api.Job, error) {
	return d.submitJobWith(ctx, spec, id, jobPlacement{})
}

// jobPlacement is where a batch's replica may not run: on the nodes that
// ran its unit's other replicas (avoid), nor beside the jobs of its spread
// group (orchestrator.JobSpec.Avoid, Spread).
type jobPlacement struct {
	avoid  []string
	spread string
}

func (d *DMS) submitJobWith(ctx context.Context, spec *jobs.Spec, id types.JobID, at jobPlacement) (api.Job, error) {
	if err := d.running(); err != nil {
		return api.Job{}, err
	}
	if id == "" {
		id = types.JobID(uuid.NewString()) // named here, so that its trace starts before its first auction
	}
	done := d.traces.submitted(id, spec.Name)
	job, err := d.submitTraced(ctx, spec, id, at)
	done(err)
	return job, err
}

func (d *DMS) submitTraced(ctx context.Context, spec *jobs.Spec, id types.JobID, at jobPlacement) (api.Job, error) {
	task, err := d.task(ctx, spec)
	if err != nil {
		return api.Job{}, err
	}
	if d.node == nil {
		// A node that does not compute and hears of no provider yet is
		// still joining (a job submitted as it starts): its bid request
		// would reach nobody. It waits for them, at most resumeWait.
		d.awaitNetwork(ctx, resumeWait)
	}
	info, err := d.orch.Submit(ctx, orchestrator.JobSpec{
		ID: id, Name: spec.Name, Task: task, Constraints: spec.Constraints, Retries: spec.Retries, Reschedule: reschedule(spec.Reschedule),
		BidWindow: time.Duration(spec.BidWindow), EnoughBids: spec.EnoughBids,
		QueueTimeout: time.Duration(spec.QueueTimeout), Deadline: time.Duration(spec.Deadline),
		Avoid: at.avoid, Spread: at.spread,
	})
	if err != nil {
		return api.Job{}, err
	}
	return toAPIJob(info), nil
}

// reschedule is a spec's reschedule count as the orchestrator takes it,
// where 0 means its default.
func reschedule(r jobs.Reschedule) int {
	if r == 0 {
		return orchestrator.RescheduleNever
	}
	return int(r)
}

// task turns a spec into the task nodes run, making sure every blob it names
// is held here, but for its input files: the node that runs it fetches
// them from their producers, so they are only checked.
func (d *DMS) task(ctx context.Context, spec *jobs.Spec) (types.Task, error) {
	if err := jobs.CheckInputFiles(spec.InputFiles); err != nil {
		return types.Task{}, err
	}
	field, program := "module", spec.Module
	if spec.Executor == docker.Name {
		field, program = "image_archive", spec.ImageArchive
	}
	var mod string
	if program != "" || field == "module" {
		c, err := cid.Decode(program)
		if err != nil {
			return types.Task{}, fmt.Errorf("%w: %s %q is a local path: upload it first (api.Upload, or dms.Submit)", jobs.ErrInvalidSpec, field, program)
		}
		if err := d.holdBlob(ctx, c.String()); err != nil {
			return types.Task{}, fmt.Errorf("dms: %s %s: %w", field, c, err)
		}
		mod = c.String()
	}
	var inputs string
	if spec.InputDir != "" {
		c, err := cid.Decode(spec.InputDir)
		if err != nil {
			return types.Task{}, fmt.Errorf("%w: input_dir %q is a local path: upload it first", jobs.ErrInvalidSpec, spec.InputDir)
		}
		if err := d.holdBlob(ctx, c.String()); err != nil {
			return types.Task{}, fmt.Errorf("dms: input archive %s: %w", c, err)
		}
		inputs = c.String()
	}
	var stdin string
	if spec.Stdin != "" {
		c, err := d.blobs.Put([]byte(spec.Stdin))
		if err != nil {
			return types.Task{}, err
		}
		stdin = c
	}
	return spec.Task(mod, stdin, inputs), nil
}

// holdBlob makes sure this node holds a blob its job names, fetching it
// from the network if need be: nodes will fetch it from here. A blob held
// is not read (it was verified on its way in).
func (d *DMS) holdBlob(ctx context.Context, c string) error {
	if d.blobs.Has(c) {
		return nil
	}
	_, err := d.GetBlob(ctx, c)
	return err
}

// ListJobs lists every job this node ever submitted, newest first: the
// database's records, with the running orchestrator's latest state over
// them (it saves in the background).
func (d *DMS) ListJobs(ctx context.Context) ([]api.Job, error) {
	jobs, err := d.allJobs()
	out := make([]api.Job, 0, len(jobs))
	for _, info := range jobs {
		out = append(out, toAPIJob(info))
	}
	slices.SortFunc(out, func(a, b api.Job) int { return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(a.ID, b.ID)) })
	return out, err
}

// allJobs returns every job this node submitted: the database's records,
// with the running orchestrator's latest state over them.
func (d *DMS) allJobs() (map[types.JobID]orchestrator.JobInfo, error) {
	jobs := map[types.JobID]orchestrator.JobInfo{}
	err := d.db.Scan(jobPrefix, func(_ string, v []byte) error {
		var info orchestrator.JobInfo
		if err := json.Unmarshal(v, &info); err != nil {
			return fmt.Errorf("dms: decoding job record: %w", err)
		}
		jobs[info.ID] = info
		return nil
	})
	if d.orch != nil {
		for _, info := range d.orch.Jobs() {
			jobs[info.ID] = info
		}
	}
	return jobs, err
}

// GetJob returns one job.
func (d *DMS) GetJob(ctx context.Context, id string) (api.Job, error) {
	info, err := d.jobInfo(id)
	if isBatchJob(id, err) {
		return d.batchJob(ctx, id)
	}
	return toAPIJob(info), err
}

func (d *DMS) jobInfo(id string) (orchestrator.JobInfo, error) {
	if d.orch != nil {
		if info, ok := d.orch.Job(types.JobID(id)); ok {
			return info, nil
		}
	}
	var info orchestrator.JobInfo
	found, err := d.db.Lookup(jobPrefix+id, &info)
	if err == nil && !found {
		err = fmt.Errorf("%w: job %q", api.ErrNotFound, id)
	}
	return info, err
}

// WatchJob streams a job's changes until it ends; the first value is its
// current state.
func (d *DMS) WatchJob(ctx context.Context, id string) (<-chan api.Job, error) {
	if err := d.running(); err != nil {
		return nil, err
	}
	if err := d.awaitRestored(ctx); err != nil {
		return nil, err
	}
	src, err := d.orch.Watch(ctx, types.JobID(id))
	if err != nil {
		// Not live: a job from before a restart is over, or unknown.
		info, gerr := d.jobInfo(id)
		if isBatchJob(id, gerr) {
			return d.watchBatchJob(ctx, id)
		}
		if gerr != nil {
			return nil, gerr
		}
		out := make(chan api.Job, 1)
		out <- toAPIJob(info)
		close(out)
		return out, nil
	}
	out := make(chan api.Job)
	d.goDo(func(dctx context.Context) {
		defer close(out)
		for info := range src {
			select {
			case out <- toAPIJob(info):
			case <-ctx.Done():
				return
			case <-dctx.Done():
				return
			}
		}
	})
	return out, nil
}

// CancelJob cancels a job that has not ended.
func (d *DMS) CancelJob(ctx context.Context, id string) error {
	if err := d.running(); err != nil {
		return err
	}
	if err := d.awaitRestored(ctx); err != nil {
		return err
	}
	return d.cancelJob(ctx, id)
}

// cancelJob is CancelJob while the node closes too: the gateway releases
// its warm instances on its way out.
func (d *DMS) cancelJob(ctx context.Context, id string) error {
	info, err := d.jobInfo(id)
	if isBatchJob(id, err) {
		return d.CancelBatch(ctx, id)
	}
	if err != nil {
		return err
	}
	if info.State.Terminal() {
		return fmt.Errorf("%w: job %s is already %s", api.ErrConflict, id, info.State)
	}
	return d.orch.Cancel(ctx, types.JobID(id), "") // the job's reason: "cancelled by its submitter"
}

// PutBlob stores a blob (at most MaxBlobSize bytes) and returns its CID.
func (d *DMS) PutBlob(ctx context.Context, r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBlobSize+1))
	if err != nil {
		return "", fmt.Errorf("dms: reading blob: %w", err)
	}
	return d.blobs.Put(data)
}

// HasBlob reports whether this node holds the blob.
func (d *DMS) HasBlob(ctx context.Context, c string) (bool, error) {
	id, err := cid.Decode(c)
	if err != nil {
		return false, fmt.Errorf("%w: bad CID %q: %w", api.ErrBadRequest, c, err)
	}
	return d.blobs.Has(id.String()), nil
}

// GetBlob returns a blob from the local store or, failing that, fetches it
// from the node that produced it (a job's result) or from a provider found
// in the DHT, verifies it and keeps it.
func (d *DMS) GetBlob(ctx context.Context, c string) ([]byte, error) {
	id, err := cid.Decode(c)
	if err != nil {
		return nil, fmt.Errorf("%w: bad CID %q: %w", api.ErrNotFound, c, err)
	}
	c = id.String()
	if d.blobs.Has(c) {
		return d.blobs.Get(c)
	}
	if err := d.running(); err != nil {
		return nil, err
	}
	tried := map[string]bool{d.host.ID(): true}
	gone := "" // a node that produced the blob and answered that it no longer holds it
	for _, src := range d.blobSources(ctx, c) {
		for _, p := range src.peers() {
			if tried[p] {
				continue
			}
			tried[p] = true
			data, ferr := d.host.FetchBlob(ctx, p, nil, c, MaxBlobSize)
			if ferr != nil {
				if src.producer && errors.Is(ferr, p2p.ErrBlobNotFound) {
					gone = p
				}
				err = ferr
				continue
			}
			if _, perr := d.blobs.Put(data); perr != nil {
				return nil, perr
			}
			return data, nil
		}
	}
	switch {
	case gone != "":
		return nil, fmt.Errorf("%w: blob %s: %s, the node that produced it, no longer holds it, and no other peer has it: "+
			"a node keeps the results it produced under its store budget and removes the least recently used first "+
			"(docs/architecture.md, State); run the job again to produce it again", api.ErrNotFound, c, gone)
	case err == nil:
		err = fmt.Errorf("%w: blob %s: no peer provides it", api.ErrNotFound, c)
	case errors.Is(err, p2p.ErrBlobNotFound):
		err = fmt.Errorf("%w: blob %s: %w", api.ErrNotFound, c, err)
	}
	return nil, err
}

// blobSource is one way to find peers that should hold a blob; producer
// says they are nodes that produced it (ran a job whose result names it).
type blobSource struct {
	peers    func() []string
	producer bool
}

// blobSources lists, cheapest first, the ways to find peers that should
// hold a blob; each is asked only if the peers of the ones before failed:
// the nodes that ran the jobs whose saved results name it (the index of
// producers), then those of the jobs in memory whose results name it (a
// job that just ended may not be saved yet), then the DHT's providers (a
// walk that can take seconds when peers are gone).
func (d *DMS) blobSources(ctx context.Context, c string) []blobSource {
	return []blobSource{
		{producer: true, peers: func() []string {
			peers, err := d.producers(c)
			if err != nil {
				d.log.Warn("reading a blob's producers", "cid", c, "err", err)
			}
			return peers
		}},
		{producer: true, peers: func() []string {
			var peers []string
			for _, info := range d.orch.Jobs() {
				if info.Node != "" && info.Result != nil && resultNames(info.Result, c) {
					peers = append(peers, info.Node)
				}
			}
			return peers
		}},
		{peers: func() []string {
			provs, err := d.host.FindProviders(ctx, c, 5)
			if err != nil {
				d.log.Debug("finding providers", "cid", c, "err", err)
			}
			var peers []string
			for _, p := range provs {
				peers = append(peers, p.ID)
			}
			return peers
		}},
	}
}

func resultNames(r *types.Result, c string) bool {
	if r.Stdout == c || r.Stderr == c {
		return true
	}
	for _, f := range r.Files {
		if f == c {
			return true
		}
	}
	return false
}

// Node describes this node: identity, addresses, capability and load.
func (d *DMS) Node(ctx context.Context) (api.NodeInfo, error) {
	d.mu.Lock()
	rec, id, started := d.record, d.id, d.started
	d.mu.Unlock()
	info := api.NodeInfo{ID: id, PeerID: id.PeerID, DID: id.DID, Compute: d.conf.Compute, Capability: &rec, Registered: rec.Offered}
	if !started {
		return info, nil
	}
	info.Addrs = d.host.Addrs()
	info.Gateway = d.GatewayURL()
	if d.node != nil {
		ni, err := d.node.Info(ctx)
		if err != nil {
			return info, err
		}
		info.Registered, info.Available, info.Used, info.Running = ni.Registered, ni.Available, ni.Used, ni.Running
		info.Holds, info.Held = ni.Holds, ni.Held
		info.Idle = idleInfo(ni.Host)
	}
	return info, nil
}

// Peers lists the peers this node is connected to, with their latency and
// what each offers, from its capability record (peerrecords.go).
func (d *DMS) Peers(ctx context.Context) ([]api.Peer, error) {
	if err := d.running(); err != nil {
		return nil, err
	}
	peers := d.host.Peers()
	ids := make([]string, len(peers))
	for i, p := range peers {
		ids[i] = p.ID
	}
	offers := d.peerOffers(ctx, ids)
	var out []api.Peer
	for _, p := range peers {
		out = append(out, api.Peer{ID: p.ID, Addrs: p.Addrs, LatencyMillis: float64(p.Latency.Microseconds()) / 1000, Offer: offers[p.ID]})
	}
	slices.SortFunc(out, func(a, b api.Peer) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Reputation lists the requester's standing of the peers it asked for
// bids, most penalised first (orchestrator.Reputation).
func (d *DMS) Reputation(ctx context.Context) ([]api.PeerReputation, error) {
	if err := d.running(); err != nil {
		return nil, err
	}
	table, err := d.orch.Reputation(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.PeerReputation, len(table))
	for i, s := range table {
		events := make(map[string]int, len(s.Events))
		for ev, n := range s.Events {
			events[string(ev)] = n
		}
		out[i] = api.PeerReputation{ID: s.Peer, Penalty: s.Penalty, Poor: s.Poor, Unheard: s.Unheard,
			LastEvent: string(s.LastEvent), LastAt: s.LastAt, Events: events,
			Agreed: s.Agreed, Disagreed: s.Disagreed, Distrusted: s.Distrusted, Trusted: s.Trusted}
	}
	return out, nil
}

// ForgivePeer clears the disagreements of a peer's results with their
// units' quorums, so that the requester takes its bids again
// (orchestrator.Forgive); ErrNotFound if it had none.
func (d *DMS) ForgivePeer(ctx context.Context, p string) error {
	if err := d.running(); err != nil {
		return err
	}
	if _, err := peer.Decode(p); err != nil {
		return fmt.Errorf("%w: %.80q is not a PeerID", api.ErrBadRequest, p)
	}
	ok, err := d.orch.Forgive(ctx, p)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%w: peer %s is not distrusted", api.ErrNotFound, p)
	}
	d.log.Info("peer forgiven: its bids count again", "peer", p)
	return nil
}

func toAPIJob(info orchestrator.JobInfo) api.Job {
	j := api.Job{
		ID: string(info.ID), Name: info.Name, State: info.State, Reason: info.Reason, Node: info.Node,
		Result: info.Result, CreatedAt: info.CreatedAt, UpdatedAt: info.UpdatedAt,
	}
	for _, a := range info.Attempts {
		j.Attempts = append(j.Attempts, api.Attempt{AllocationID: string(a.AllocationID), Node: a.Node, State: string(a.Outcome), Reason: a.Reason,
			Charge: string(a.Charge), Late: a.Late, Usage: a.Usage, Price: a.Price})
	}
	return j
}

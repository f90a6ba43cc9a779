package dms

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/group"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// A batch with managers (docs/batches.md): its submitter hands it to a few
// nodes, which replicate its state as a raft group (dms/gateway/group) and
// whose leader issues the replicas as the submitter would have; the
// submitter may go offline, and collects the units' results from any
// manager when it is back, a compressed batch of them at a time.

// BatchProtocol carries the handoff of a batch to its managers and the
// collection of its results: one request and one response per stream,
// each a 4-byte length and a body (JSON; a response zstd-compressed).
const BatchProtocol = "/dms/batch/1.0.0"

// Bounds of the batch protocol and of what a node manages.
const (
	maxBatchRequest  = jobs.MaxSpecSize + 64<<10
	maxBatchResponse = 64 << 20 // decompressed
	// MaxManagedBatches bounds the batches one node manages at once for
	// others, and maxManagedPerSubmitter those of one submitter: one more
	// is refused (a peer cannot take every place).
	MaxManagedBatches      = 16
	maxManagedPerSubmitter = 4
	// collectPage is how many ended units one response carries.
	collectPage = 2000
	// handoffTimeout bounds the handoff to each manager, which fetches
	// the batch's blobs from the submitter before it answers.
	handoffTimeout = 2 * time.Minute
	// maxManagedBlobBytes bounds what a manager fetches of one batch's
	// blobs: a batch that needs more is refused.
	maxManagedBlobBytes = 1 << 30
	// blobFetches is how many blobs a manager fetches at once.
	blobFetches = 8
)

// Records of the batches this node manages for others.
const managedPrefix = "mbatch/" // mbatch/<id>: a managedRecord

type managedRecord struct {
	ID        string          `json:"id"`
	Spec      json.RawMessage `json:"spec"`
	Managers  []string        `json:"managers"`
	Submitter string          `json:"submitter"`
	CreatedAt time.Time       `json:"created_at"`
}

// The requests of BatchProtocol.
const (
	batchHandoff = "handoff" // manage batch ID with Managers
	batchCollect = "collect" // the units that ended from position From on
	batchRelease = "release" // the submitter has every result: forget the batch
)

type batchRequest struct {
	Op       string          `json:"op"`
	ID       string          `json:"id"`
	Spec     json.RawMessage `json:"spec,omitempty"`
	Managers []string        `json:"managers,omitempty"`
	From     int             `json:"from,omitempty"`
}

type batchResponse struct {
	Err string `json:"err,omitempty"`
	// For collect: the units that ended at positions [From, Next) of
	// their order of ending, how many have ended, and the batch's state.
	Units  map[int]unitRecord `json:"units,omitempty"`
	Next   int                `json:"next"`
	Ended  int                `json:"ended"`
	State  string             `json:"state,omitempty"`
	Reason string             `json:"reason,omitempty"`
	Counts api.BatchCounts    `json:"counts"`
}

// writeFrame writes a length-prefixed body.
func writeFrame(w io.Writer, body []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(body)))
	_, err := w.Write(append(n[:], body...))
	return err
}

// readFrame reads a length-prefixed body of at most limit bytes.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := int(binary.BigEndian.Uint32(n[:]))
	if size > limit {
		return nil, fmt.Errorf("a frame of %d bytes; the limit is %d", size, limit)
	}
	body := make([]byte, size)
	_, err := io.ReadFull(r, body)
	return body, err
}

var (
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxBatchResponse))
)

// askManager sends one request to a manager and reads its response.
func (d *DMS) askManager(ctx context.Context, manager string, req batchRequest) (batchResponse, error) {
	var resp batchResponse
	conn, err := d.host.Dial(ctx, manager, nil, BatchProtocol)
	if err != nil {
		return resp, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	if err := writeFrame(conn, body); err != nil {
		return resp, err
	}
	packed, err := readFrame(conn, maxBatchResponse)
	if err != nil {
		return resp, fmt.Errorf("reading %s's answer: %w", manager, err)
	}
	data, err := zdec.DecodeAll(packed, nil)
	if err != nil {
		return resp, fmt.Errorf("%s's answer: %w", manager, err)
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return resp, fmt.Errorf("%s's answer: %w", manager, err)
	}
	if resp.Err != "" {
		return resp, fmt.Errorf("manager %s: %s", manager, resp.Err)
	}
	return resp, nil
}

// serveBatches answers BatchProtocol: handoffs, collections, releases.
func (d *DMS) serveBatches() error {
	l, err := d.host.Listen(BatchProtocol)
	if err != nil {
		return fmt.Errorf("dms: %w", err)
	}
	d.goDo(func(ctx context.Context) {
		context.AfterFunc(ctx, func() { l.Close() })
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			d.goDo(func(ctx context.Context) {
				defer conn.Close()
				d.serveBatchConn(ctx, conn)
			})
		}
	})
	return nil
}

func (d *DMS) serveBatchConn(ctx context.Context, conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(handoffTimeout + 5*time.Second))
	from := conn.RemoteAddr().String()
	var resp batchResponse
	body, err := readFrame(conn, maxBatchRequest)
	var req batchRequest
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err == nil {
		switch req.Op {
		case batchHandoff:
			err = d.manage(ctx, req, from)
		case batchCollect:
			resp, err = d.collectFor(ctx, req, from)
		case batchRelease:
			err = d.release(req.ID, from)
		default:
			err = fmt.Errorf("unknown request %q", req.Op)
		}
	}
	if err != nil {
		resp = batchResponse{Err: err.Error()}
	}
	data, err := json.Marshal(resp)
	if err != nil {
		return
	}
	_ = writeFrame(conn, zenc.EncodeAll(data, nil))
}

// manage takes over a batch handed off by from: it fetches from it the
// blobs the units run from (which it serves once the submitter is gone),
// records the batch and runs it as one of its managers. A handoff
// repeated is answered as the first.
func (d *DMS) manage(ctx context.Context, req batchRequest, from string) error {
	if !slices.Contains(req.Managers, d.host.ID()) {
		return errors.New("this node is not among the batch's managers")
	}
	if len(req.Managers) > jobs.MaxManagers || slices.Contains(req.Managers, from) {
		return fmt.Errorf("managers: at most %d, and not the submitter", jobs.MaxManagers)
	}
	b, err := jobs.ParseBatch(req.Spec)
	if err != nil {
		return err
	}
	if b.Units.Dir != "" {
		return errors.New("units.dir was not uploaded")
	}
	d.batches.mu.Lock()
	_, have := d.batches.managed[req.ID]
	n, theirs := len(d.batches.managed), 0
	for _, r := range d.batches.managed {
		if r.submitter == from {
			theirs++
		}
	}
	d.batches.mu.Unlock()
	switch {
	case have:
		return nil
	case n >= MaxManagedBatches:
		return fmt.Errorf("this node manages %d batches already, the most it takes", n)
	case theirs >= maxManagedPerSubmitter:
		return fmt.Errorf("this node manages %d of your batches already, the most it takes from one submitter", theirs)
	}
	if err := d.fetchBlobs(ctx, from, b.Blobs(), maxManagedBlobBytes); err != nil {
		return fmt.Errorf("the batch's blobs: %w", err)
	}
	rec := managedRecord{ID: req.ID, Spec: req.Spec, Managers: req.Managers, Submitter: from, CreatedAt: time.Now().UTC()}
	if err := d.db.Put(managedPrefix+rec.ID, rec); err != nil {
		return err
	}
	return d.batches.startManaged(rec, b)
}

// fetchBlobs fetches from peer the blobs of cids this node lacks, a few
// at a time, at most limit bytes in all.
func (d *DMS) fetchBlobs(ctx context.Context, peer string, cids []string, limit int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var total atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(blobFetches)
	for _, c := range cids {
		id, err := cid.Decode(c)
		if err != nil {
			return fmt.Errorf("%q is not a CID: %w", c, err)
		}
		if c = id.String(); d.blobs.Has(c) {
			continue
		}
		g.Go(func() error {
			data, err := d.host.FetchBlob(ctx, peer, nil, c, MaxBlobSize)
			if err != nil {
				return fmt.Errorf("blob %s: %w", c, err)
			}
			if n := total.Add(int64(len(data))); n > limit {
				return fmt.Errorf("more than %s in all, the most a manager takes of one batch", types.Bytes(limit))
			}
			got, err := d.blobs.Put(data)
			switch {
			case err != nil:
				return fmt.Errorf("blob %s: %w", c, err)
			case got != c:
				return fmt.Errorf("blob %s: the bytes sent are %s", c, got)
			}
			return nil
		})
	}
	return g.Wait()
}

// batchGroup names a batch's raft group after its ID ("b-<hex>").
func batchGroup(id string) string { return "batch" + id[1:] }

// startManaged joins the raft group of a batch this node manages and
// follows it: while it leads, it issues the replicas.
func (bs *batches) startManaged(rec managedRecord, b *jobs.Batch) error {
	d := bs.d
	m, err := newBatchMachine(b, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(d.ctx)
	r := &batchRun{bs: bs, spec: b, m: m, cancel: cancel, done: make(chan struct{}), start: time.Now(),
		rec:  batchRecord{ID: rec.ID, Name: b.Name, State: api.BatchRunning, CreatedAt: rec.CreatedAt, UpdatedAt: rec.CreatedAt},
		subs: map[chan api.Batch]func() bool{}, submitter: rec.Submitter}
	grp, err := group.Open(group.Config{
		Name: batchGroup(rec.ID), Self: d.host.ID(), Dir: filepath.Join(d.home, "batch-groups", rec.ID), DB: d.db,
		Transport: groupTransport{h: d.host, prefix: "/dms/batch/", name: batchGroup(rec.ID)},
		FSM:       batchFSM{r}, Peers: rec.Managers, Logger: d.log.With("component", "batch-group", "batch", rec.ID),
	})
	if err != nil {
		cancel(err)
		return fmt.Errorf("dms: batch %s's group: %w", rec.ID, err)
	}
	r.grp = grp
	r.commit = r.applyRaft
	bs.mu.Lock()
	bs.managed[rec.ID] = r
	bs.mu.Unlock()
	d.goDo(func(context.Context) {
		defer close(r.done)
		r.loop(ctx)
	})
	d.log.Info("managing batch", "batch", rec.ID, "submitter", rec.Submitter, "managers", len(rec.Managers))
	return nil
}

// applyRaft commits a command to the batch's raft log, through its
// leader, and returns what this member's machine made of it.
func (r *batchRun) applyRaft(ctx context.Context, c batchCmd) (batchOut, error) {
	var out batchOut
	data, err := json.Marshal(c)
	if err != nil {
		return out, err
	}
	res, err := r.grp.Apply(ctx, data)
	if err != nil {
		return out, err
	}
	err = json.Unmarshal(res.Data, &out)
	return out, err
}

// batchFSM is a managed batch's machine as its group's state.
type batchFSM struct{ r *batchRun }

func (f batchFSM) Apply(_ uint64, cmd []byte) []byte {
	var c batchCmd
	var out batchOut
	if err := json.Unmarshal(cmd, &c); err != nil {
		out.Err = err.Error()
	} else {
		f.r.mm.Lock()
		out = f.r.m.apply(c)
		f.r.mm.Unlock()
	}
	data, _ := json.Marshal(out)
	return data
}

func (f batchFSM) Snapshot() (group.Snapshot, error) {
	f.r.mm.Lock()
	defer f.r.mm.Unlock()
	return machineSnap{f.r.m.snapshot()}, nil
}

func (f batchFSM) Restore(rd io.Reader) error {
	var s machineSnapshot
	if err := json.NewDecoder(rd).Decode(&s); err != nil {
		return err
	}
	m, err := restoreMachine(f.r.spec, s)
	if err != nil {
		return err
	}
	f.r.mm.Lock()
	f.r.m = m
	f.r.mm.Unlock()
	return nil
}

type machineSnap struct{ s machineSnapshot }

func (s machineSnap) Persist(w io.Writer) error { return s.s.persist(w) }
func (machineSnap) Release()                    {}

// leading reports whether this node issues the batch's replicas: always
// for a batch it runs alone, while it leads the group for a managed one.
func (r *batchRun) leading() bool { return r.grp == nil || r.grp.IsLeader() }

// orphanLost marks late the replicas issued by managers the leader lost
// contact with: their ends will not be reported, so others are issued;
// results that come after all still count.
func (r *batchRun) orphanLost(ctx context.Context) {
	if r.grp == nil || !r.grp.IsLeader() {
		return
	}
	for _, mb := range r.grp.Members() {
		if mb.Alive || mb.ID == r.bs.d.host.ID() || !r.issued(mb.ID) {
			continue
		}
		if _, err := r.commit(ctx, batchCmd{Op: opOrphan, Issuer: mb.ID}); err != nil {
			r.bs.d.log.Warn("batch: orphaning a lost manager's replicas", "batch", r.rec.ID, "manager", mb.ID, "err", err)
		}
	}
}

// issued reports whether manager has replicas under way.
func (r *batchRun) issued(manager string) bool {
	r.mm.Lock()
	defer r.mm.Unlock()
	for _, issuer := range r.m.issuers {
		if issuer == manager {
			return true
		}
	}
	return false
}

// collectFor answers a collection from the submitter of a batch this node
// manages: the units that ended from position req.From on.
func (d *DMS) collectFor(ctx context.Context, req batchRequest, from string) (batchResponse, error) {
	r, err := d.managedRun(req.ID, from)
	if err != nil {
		return batchResponse{}, err
	}
	if err := r.grp.Sync(ctx); err != nil { // a follower answers as the leader would
		return batchResponse{}, err
	}
	counts := r.counts()
	r.mm.Lock()
	defer r.mm.Unlock()
	resp := batchResponse{Units: map[int]unitRecord{}, Ended: len(r.m.ended), State: r.m.state, Reason: r.m.reason, Counts: counts}
	start := min(max(req.From, 0), len(r.m.ended))
	resp.Next = min(start+collectPage, len(r.m.ended))
	for _, u := range r.m.ended[start:resp.Next] {
		resp.Units[u] = r.m.unitRecord(u)
	}
	return resp, nil
}

// managedRun finds a batch this node manages for its submitter.
func (d *DMS) managedRun(id, from string) (*batchRun, error) {
	var rec managedRecord
	ok, err := d.db.Lookup(managedPrefix+id, &rec)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("no batch %s managed here", id)
	case rec.Submitter != from:
		return nil, fmt.Errorf("batch %s is not yours", id)
	}
	d.batches.mu.Lock()
	r := d.batches.managed[id]
	d.batches.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("batch %s is not running here", id)
	}
	return r, nil
}

// release forgets a batch whose submitter collected every result.
func (d *DMS) release(id, from string) error {
	r, err := d.managedRun(id, from)
	if err != nil {
		return err
	}
	d.batches.mu.Lock()
	delete(d.batches.managed, id)
	d.batches.mu.Unlock()
	r.cancel(errors.New("released by its submitter"))
	<-r.done
	err = r.grp.Close()
	return errors.Join(err, d.db.Delete(managedPrefix+id))
}

// restoreManaged rejoins the groups of the batches this node manages.
func (d *DMS) restoreManaged() error {
	var recs []managedRecord
	err := d.db.Scan(managedPrefix, func(key string, v []byte) error {
		var rec managedRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			d.log.Error("unreadable managed batch left as is", "key", key, "err", err)
			return nil
		}
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dms: reading managed batches: %w", err)
	}
	for _, rec := range recs {
		b, err := jobs.ParseBatch(rec.Spec)
		if err == nil {
			err = d.batches.startManaged(rec, b)
		}
		if err != nil {
			d.log.Error("managed batch not resumed", "batch", rec.ID, "err", err)
		}
	}
	return nil
}

// chooseManagers picks a batch's managers: those it names, or n of the
// peers taking bid requests (not this node, not a distrusted one).
func (d *DMS) chooseManagers(ctx context.Context, m jobs.Managers) ([]string, error) {
	if m.Peers != nil {
		if slices.Contains(m.Peers, d.host.ID()) {
			return nil, fmt.Errorf("%w: managers: the submitter cannot manage its own batch: it is the node that may go away", api.ErrBadRequest)
		}
		return m.Peers, nil
	}
	rep, err := d.orch.Reputation(ctx)
	if err != nil {
		return nil, err
	}
	distrusted := map[string]bool{}
	for _, p := range rep {
		distrusted[p.Peer] = p.Distrusted || p.Poor
	}
	var out []string
	for _, p := range d.host.TopicPeerIDs() {
		if p != d.host.ID() && !distrusted[p] {
			out = append(out, p)
		}
	}
	if len(out) < m.Count {
		return nil, fmt.Errorf("%w: managers: %d wanted, %d peers to choose from", api.ErrUnavailable, m.Count, len(out))
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:m.Count], nil
}

// handOff gives a batch to its managers; every one must take it.
func (d *DMS) handOff(ctx context.Context, id string, spec []byte, managers []string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(managers))
	for i, m := range managers {
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, handoffTimeout)
			defer cancel()
			_, errs[i] = d.askManager(hctx, m, batchRequest{Op: batchHandoff, ID: id, Spec: spec, Managers: managers})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, m := range managers { // let those that took it go
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_, _ = d.askManager(rctx, m, batchRequest{Op: batchRelease, ID: id})
			cancel()
		}
		return fmt.Errorf("%w: handing the batch to its managers: %w", api.ErrUnavailable, err)
	}
	return nil
}

// collect follows a batch its managers run: it fetches the units that
// ended, from any manager that answers, until it has them all; then it
// releases the managers.
func (r *batchRun) collect(ctx context.Context) {
	d := r.bs.d
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	next := 0 // the manager asked next
	for {
		r.mu.Lock()
		rec := r.rec
		r.mu.Unlock()
		m := rec.Managers[next%len(rec.Managers)]
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := d.askManager(actx, m, batchRequest{Op: batchCollect, ID: rec.ID, From: rec.Collected})
		cancel()
		switch {
		case err != nil:
			next++
			d.log.Debug("batch: collecting", "batch", rec.ID, "manager", m, "err", err)
		default:
			if err := r.keepCollected(resp); err != nil {
				d.log.Error("batch: keeping collected units", "batch", rec.ID, "err", err)
			}
			if resp.State != "" && resp.Next == resp.Ended {
				r.finishCollected(ctx, resp)
				return
			}
			if resp.Next < resp.Ended {
				continue // more to fetch now
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errBatchCancelled) {
				r.finishCollected(ctx, batchResponse{State: api.BatchCancelled, Reason: errBatchCancelled.Error()})
			} else {
				r.closeWatchers()
			}
			return
		case <-tick.C:
		}
	}
}

// keepCollected saves the units of a collection and the new position, in
// one commit: a submitter restarted goes on from there, and a unit
// collected twice is saved twice, the same.
func (r *batchRun) keepCollected(resp batchResponse) error {
	put := make(map[string]any, len(resp.Units)+1)
	for u, rec := range resp.Units {
		put[unitKey(r.rec.ID, u)] = rec
	}
	r.mu.Lock()
	r.rec.Collected, r.rec.Counts, r.rec.UpdatedAt = resp.Next, resp.Counts, time.Now().UTC()
	put[batchPrefix+r.rec.ID] = r.rec
	r.mu.Unlock()
	if err := r.bs.d.db.PutAll(put); err != nil {
		return err
	}
	r.publish()
	return nil
}

// finishCollected ends a managed batch on its submitter, and lets its
// managers forget it.
func (r *batchRun) finishCollected(ctx context.Context, resp batchResponse) {
	d := r.bs.d
	r.mu.Lock()
	r.rec.State, r.rec.Reason, r.rec.UpdatedAt = resp.State, resp.Reason, time.Now().UTC()
	if resp.State == api.BatchCompleted {
		r.rec.Counts = resp.Counts
	}
	rec := r.rec
	r.mu.Unlock()
	if err := d.db.Put(batchPrefix+rec.ID, rec); err != nil {
		d.log.Error("saving a batch's end", "batch", rec.ID, "err", err)
	}
	for _, m := range rec.Managers {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if _, err := d.askManager(rctx, m, batchRequest{Op: batchRelease, ID: rec.ID}); err != nil {
			d.log.Warn("batch: releasing a manager", "batch", rec.ID, "manager", m, "err", err)
		}
		cancel()
	}
	r.publish()
	r.closeWatchers()
	r.bs.mu.Lock()
	delete(r.bs.runs, rec.ID)
	r.bs.mu.Unlock()
}

// startCollecting follows a batch handed to managers, from what this node
// collected before (rec.Collected).
func (bs *batches) startCollecting(rec batchRecord, b *jobs.Batch) *batchRun {
	ctx, cancel := context.WithCancelCause(bs.d.ctx)
	r := &batchRun{bs: bs, spec: b, cancel: cancel, done: make(chan struct{}), start: time.Now(), rec: rec,
		subs: map[chan api.Batch]func() bool{}}
	bs.mu.Lock()
	bs.runs[rec.ID] = r
	bs.mu.Unlock()
	bs.d.goDo(func(context.Context) {
		defer close(r.done)
		r.collect(ctx)
	})
	return r
}

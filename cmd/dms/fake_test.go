package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// fakeService is a daemon in memory: a submitted job goes through the
// states in events; blobs are kept by CID.
type fakeService struct {
	mu        sync.Mutex
	events    []api.Job // what WatchJob sends for every job
	jobs      map[string]api.Job
	blobs     map[string][]byte
	submitted []*jobs.Spec
	cancelled []string
	pins      []string
	unpinned  []string
	forgiven  []string // peers ForgivePeer cleared
	flows     map[string]api.Flow
	batches   map[string]api.Batch
	units     map[string][]api.BatchUnit // a batch's units (fakebatch_test.go)

	flowWatches  [][]api.FlowEvent // what the next watches of a flow play (fakeflow_test.go)
	batchWatches [][]api.Batch     // what the next watches of a batch play (fakebatch_test.go)
	watches      int               // scripted watches played
	holdWatch    bool              // the last watch stays open until its caller leaves
	held         chan struct{}     // a held watch is waiting
}

var _ api.Service = (*fakeService)(nil)

func newFakeService() *fakeService {
	return &fakeService{jobs: map[string]api.Job{}, blobs: map[string][]byte{}}
}

// putJob stores a job as GetJob returns it.
func (f *fakeService) putJob(j api.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[j.ID] = j
}

// blob stores data and returns its CID.
func (f *fakeService) blob(data string) string {
	c, _ := f.PutBlob(context.Background(), bytes.NewReader([]byte(data)))
	return c
}

func (f *fakeService) SubmitJob(_ context.Context, spec *jobs.Spec) (api.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitted = append(f.submitted, spec)
	j := api.Job{ID: fmt.Sprintf("job-%d", len(f.submitted)), Name: spec.Name, State: types.JobPending}
	f.jobs[j.ID] = j
	return j, nil
}

func (f *fakeService) ListJobs(context.Context) ([]api.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var list []api.Job
	for _, j := range f.jobs {
		list = append(list, j)
	}
	return list, nil
}

func (f *fakeService) GetJob(_ context.Context, id string) (api.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return api.Job{}, fmt.Errorf("%w: job %s", api.ErrNotFound, id)
	}
	return j, nil
}

func (f *fakeService) WatchJob(ctx context.Context, id string) (<-chan api.Job, error) {
	if _, err := f.GetJob(ctx, id); err != nil {
		return nil, err
	}
	out := make(chan api.Job)
	go func() {
		defer close(out)
		for _, j := range f.events {
			j.ID = id
			f.putJob(j)
			select {
			case out <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (f *fakeService) CancelJob(ctx context.Context, id string) error {
	j, err := f.GetJob(ctx, id)
	if err != nil {
		return err
	}
	if j.State.Terminal() {
		return fmt.Errorf("%w: job %s is already %s", api.ErrConflict, id, j.State)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, id)
	return nil
}

func (f *fakeService) PutBlob(_ context.Context, r io.Reader) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	c := types.CIDOf(data).String()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[c] = data
	return c, nil
}

func (f *fakeService) HasBlob(_ context.Context, c string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.blobs[c]
	return ok, nil
}

func (f *fakeService) GetBlob(_ context.Context, c string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.blobs[c]
	if !ok {
		return nil, fmt.Errorf("%w: blob %s", api.ErrNotFound, c)
	}
	return data, nil
}

func (f *fakeService) Node(context.Context) (api.NodeInfo, error) {
	return api.NodeInfo{
		ID: types.NodeID{UUID: "u-1", PeerID: "12D3KooWSelf"}, PeerID: "12D3KooWSelf", DID: "did:key:z6MkSelf",
		Addrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWSelf"}, Compute: true,
		Idle: &api.IdleInfo{Others: 0.63, Threshold: 0.25, Since: time.Date(2026, 12, 1, 12, 4, 2, 0, time.Local),
			Reason: "host busy: other processes use 63% CPU > 25%", Stopped: 1},
	}, nil
}

func (f *fakeService) Peers(context.Context) ([]api.Peer, error) {
	return []api.Peer{
		{ID: "12D3KooWOther", Addrs: []string{"/ip4/127.0.0.1/tcp/4002"}, LatencyMillis: 0.25, Offer: &api.PeerOffer{
			Executors: []string{"wasm", "docker"}, Offered: types.Resources{CPU: 2000, Memory: 1 << 30}, Price: 3 * types.Credit, Renewable: true, IdleOnly: true}},
		{ID: "12D3KooWSilent", Addrs: []string{"/ip4/127.0.0.1/tcp/4003"}},
	}, nil
}

// JobReceipts has one receipt of job-1.
func (f *fakeService) JobReceipts(_ context.Context, id string) ([]api.Receipt, error) {
	if id != "job-1" {
		return nil, fmt.Errorf("%w: job %q", api.ErrNotFound, id)
	}
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	return []api.Receipt{{Receipt: types.Receipt{ID: "alloc-1/1", JobID: "job-1", AllocationID: "alloc-1", Seq: 1, Final: true,
		From: at, To: at.Add(2 * time.Second), Resources: types.Resources{CPU: 1000}, Price: types.Credit, Amount: 556},
		Provider: "12D3KooWProvider", Digest: "c0ffee"}}, nil
}

// fakeSpans makes the spans of one trace: each starts start after 10:00
// on 2026-12-04 and takes took.
func fakeSpans(trace string) func(id, parent, name, node string, start, took time.Duration, attrs map[string]string) api.Span {
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	return func(id, parent, name, node string, start, took time.Duration, attrs map[string]string) api.Span {
		return api.Span{Span: types.Span{TraceID: trace, ID: id, Parent: parent, Name: name,
			Start: at.Add(start), End: at.Add(start + took), Attrs: attrs}, Node: node}
	}
}

// JobTrace has a trace of job-1 on two nodes, a third missing: the
// requester's spans, a provider's bid under the auction, its lock under
// the accept.
func (f *fakeService) JobTrace(_ context.Context, id string) (api.Trace, error) {
	if id != "job-1" {
		return api.Trace{}, fmt.Errorf("%w: job %q", api.ErrNotFound, id)
	}
	span := fakeSpans("4bf92f3577b34da6a3ce929d0e0e4736")
	req, prov := "12D3KooWRequester", "12D3KooWProvider1"
	return api.Trace{Job: "job-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Spans: []api.Span{
		span("r1", "", "job", req, 0, 41*time.Millisecond, map[string]string{"state": "completed"}),
		span("r2", "r1", "submit", req, 0, 900*time.Microsecond, nil),
		span("r3", "r1", "auction", req, time.Millisecond, 5*time.Millisecond, map[string]string{"reached": "2"}),
		span("p1", "r3", "bid", prov, 2*time.Millisecond, 300*time.Microsecond, map[string]string{"outcome": "bid"}),
		span("r4", "r1", "accept", req, 6*time.Millisecond, 2*time.Millisecond, map[string]string{"peer": prov, "epoch": "2"}),
		span("p2", "r4", "lock", prov, 7*time.Millisecond, 500*time.Microsecond, nil),
	}, Nodes: []api.TraceNode{{Node: req, Spans: 4}, {Node: prov, Spans: 2}, {Node: "12D3KooWGoneAway", Error: "p2p: no route"}}}, nil
}

// CallTrace has a trace of one call: the gateway's call and hop spans,
// the provider's call span under the hop.
func (f *fakeService) CallTrace(_ context.Context, id string) (api.Trace, error) {
	if id != "0af7651916cd43dd8448eb211c80319c" {
		return api.Trace{}, fmt.Errorf("%w: no spans of trace %s are kept here", api.ErrNotFound, id)
	}
	span := fakeSpans("0af7651916cd43dd8448eb211c80319c")
	gw, prov := "12D3KooWGateway", "12D3KooWProvider1"
	return api.Trace{TraceID: "0af7651916cd43dd8448eb211c80319c", Spans: []api.Span{
		span("g1", "b7ad6b7169203331", "call", gw, 0, 3*time.Millisecond, map[string]string{"function": "f", "status": "200"}),
		span("g2", "g1", "hop", gw, 200*time.Microsecond, 2*time.Millisecond, map[string]string{"status": "ok"}),
		span("p1", "g2", "call", prov, 500*time.Microsecond, time.Millisecond, map[string]string{"exit_code": "0"}),
	}, Nodes: []api.TraceNode{{Node: gw, Spans: 2}, {Node: prov, Spans: 1}}}, nil
}

// Earnings has two lines in 2026-12, none in another month.
func (f *fakeService) Earnings(_ context.Context, period string) (api.Earnings, error) {
	from, to, err := api.ParsePeriod(period)
	if err != nil {
		return api.Earnings{}, err
	}
	e := api.Earnings{Period: period, From: from, To: to}
	if period == "" || period == "2026-12" {
		e.Lines = []api.EarningLine{{Requester: "12D3KooWReq", Account: "acme", Receipts: 2, Amount: 1112}, {Requester: "12D3KooWReq", Receipts: 1, Amount: 1}}
		e.Receipts, e.Total = 3, 1113
	}
	return e, nil
}

func (f *fakeService) Reputation(context.Context) ([]api.PeerReputation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	disagreed := 1
	if slices.Contains(f.forgiven, "12D3KooWLiar") {
		disagreed = 0
	}
	return []api.PeerReputation{
		{ID: "12D3KooWLiar", Penalty: 1.5, Poor: true, Unheard: true, LastEvent: "lost",
			LastAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Events: map[string]int{"lost": 1, "no_confirm": 1},
			Agreed: 2, Disagreed: disagreed, Distrusted: disagreed > 0},
		{ID: "12D3KooWHonest", LastAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Agreed: 10, Trusted: true},
	}, nil
}

func (f *fakeService) ForgivePeer(_ context.Context, peer string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if peer != "12D3KooWLiar" || slices.Contains(f.forgiven, peer) {
		return fmt.Errorf("%w: peer %s is not distrusted", api.ErrNotFound, peer)
	}
	f.forgiven = append(f.forgiven, peer)
	return nil
}

func (f *fakeService) Benchmark(ctx context.Context) (api.NodeInfo, error) { return f.Node(ctx) }

// fakeCollection is what the fake's CollectGarbage reports, and its last
// collection.
var fakeCollection = api.Collection{
	At: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), DurationMillis: 12, BlobsRemoved: 3, FreedBytes: 3 << 20,
	BlobBytesBefore: 5 << 20, BlobBytesAfter: 2 << 20, Referenced: 1, Recent: 1, RecordsCompacted: 4,
}

func (f *fakeService) StoreInfo(context.Context) (api.StoreInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	last := fakeCollection
	return api.StoreInfo{
		Home: "/home/dms", HomeBytes: 40 << 20, Blobs: 7, BlobBytes: 2 << 20, MaxBytes: 4 << 30,
		MinBlobAgeMillis: 60_000, RetentionMillis: 7 * 24 * 3_600_000, Pins: append([]string{}, f.pins...),
		Records: map[string]int{"job": 12, "alloc": 30, "node": 3}, LastCollection: &last,
	}, nil
}

func (f *fakeService) CollectGarbage(context.Context) (api.Collection, error) {
	return fakeCollection, nil
}

func (f *fakeService) Pin(_ context.Context, c string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pins = append(f.pins, c)
	return nil
}

func (f *fakeService) Unpin(_ context.Context, c string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.pins, c) {
		return fmt.Errorf("%w: blob %s is not pinned", api.ErrNotFound, c)
	}
	f.unpinned = append(f.unpinned, c)
	return nil
}

// newDaemon serves svc's API over HTTP and returns a home whose api.json
// points at it, as a running `dms run` leaves it.
func newDaemon(t *testing.T, svc api.Service) string {
	t.Helper()
	tok, err := api.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewHandler(svc, tok, nil))
	t.Cleanup(srv.Close)
	home := t.TempDir()
	if err := api.WriteEndpoint(home, api.Endpoint{Addr: srv.Listener.Addr().String(), Token: tok}); err != nil {
		t.Fatal(err)
	}
	return home
}

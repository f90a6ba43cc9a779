package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// fakeService is an in-memory Service. A job's events are the states queued
// in watch[id]; blobs are kept by CID.
type fakeService struct {
	mu         sync.Mutex
	jobs       map[string]Job
	watch      map[string][]Job    // events sent at once
	live       map[string]chan Job // events the test sends one by one
	blobs      map[string][]byte
	puts       int // PutBlob calls
	submitted  []*jobs.Spec
	node       NodeInfo
	peers      []Peer
	reputation []PeerReputation
	receipts   map[string][]Receipt // by job
	traces     map[string]Trace     // by job
	earnings   Earnings             // what Earnings answers, with the period asked
	pins       map[string]bool
	gcs        int   // CollectGarbage calls
	failWith   error // returned by every call when set
	flows      map[string]Flow
	batches    map[string]Batch
	// unitWindows are the from and limit of each BatchUnits call.
	unitWindows [][2]int
}

var _ Service = (*fakeService)(nil)

func newFakeService() *fakeService {
	return &fakeService{jobs: map[string]Job{}, watch: map[string][]Job{}, live: map[string]chan Job{}, blobs: map[string][]byte{}, pins: map[string]bool{}}
}

func (f *fakeService) SubmitJob(_ context.Context, spec *jobs.Spec) (Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return Job{}, f.failWith
	}
	f.submitted = append(f.submitted, spec)
	job := Job{ID: fmt.Sprintf("job-%d", len(f.submitted)), Name: spec.Name, State: types.JobPending}
	f.jobs[job.ID] = job
	return job, nil
}

func (f *fakeService) ListJobs(context.Context) ([]Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var list []Job
	for _, j := range f.jobs {
		list = append(list, j)
	}
	return list, f.failWith
}

func (f *fakeService) GetJob(_ context.Context, id string) (Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("%w: job %s", ErrNotFound, id)
	}
	return j, nil
}

func (f *fakeService) WatchJob(ctx context.Context, id string) (<-chan Job, error) {
	f.mu.Lock()
	events, ok := f.watch[id]
	live := f.live[id]
	f.mu.Unlock()
	if live != nil {
		return live, nil
	}
	if !ok {
		return nil, fmt.Errorf("%w: job %s", ErrNotFound, id)
	}
	out := make(chan Job)
	go func() {
		defer close(out)
		for _, j := range events {
			select {
			case out <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (f *fakeService) CancelJob(_ context.Context, id string) error {
	j, err := f.GetJob(context.Background(), id)
	if err != nil {
		return err
	}
	if j.State.Terminal() {
		return fmt.Errorf("%w: job %s already %s", ErrConflict, id, j.State)
	}
	return nil
}

func (f *fakeService) PutBlob(_ context.Context, r io.Reader) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	c := types.CIDOf(data).String()
	f.mu.Lock()
	f.puts++
	f.blobs[c] = data
	f.mu.Unlock()
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
		return nil, fmt.Errorf("%w: blob %s", ErrNotFound, c)
	}
	return bytes.Clone(data), nil
}

func (f *fakeService) Node(context.Context) (NodeInfo, error) { return f.node, f.failWith }

func (f *fakeService) Peers(context.Context) ([]Peer, error) { return f.peers, f.failWith }

func (f *fakeService) JobReceipts(_ context.Context, id string) ([]Receipt, error) {
	if _, ok := f.receipts[id]; !ok {
		return nil, fmt.Errorf("%w: job %q", ErrNotFound, id)
	}
	return f.receipts[id], f.failWith
}

func (f *fakeService) JobTrace(_ context.Context, id string) (Trace, error) {
	t, ok := f.traces[id]
	if !ok {
		return Trace{}, fmt.Errorf("%w: job %q", ErrNotFound, id)
	}
	return t, f.failWith
}

func (f *fakeService) CallTrace(_ context.Context, id string) (Trace, error) {
	for _, t := range f.traces {
		if t.TraceID == id {
			return t, f.failWith
		}
	}
	return Trace{}, fmt.Errorf("%w: trace %q", ErrNotFound, id)
}

func (f *fakeService) Earnings(_ context.Context, period string) (Earnings, error) {
	from, to, err := ParsePeriod(period)
	if err != nil {
		return Earnings{}, err
	}
	e := f.earnings
	e.Period, e.From, e.To = period, from, to
	return e, f.failWith
}

func (f *fakeService) Reputation(context.Context) ([]PeerReputation, error) {
	return f.reputation, f.failWith
}

// ForgivePeer clears a distrusted peer of the fake's reputation.
func (f *fakeService) ForgivePeer(_ context.Context, peer string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.reputation {
		if p.ID == peer && p.Distrusted {
			f.reputation[i].Disagreed, f.reputation[i].Distrusted = 0, false
			return nil
		}
	}
	return fmt.Errorf("%w: peer %s is not distrusted", ErrNotFound, peer)
}

func (f *fakeService) Benchmark(context.Context) (NodeInfo, error) {
	info := f.node
	info.Running = 42 // marks a benchmarked reply
	return info, f.failWith
}

func (f *fakeService) StoreInfo(context.Context) (StoreInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := StoreInfo{Home: "/home/dms", Blobs: len(f.blobs), MaxBytes: 4 << 30, Pins: []string{}, Records: map[string]int{"job": len(f.jobs)}}
	for _, b := range f.blobs {
		info.BlobBytes += int64(len(b))
	}
	for c := range f.pins {
		info.Pins = append(info.Pins, c)
	}
	return info, f.failWith
}

func (f *fakeService) CollectGarbage(context.Context) (Collection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gcs++
	return Collection{BlobsRemoved: 2, FreedBytes: 2 << 20}, f.failWith
}

func (f *fakeService) Pin(_ context.Context, c string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.blobs[c]; !ok {
		return fmt.Errorf("%w: blob %s", ErrNotFound, c)
	}
	f.pins[c] = true
	return f.failWith
}

func (f *fakeService) Unpin(_ context.Context, c string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.pins[c] {
		return fmt.Errorf("%w: blob %s is not pinned", ErrNotFound, c)
	}
	delete(f.pins, c)
	return f.failWith
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

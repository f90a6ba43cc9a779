package main

import (
	"context"
	"fmt"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

// The fake's batches: kept as submitted. A watch plays the next script of
// batchWatches (a script that does not end the batch is a watch the
// daemon dropped), else sends the batch as it is; each snapshot becomes
// the batch GetBatch returns. With holdWatch, a watch with no script left
// stays open until its caller leaves, and says so on held. The units are
// those of the units map.

// scriptBatchWatches sets the scripts of the fake's next batch watches.
func (f *fakeService) scriptBatchWatches(scripts ...[]api.Batch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batchWatches = scripts
}

// nextBatchWatch takes the script of the next watch; nil when none is left.
func (f *fakeService) nextBatchWatch() []api.Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batchWatches) == 0 {
		return nil
	}
	script := f.batchWatches[0]
	f.batchWatches = f.batchWatches[1:]
	f.watches++
	return script
}

// putBatch stores a batch as GetBatch returns it.
func (f *fakeService) putBatch(b api.Batch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.batches == nil {
		f.batches = map[string]api.Batch{}
	}
	if b.Spec == nil { // a scripted batch keeps the spec submitted
		b.Spec = f.batches[b.ID].Spec
	}
	f.batches[b.ID] = b
}

func (f *fakeService) SubmitBatch(_ context.Context, b *jobs.Batch) (api.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.batches == nil {
		f.batches = map[string]api.Batch{}
	}
	out := api.Batch{ID: fmt.Sprintf("b-%d", len(f.batches)+1), Name: b.Name, State: api.BatchRunning,
		Counts: api.BatchCounts{Units: b.Len(), Queued: b.Len()}, Spec: b}
	f.batches[out.ID] = out
	return out, nil
}

func (f *fakeService) ListBatches(context.Context) ([]api.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Batch
	for _, b := range f.batches {
		b.Spec = nil
		out = append(out, b)
	}
	return out, nil
}

func (f *fakeService) GetBatch(_ context.Context, id string) (api.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.batches[id]
	if !ok {
		return api.Batch{}, fmt.Errorf("%w: batch %s", api.ErrNotFound, id)
	}
	return b, nil
}

func (f *fakeService) WatchBatch(ctx context.Context, id string) (<-chan api.Batch, error) {
	b, err := f.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	script := f.nextBatchWatch()
	if script == nil {
		script = []api.Batch{b}
	}
	out := make(chan api.Batch)
	go func() {
		defer close(out)
		for _, snap := range script {
			f.putBatch(snap)
			select {
			case out <- snap:
			case <-ctx.Done():
				return
			}
		}
		f.mu.Lock()
		hold := f.holdWatch && len(f.batchWatches) == 0
		f.mu.Unlock()
		if hold {
			f.held <- struct{}{}
			<-ctx.Done()
		}
	}()
	return out, nil
}

func (f *fakeService) CancelBatch(ctx context.Context, id string) error {
	b, err := f.GetBatch(ctx, id)
	if err != nil {
		return err
	}
	if b.State != api.BatchRunning {
		return fmt.Errorf("%w: batch %s already %s", api.ErrConflict, id, b.State)
	}
	b.State = api.BatchCancelled
	f.putBatch(b)
	return nil
}

func (f *fakeService) BatchUnits(ctx context.Context, id string, from, limit int) ([]api.BatchUnit, error) {
	if _, err := f.GetBatch(ctx, id); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	units := f.units[id]
	return units[min(from, len(units)):min(from+limit, len(units))], nil
}

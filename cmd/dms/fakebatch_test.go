package main

import (
	"context"
	"fmt"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

// The fake's batches: kept as submitted; a watch sends the batch as it
// is; the units are those putUnits stored.

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
	out := make(chan api.Batch, 1)
	out <- b
	close(out)
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

package api

import (
	"context"
	"fmt"

	"github.com/opendms/dms/jobs"
)

// The fake's batches: kept as submitted, each unit queued; watched as one
// snapshot.

func (f *fakeService) SubmitBatch(_ context.Context, b *jobs.Batch) (Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return Batch{}, f.failWith
	}
	if f.batches == nil {
		f.batches = map[string]Batch{}
	}
	out := Batch{ID: fmt.Sprintf("b-%d", len(f.batches)+1), Name: b.Name, State: BatchRunning,
		Counts: BatchCounts{Units: b.Len(), Queued: b.Len()}, Spec: b}
	f.batches[out.ID] = out
	return out, nil
}

func (f *fakeService) ListBatches(context.Context) ([]Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Batch
	for _, b := range f.batches {
		b.Spec = nil
		out = append(out, b)
	}
	return out, f.failWith
}

func (f *fakeService) GetBatch(_ context.Context, id string) (Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.batches[id]
	if !ok {
		return Batch{}, fmt.Errorf("%w: batch %s", ErrNotFound, id)
	}
	return b, nil
}

func (f *fakeService) WatchBatch(ctx context.Context, id string) (<-chan Batch, error) {
	b, err := f.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan Batch, 1)
	out <- b
	close(out)
	return out, nil
}

func (f *fakeService) CancelBatch(ctx context.Context, id string) error {
	b, err := f.GetBatch(ctx, id)
	if err != nil {
		return err
	}
	if b.State != BatchRunning {
		return fmt.Errorf("%w: batch %s already %s", ErrConflict, id, b.State)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b.State = BatchCancelled
	f.batches[id] = b
	return nil
}

// BatchUnits lists the units in the window asked, as the engine does, and
// records the window.
func (f *fakeService) BatchUnits(ctx context.Context, id string, from, limit int) ([]BatchUnit, error) {
	b, err := f.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.unitWindows = append(f.unitWindows, [2]int{from, limit})
	f.mu.Unlock()
	var out []BatchUnit
	for i := from; i < min(from+limit, b.Spec.Len()); i++ {
		_, value, err := b.Spec.Unit(i)
		if err != nil {
			return nil, err
		}
		out = append(out, BatchUnit{Index: i, Value: value, State: BatchQueued})
	}
	return out, nil
}

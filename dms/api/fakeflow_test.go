package api

import (
	"context"
	"fmt"

	"github.com/opendms/dms/jobs"
)

// The fake's flows: kept as submitted, watched as one event.

func (f *fakeService) SubmitFlow(_ context.Context, fl *jobs.Flow) (Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return Flow{}, f.failWith
	}
	if f.flows == nil {
		f.flows = map[string]Flow{}
	}
	out := Flow{ID: fmt.Sprintf("f-%d", len(f.flows)+1), Name: fl.Name, State: FlowRunning, Spec: fl}
	f.flows[out.ID] = out
	return out, nil
}

func (f *fakeService) ListFlows(context.Context) ([]Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Flow
	for _, fl := range f.flows {
		out = append(out, fl)
	}
	return out, f.failWith
}

func (f *fakeService) GetFlow(_ context.Context, id string) (Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.flows[id]
	if !ok {
		return Flow{}, fmt.Errorf("%w: flow %s", ErrNotFound, id)
	}
	return fl, nil
}

func (f *fakeService) WatchFlow(ctx context.Context, id string) (<-chan FlowEvent, error) {
	fl, err := f.GetFlow(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan FlowEvent, 1)
	out <- FlowEvent{Flow: &fl, State: fl.State}
	close(out)
	return out, nil
}

func (f *fakeService) CancelFlow(ctx context.Context, id string) error {
	fl, err := f.GetFlow(ctx, id)
	if err != nil {
		return err
	}
	if FlowEnded(fl.State) {
		return fmt.Errorf("%w: flow %s is already %s", ErrConflict, id, fl.State)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fl.State = FlowCancelled
	f.flows[id] = fl
	return nil
}

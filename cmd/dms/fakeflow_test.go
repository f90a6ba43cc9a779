package main

import (
	"context"
	"fmt"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

// The fake's flows: kept as submitted, watched as one event.

func (f *fakeService) SubmitFlow(_ context.Context, fl *jobs.Flow) (api.Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flows == nil {
		f.flows = map[string]api.Flow{}
	}
	out := api.Flow{ID: fmt.Sprintf("f-%d", len(f.flows)+1), Name: fl.Name, State: api.FlowRunning, Spec: fl}
	f.flows[out.ID] = out
	return out, nil
}

func (f *fakeService) ListFlows(context.Context) ([]api.Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Flow
	for _, fl := range f.flows {
		out = append(out, fl)
	}
	return out, nil
}

func (f *fakeService) GetFlow(_ context.Context, id string) (api.Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.flows[id]
	if !ok {
		return api.Flow{}, fmt.Errorf("%w: flow %s", api.ErrNotFound, id)
	}
	return fl, nil
}

func (f *fakeService) WatchFlow(ctx context.Context, id string) (<-chan api.FlowEvent, error) {
	fl, err := f.GetFlow(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan api.FlowEvent, 1)
	out <- api.FlowEvent{Flow: &fl, State: fl.State}
	close(out)
	return out, nil
}

func (f *fakeService) CancelFlow(ctx context.Context, id string) error {
	fl, err := f.GetFlow(ctx, id)
	if err != nil {
		return err
	}
	if api.FlowEnded(fl.State) {
		return fmt.Errorf("%w: flow %s is already %s", api.ErrConflict, id, fl.State)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fl.State = api.FlowCancelled
	f.flows[id] = fl
	return nil
}

package main

import (
	"context"
	"fmt"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

// The fake's flows: kept as submitted. A watch plays the next script of
// flowWatches (a script that does not end the flow is a watcher the daemon
// dropped), else sends the flow as it is; a flow an event carries becomes
// the flow GetFlow returns. With holdWatch, a watch with no script left
// stays open until its caller leaves, and says so on held.

// scriptWatches sets the scripts of the fake's next watches.
func (f *fakeService) scriptWatches(scripts ...[]api.FlowEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flowWatches = scripts
}

// putFlow stores a flow as GetFlow returns it.
func (f *fakeService) putFlow(fl api.Flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flows == nil {
		f.flows = map[string]api.Flow{}
	}
	if fl.Spec == nil { // a scripted flow keeps the spec submitted
		fl.Spec = f.flows[fl.ID].Spec
	}
	f.flows[fl.ID] = fl
}

// nextWatch takes the script of the next watch; nil when none is left.
func (f *fakeService) nextWatch() []api.FlowEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.flowWatches) == 0 {
		return nil
	}
	script := f.flowWatches[0]
	f.flowWatches = f.flowWatches[1:]
	f.watches++
	return script
}

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
	script := f.nextWatch()
	if script == nil {
		if !f.holdWatch {
			out := make(chan api.FlowEvent, 1)
			out <- api.FlowEvent{Flow: &fl, State: fl.State}
			close(out)
			return out, nil
		}
		script = []api.FlowEvent{{Flow: &fl, State: fl.State}}
	}
	out := make(chan api.FlowEvent)
	go func() {
		defer close(out)
		for _, ev := range script {
			if ev.Flow != nil {
				f.putFlow(*ev.Flow)
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
		if f.holdWatch && f.nextWatchLeft() == 0 {
			f.held <- struct{}{}
			<-ctx.Done()
		}
	}()
	return out, nil
}

// nextWatchLeft counts the scripts left.
func (f *fakeService) nextWatchLeft() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.flowWatches)
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

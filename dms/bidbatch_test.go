package dms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// The requests that come while a publication is under way go out
// together, in one signed BidRequests, and a lone request alone; a batch
// the network refuses whole is published one request at a time.
func TestGossipBatcher(t *testing.T) {
	home, _ := newHome(t)
	d := startNode(t, home, WithCompute(false))
	b := newGossipBatcher(d)
	var mu sync.Mutex
	var sent []*types.Envelope
	gate := make(chan struct{})
	refuseBatches := false
	b.send = func(_ context.Context, env *types.Envelope) error {
		if env.Kind == types.KindBidRequest && len(sent) == 0 {
			<-gate // the first publication takes its time
		}
		mu.Lock()
		defer mu.Unlock()
		if refuseBatches && env.Kind == types.KindBidRequests {
			return errors.New("rate limited")
		}
		sent = append(sent, env)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go b.run(ctx)
	req := func(i int) *types.BidRequest {
		return &types.BidRequest{JobID: types.JobID(fmt.Sprint("j", i)), Requester: d.host.ID(), Executor: "wasm",
			Resources: types.Resources{CPU: 100}, Deadline: time.Now().Add(time.Duration(i+1) * time.Second)}
	}
	publish := func(from, to int) chan error {
		errs := make(chan error, to-from)
		for i := from; i < to; i++ {
			go func() { errs <- b.publish(ctx, req(i)) }()
		}
		return errs
	}
	// burst publishes request from alone, then, while its publication
	// waits for the gate, those up to to, and opens the gate.
	burst := func(from, to int) {
		first := publish(from, from+1)
		time.Sleep(50 * time.Millisecond) // the first is under way
		rest := publish(from+1, to)
		time.Sleep(100 * time.Millisecond) // the rest queue behind it
		close(gate)
		for _, errs := range []chan error{first, rest} {
			for range cap(errs) {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	burst(0, 11)
	mu.Lock()
	// Normally two envelopes: the first request, then the ten that queued
	// behind it in one batch; on a slow machine a late goroutine may make
	// a third.
	total, batches := 0, 0
	for i, env := range sent {
		msg, err := env.Open(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *types.BidRequest:
			total++
		case *types.BidRequests:
			total, batches = total+len(m.Requests), batches+1
			if left := time.Until(env.ExpiresAt()); left < time.Duration(len(m.Requests))*time.Second {
				t.Fatalf("envelope %d expires in %s, before its last bid window closes", i, left)
			}
		}
	}
	if sent[0].Kind != types.KindBidRequest || total != 11 || batches == 0 || len(sent) > 3 {
		t.Fatalf("sent %v holding %d requests, want the first alone and the rest batched", kinds(sent), total)
	}
	batched := d.NetworkStats().BidRequestsBatched
	sent, refuseBatches = nil, true
	mu.Unlock()
	if batched < 2 || batched > 10 {
		t.Fatalf("counted %d requests published in batches", batched)
	}
	// Refused whole, a batch goes out one request at a time.
	gate = make(chan struct{})
	burst(20, 25)
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 5 {
		t.Fatalf("after a refused batch: %v, want 5 single requests", kinds(sent))
	}
}

func kinds(envs []*types.Envelope) []types.Kind {
	out := make([]types.Kind, len(envs))
	for i, e := range envs {
		out[i] = e.Kind
	}
	return out
}

package p2p

import (
	"fmt"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// A BidRequests on the topic reaches the subscribers as its requests, each
// on its own; one that names another requester, holds none or too many, or
// more than its publisher's tokens, is refused whole and counted.
func TestGossipBidRequestBatch(t *testing.T) {
	cfg := testConfig(t)
	cfg.BidRequestRate, cfg.BidRequestBurst = 1, 8 // others: 8 + 1 of slack
	h := newTestHost(t, cfg)
	delivered := make(chan *types.BidRequest, 100)
	if err := h.SubscribeBidRequests(func(_ string, _ *types.Envelope, r *types.BidRequest) { delivered <- r }); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	raw := newRawHost(t, key, false)
	topic := rawTopic(t, raw, h)
	ctx := testCtx(t, 20*time.Second)
	now := time.Now()
	batch := func(n int, requester string) []byte {
		m := &types.BidRequests{}
		for i := range n {
			m.Requests = append(m.Requests, types.BidRequest{JobID: types.JobID(fmt.Sprint("j", i)), Requester: requester,
				Executor: "wasm", Resources: types.Resources{CPU: 100}, Deadline: now.Add(time.Minute)})
		}
		return encode(t, sealEnv(t, key, m, now, time.Minute))
	}
	me := raw.ID().String()
	bad := map[Reason][]byte{
		ReasonRequesterMismatch: batch(2, "12D3KooWSomeoneElse"),
		ReasonMalformed:         batch(0, me),
	}
	for r, data := range bad {
		if err := topic.Publish(ctx, data); err != nil {
			t.Fatal(r, err)
		}
		waitFor(t, 10*time.Second, string(r)+" counted", func() bool { return h.Stats().Gossip[r] == 1 })
	}
	if err := topic.Publish(ctx, batch(types.MaxBidRequests+1, me)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "an oversized batch counted", func() bool { return h.Stats().Gossip[ReasonMalformed] == 2 })
	if err := topic.Publish(ctx, batch(5, me)); err != nil {
		t.Fatal(err)
	}
	got := map[types.JobID]bool{}
	for range 5 {
		select {
		case r := <-delivered:
			got[r.JobID] = true
		case <-ctx.Done():
			t.Fatalf("delivered %v of 5", got)
		}
	}
	if tr := h.Traffic(); len(got) != 5 || tr.BidRequestsGossip != 5 {
		t.Fatalf("delivered %v, counted %d", got, tr.BidRequestsGossip)
	}
	// 5 of its 9 tokens are spent: a batch of 5 more is over the rest.
	m := &types.BidRequests{}
	for i := range 5 {
		m.Requests = append(m.Requests, types.BidRequest{JobID: types.JobID(fmt.Sprint("k", i)), Requester: me,
			Executor: "wasm", Resources: types.Resources{CPU: 100}, Deadline: now.Add(time.Minute)})
	}
	if err := topic.Publish(ctx, encode(t, sealEnv(t, key, m, now, time.Minute))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the batch over the rate limit counted", func() bool { return h.Stats().Gossip[ReasonRateLimited] == 1 })
	select {
	case r := <-delivered:
		t.Fatalf("delivered %s of a batch over the rate limit", r.JobID)
	case <-time.After(200 * time.Millisecond):
	}
}

package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// startNetwork starts n Hosts that all bootstrap from the first.
func startNetwork(t *testing.T, n int) []*Host {
	hosts := []*Host{newTestHost(t, testConfig(t))}
	for range n - 1 {
		hosts = append(hosts, newTestHost(t, testConfig(t, hosts[0].Addrs()...)))
	}
	return hosts
}

func TestNetwork(t *testing.T) {
	start := time.Now()
	hosts := startNetwork(t, 5)
	t.Run("discovery", func(t *testing.T) {
		for i, h := range hosts {
			waitFor(t, 20*time.Second, fmt.Sprintf("host %d to see 3 peers", i), func() bool { return len(h.Peers()) >= 3 })
		}
		t.Logf("5 hosts each see >= 3 peers %s after start", time.Since(start))
		rendezvous := types.CIDOf([]byte(Rendezvous)).String() // how routing discovery names it
		waitFor(t, 10*time.Second, "4 others advertised under the rendezvous", func() bool {
			ps, err := hosts[4].FindProviders(testCtx(t, 5*time.Second), rendezvous, 10)
			return err == nil && len(ps) == 4
		})
	})
	t.Run("gossip", func(t *testing.T) { testGossip(t, hosts) })
	t.Run("request", func(t *testing.T) { testRequest(t, hosts[1], hosts[2]) })
	t.Run("stream", func(t *testing.T) { testStream(t, hosts[3], hosts[4]) })
	t.Run("blobs", func(t *testing.T) { testBlobs(t, hosts) })
}

func testGossip(t *testing.T, hosts []*Host) {
	type delivery struct {
		host int
		at   time.Time
		from string
		req  *types.BidRequest
	}
	got := make(chan delivery, len(hosts))
	for i, h := range hosts {
		err := h.SubscribeBidRequests(func(from string, _ *types.Envelope, req *types.BidRequest) {
			got <- delivery{host: i, at: time.Now(), from: from, req: req}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	pub := hosts[2]
	waitFor(t, 10*time.Second, "the publisher to see 4 topic peers", func() bool { return pub.TopicPeers() == len(hosts)-1 })
	req := &types.BidRequest{JobID: "job-1", Requester: pub.ID(), ReplyAddrs: pub.Addrs(), Executor: "wasm"}
	env, err := types.Seal(pub.cfg.Key, req, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := pub.PublishEnvelope(testCtx(t, 5*time.Second), env); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	var last time.Duration
	timeout := time.After(5 * time.Second)
	for len(seen) < len(hosts) {
		select {
		case d := <-got:
			if d.from != pub.ID() || d.req.JobID != "job-1" || seen[d.host] {
				t.Fatalf("bad delivery %+v", d)
			}
			seen[d.host], last = true, d.at.Sub(sent)
		case <-timeout:
			for _, h := range hosts {
				t.Log(h.Stats())
			}
			t.Fatalf("only hosts %v received the bid request", seen)
		}
	}
	t.Logf("publish -> received by all %d hosts (publisher included): %s", len(hosts), last)
}

func testRequest(t *testing.T, server, client *Host) {
	ctx := testCtx(t, 20*time.Second)
	server.Handle(AcceptProtocol, func(_ context.Context, from string, env *types.Envelope, msg types.Message) (types.Message, error) {
		a := msg.(*types.Accept)
		if from != client.ID() || env.From != client.DID() {
			return nil, fmt.Errorf("request from %s (%s)", from, env.From)
		}
		switch a.JobID {
		case "fail":
			return nil, errors.New("handler failed")
		case "refuse":
			return &types.Reject{JobID: a.JobID, Reason: "busy"}, nil
		}
		return &types.Confirm{JobID: a.JobID, AllocationID: a.AllocationID, Epoch: 7}, nil
	})
	server.Handle(BidProtocol, func(context.Context, string, *types.Envelope, types.Message) (types.Message, error) {
		return nil, nil
	})

	reply, err := client.Request(ctx, server.ID(), server.Addrs(), AcceptProtocol, &types.Accept{JobID: "j", AllocationID: "a"})
	if c, ok := reply.(*types.Confirm); err != nil || !ok || c.Epoch != 7 || c.AllocationID != "a" {
		t.Fatalf("accept: got %#v, %v", reply, err)
	}
	reply, err = client.Request(ctx, server.ID(), nil, AcceptProtocol, &types.Accept{JobID: "refuse"})
	if r, ok := reply.(*types.Reject); err != nil || !ok || r.Reason != "busy" {
		t.Fatalf("refused accept: got %#v, %v", reply, err)
	}
	if _, err := client.Request(ctx, server.ID(), nil, AcceptProtocol, &types.Accept{JobID: "fail"}); !errors.Is(err, ErrNoReply) {
		t.Fatalf("failing handler: got %v, want ErrNoReply", err)
	}
	reply, err = client.Request(ctx, server.ID(), nil, BidProtocol, &types.Bid{JobID: "j"})
	if reply != nil || err != nil {
		t.Fatalf("bid ack: got %#v, %v", reply, err)
	}
	if _, err := client.Request(ctx, server.ID(), nil, AcceptProtocol, &types.StatusQuery{}); !errors.Is(err, ErrNoReply) {
		t.Fatalf("wrong kind: got %v, want ErrNoReply", err)
	}
	if n := server.Stats().Streams[ReasonWrongKind]; n != 1 {
		t.Fatalf("wrong_kind refusals: %d, want 1", n)
	}
	if _, err := client.Request(ctx, client.ID(), nil, BidProtocol, &types.Bid{}); !errors.Is(err, ErrSelf) {
		t.Fatalf("request to self: got %v, want ErrSelf", err)
	}
	t.Logf("request round trip, median of 200: %s", medianRTT(t, ctx, client, server))
}

func medianRTT(t *testing.T, ctx context.Context, client, server *Host) time.Duration {
	rtts := make([]time.Duration, 200)
	for i := range rtts {
		begin := time.Now()
		if _, err := client.Request(ctx, server.ID(), nil, AcceptProtocol, &types.Accept{JobID: "j"}); err != nil {
			t.Fatal(err)
		}
		rtts[i] = time.Since(begin)
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

var invokeStates = []types.AllocationState{types.AllocRunning, types.AllocRunning, types.AllocRunning, types.AllocCompleted}

// invokeHandler streams invokeStates for job "ok", dies after one frame for
// "die", and for "hang" waits for its context, then closes cancelled.
func invokeHandler(cancelled chan struct{}) StreamHandler {
	return func(ctx context.Context, _ string, _ *types.Envelope, msg types.Message, send func(types.Message) error) error {
		inv := msg.(*types.Invocation)
		if err := send(&types.Status{JobID: inv.JobID, State: types.AllocRunning}); err != nil {
			return err
		}
		switch inv.JobID {
		case "die":
			return errors.New("executor crashed")
		case "hang":
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		}
		for _, s := range invokeStates[1:] {
			if err := send(&types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: s}); err != nil {
				return err
			}
		}
		return nil
	}
}

func testStream(t *testing.T, node, requester *Host) {
	ctx := testCtx(t, 20*time.Second)
	cancelled := make(chan struct{})
	node.HandleStream(InvokeProtocol, invokeHandler(cancelled))
	open := func(job types.JobID) *Stream {
		st, err := requester.OpenStream(ctx, node.ID(), node.Addrs(), InvokeProtocol, &types.Invocation{JobID: job, AllocationID: "a"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	t.Run("frames then EOF", func(t *testing.T) {
		st := open("ok")
		for i, want := range invokeStates {
			msg, err := st.Recv(ctx)
			if s, ok := msg.(*types.Status); err != nil || !ok || s.State != want {
				t.Fatalf("frame %d: got %#v, %v", i, msg, err)
			}
		}
		if _, err := st.Recv(ctx); err != io.EOF {
			t.Fatalf("after the last frame: got %v, want io.EOF", err)
		}
	})
	t.Run("handler error breaks the stream", func(t *testing.T) {
		st := open("die") // the reset may overtake the frame sent before it
		_, err := st.Recv(ctx)
		if err == nil {
			_, err = st.Recv(ctx)
		}
		if !errors.Is(err, ErrNoReply) {
			t.Fatalf("got %v, want ErrNoReply", err)
		}
	})
	t.Run("closing cancels the handler", func(t *testing.T) {
		st := open("hang")
		if _, err := st.Recv(ctx); err != nil {
			t.Fatal(err)
		}
		_ = st.Close()
		select {
		case <-cancelled:
		case <-ctx.Done():
			t.Fatal("closing the stream did not cancel the handler")
		}
	})
}

func testBlobs(t *testing.T, hosts []*Host) {
	ctx := testCtx(t, 20*time.Second)
	store, liar := &MemBlobs{}, &lyingStore{}
	data := []byte("the output of a job")
	c, err := store.Put(data)
	if err != nil {
		t.Fatal(err)
	}
	hosts[1].ServeBlobs(store, 1<<20)
	hosts[2].ServeBlobs(liar, 1<<20)
	if err := hosts[1].Provide(ctx, c); err != nil {
		t.Fatal(err)
	}
	provs, err := hosts[3].FindProviders(ctx, c, 5)
	if err != nil || len(provs) != 1 || provs[0].ID != hosts[1].ID() || len(provs[0].Addrs) == 0 {
		t.Fatalf("providers: %+v, %v", provs, err)
	}

	fetcher := hosts[3]
	got, err := fetcher.FetchBlob(ctx, provs[0].ID, provs[0].Addrs, c, 1<<20)
	if err != nil || string(got) != string(data) {
		t.Fatalf("fetch: %q, %v", got, err)
	}
	for name, tc := range map[string]struct {
		from *Host
		cid  string
		max  int64
		want error
	}{
		"tampered":  {hosts[2], c, 1 << 20, types.ErrCIDMismatch},
		"not found": {hosts[1], types.CIDOf([]byte("nothing")).String(), 1 << 20, ErrBlobNotFound},
		"too large": {hosts[1], c, 4, ErrBlobTooLarge},
		"bad cid":   {hosts[1], "not-a-cid", 1 << 20, ErrBadCID},
	} {
		if _, err := fetcher.FetchBlob(ctx, tc.from.ID(), nil, tc.cid, tc.max); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

// lyingStore claims to hold every blob and serves the wrong bytes.
type lyingStore struct{}

func (lyingStore) Put([]byte) (string, error) { return "", errors.New("read-only") }
func (lyingStore) Get(string) ([]byte, error) { return []byte("not what you asked for"), nil }
func (lyingStore) Has(string) bool            { return true }

// TestPublishLatency measures publish -> delivery on 5 hosts over several
// messages, for the record.
func TestPublishLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	hosts := startNetwork(t, 5)
	var mu sync.Mutex
	arrived := map[types.JobID]int{}
	done := make(chan types.JobID, 100)
	for _, h := range hosts {
		_ = h.SubscribeBidRequests(func(_ string, _ *types.Envelope, req *types.BidRequest) {
			mu.Lock()
			defer mu.Unlock()
			if arrived[req.JobID]++; arrived[req.JobID] == len(hosts) {
				done <- req.JobID
			}
		})
	}
	pub := hosts[4]
	waitFor(t, 20*time.Second, "4 topic peers", func() bool { return pub.TopicPeers() == 4 })
	var lat []time.Duration
	for i := range 20 {
		env, _ := types.Seal(pub.cfg.Key, &types.BidRequest{JobID: types.JobID(fmt.Sprint(i)), Requester: pub.ID()}, time.Now(), time.Minute)
		begin := time.Now()
		if err := pub.PublishEnvelope(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
			lat = append(lat, time.Since(begin))
		case <-time.After(5 * time.Second):
			t.Fatal("not delivered to all")
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("publish -> all 5 hosts: median %s, max %s", lat[len(lat)/2], lat[len(lat)-1])
}

package dms

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
)

// A provider sees its own work: the allocation of the job it ran, the bid
// it sent for it at its price and the bid request it declined (a job whose
// max_price is under its price) with why, newest first, a page at a time;
// its ledger once nothing is held. Each peer sees what the other offers. Bad queries are 400s saying what would
// do. A node that starts without its index rebuilds it from the records,
// and lists the same. Past retention, its bid records are dropped.
func TestProviderOwnView(t *testing.T) {
	reqHome, _ := newHome(t)
	provHome, _ := newHome(t)
	rewriteConfig(t, provHome, func(c *Config) { c.Offer.Price = 2 * types.Credit })
	req := startNode(t, reqHome, WithCompute(false))
	prov := startNode(t, provHome, WithBootstrap(req.host.Addrs()...))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return req.host.TopicPeers() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, ran := submitAndWait(t, req, tinySpec(t, 0, "ran\n"), time.Minute)
	if ran.State != types.JobCompleted {
		t.Fatalf("job %s: %s", ran.State, ran.Reason)
	}
	cheap := tinySpec(t, 0, "cheap\n")
	cheap.Constraints.MaxPrice = types.Credit
	h, err := req.Submit(ctx, cheap)
	if err != nil {
		t.Fatal(err)
	}
	if job, err := h.Wait(ctx); err != nil || job.State != types.JobFailed {
		t.Fatalf("the cheap job, which no node bids for: %+v, %v", job, err)
	}

	allocs, err := prov.NodeAllocations(ctx, api.PageQuery{})
	if err != nil || len(allocs.Allocations) != 1 || allocs.Next != "" {
		t.Fatalf("allocations %+v, %v", allocs, err)
	}
	a := allocs.Allocations[0]
	if a.JobID != ran.ID || a.Requester != req.host.ID() || a.State != types.AllocCompleted || a.Price != 2*types.Credit ||
		a.Executor != "wasm" || a.StartedAt.IsZero() || a.EndedAt.Before(a.StartedAt) || a.DurationMillis != a.EndedAt.Sub(a.StartedAt).Milliseconds() {
		t.Fatalf("allocation %+v", a)
	}
	if p, err := prov.NodeAllocations(ctx, api.PageQuery{Filter: "running"}); err != nil || len(p.Allocations) != 0 {
		t.Fatalf("running allocations %+v, %v", p, err)
	}

	bids, err := prov.NodeBids(ctx, api.PageQuery{})
	if err != nil || len(bids.Bids) < 2 {
		t.Fatalf("bids %+v, %v", bids, err)
	}
	d, b := bids.Bids[0], bids.Bids[len(bids.Bids)-1]
	if d.JobID != h.ID || d.Outcome != node.OutcomeDeclined || d.MaxPrice != types.Credit || d.Requester != req.host.ID() ||
		len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], "price: 2 per core-hour over max 1") {
		t.Fatalf("the newest bid record, the declined one: %+v", d)
	}
	if b.JobID != ran.ID || b.Outcome != node.OutcomeBid || b.Price != 2*types.Credit || b.Allocation != a.ID || b.Executor != "wasm" {
		t.Fatalf("the oldest bid record, the bid: %+v", b)
	}
	var paged []api.BidRecord
	for q := (api.PageQuery{Limit: 1}); ; {
		p, err := prov.NodeBids(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, p.Bids...)
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	if !reflect.DeepEqual(paged, bids.Bids) {
		t.Fatalf("a page at a time:\n%+v\nall at once:\n%+v", paged, bids.Bids)
	}

	peers, err := req.Peers(ctx)
	if err != nil || len(peers) != 1 || peers[0].ID != prov.host.ID() || peers[0].Offer == nil {
		t.Fatalf("the requester's peers %+v, %v", peers, err)
	}
	if o := peers[0].Offer; o.Price != 2*types.Credit || !slices.Contains(o.Executors, "wasm") || o.Offered.IsZero() || o.IdleOnly {
		t.Fatalf("what the provider offers, as its peer sees it: %+v", o)
	}
	if back, err := prov.Peers(ctx); err != nil || len(back) != 1 || back[0].Offer == nil || back[0].Offer.Price != req.record.Price {
		t.Fatalf("the provider's peers %+v, %v", back, err)
	}

	ledger, err := prov.NodeLocks(ctx)
	if err != nil || len(ledger.Locks) != 0 || ledger.Registered.IsZero() || ledger.Available != ledger.Registered {
		t.Fatalf("ledger %+v, %v", ledger, err)
	}

	srv := httptest.NewServer(api.NewHandler(prov, "tok", nil))
	defer srv.Close()
	for path, want := range map[string]string{
		"/v1/node/allocations?state=done": `state "done": want one of locked, running, completed, failed, cancelled`,
		"/v1/node/bids?outcome=won":       `outcome "won": want bid or declined`,
		"/v1/node/bids?after=yesterday":   `cursor "yesterday": want the next value of an earlier page`,
		"/v1/node/allocations?limit=0":    "limit=\"0\": want a whole number from 1 to 1000",
	} {
		status, msg := getError(t, srv.URL+path)
		if status != http.StatusBadRequest || !strings.Contains(msg, want) {
			t.Errorf("%s: %d %q, want 400 saying %q", path, status, msg, want)
		}
	}
	if _, err := prov.NodeAllocations(ctx, api.PageQuery{Filter: "done"}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("a bad state: %v", err)
	}

	// Without its index, a node lists nothing; started again, it has
	// rebuilt it.
	var keys []string
	prov.db.Scan(node.IndexPrefix, func(k string, _ []byte) error { keys = append(keys, k); return nil })
	if err := prov.db.Write(nil, append(keys, node.IndexVersionKey)); err != nil {
		t.Fatal(err)
	}
	if p, _ := prov.NodeAllocations(ctx, api.PageQuery{}); len(p.Allocations) != 0 {
		t.Fatalf("allocations listed without an index: %+v", p)
	}
	prov.Close()
	prov = startNode(t, provHome, WithBootstrap(req.host.Addrs()...), WithStore(StoreConfig{Retention: time.Nanosecond}))
	again, err := prov.NodeAllocations(ctx, api.PageQuery{})
	if err != nil || !reflect.DeepEqual(again, allocs) {
		t.Fatalf("allocations after a rebuild %+v, %v; want %+v", again, err, allocs)
	}
	if after, err := prov.NodeBids(ctx, api.PageQuery{}); err != nil || !reflect.DeepEqual(after.Bids, bids.Bids) {
		t.Fatalf("bids after a rebuild %+v, %v; want %+v", after, err, bids)
	}

	// Past retention, bid records go; allocation records are compacted
	// and stay listed.
	col, err := prov.CollectGarbage(ctx)
	if err != nil || col.BidRecordsExpired != len(bids.Bids) {
		t.Fatalf("collection %+v, %v: want %d bid records expired", col, err, len(bids.Bids))
	}
	if p, err := prov.NodeBids(ctx, api.PageQuery{}); err != nil || len(p.Bids) != 0 {
		t.Fatalf("bids past retention %+v, %v", p, err)
	}
	if p, err := prov.NodeAllocations(ctx, api.PageQuery{Filter: "completed"}); err != nil || len(p.Allocations) != 1 || p.Allocations[0].Executor != "" {
		t.Fatalf("allocations past retention %+v, %v", p, err)
	}
}

// getError gets url with the test token and returns the status and the
// error message of the reply.
func getError(t *testing.T, url string) (int, string) {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error
}

package dms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/types"
)

// TestJobTraceAcrossNodes runs a job from a requester without compute
// with two providers that both bid: its trace holds spans of all three,
// each provider's bid decision is a child of the requester's auction, the
// winner's lock a child of the accept, its allocation a child of the
// invoke with its phases under it; a fourth node that asks the providers
// or the requester for that trace gets nothing.
func TestJobTraceAcrossNodes(t *testing.T) {
	reqHome, _ := newHome(t)
	req := startNode(t, reqHome, WithCompute(false))
	var provs []*DMS
	for range 2 {
		home, _ := newHome(t)
		provs = append(provs, startNode(t, home, WithBootstrap(req.host.Addrs()...)))
	}
	waitFor(t, 60*time.Second, "both providers on the topic", func() bool { return req.host.TopicPeers() >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := tinySpec(t, 0, "traced\n")
	spec.EnoughBids = 2 // both bids are in before the auction closes
	h, err := req.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if job, err := h.Wait(ctx); err != nil || job.State != types.JobCompleted {
		t.Fatalf("job %+v, %v", job, err)
	}
	var tr api.Trace
	waitFor(t, 10*time.Second, "the job's root span", func() bool {
		tr, err = req.JobTrace(ctx, h.ID)
		return err == nil && len(byName(tr, "job")) == 1 && len(byName(tr, "wait")) == 1
	})

	names := map[string]string{req.host.ID(): "requester", provs[0].host.ID(): "provider 0", provs[1].host.ID(): "provider 1"}
	if len(tr.Nodes) != 3 {
		t.Fatalf("nodes asked: %+v", tr.Nodes)
	}
	for _, n := range tr.Nodes {
		if n.Error != "" || n.Spans == 0 || names[n.Node] == "" {
			t.Errorf("node %s (%s): %+v", n.Node, names[n.Node], n)
		}
	}
	one := func(name string) api.Span {
		t.Helper()
		got := byName(tr, name)
		if len(got) != 1 {
			t.Fatalf("%d %q spans in %+v", len(got), name, tr.Spans)
		}
		return got[0]
	}
	root, auction, accept, invoke := one("job"), one("auction"), one("accept"), one("invoke")
	for _, s := range []api.Span{one("submit"), auction, accept, invoke, one("wait")} {
		if s.Parent != root.ID || s.Node != req.host.ID() || s.TraceID != tr.TraceID {
			t.Errorf("%s: parent %s node %s, want %s on the requester", s.Name, s.Parent, names[s.Node], root.ID)
		}
	}
	bids := byName(tr, "bid")
	if len(bids) != 2 || bids[0].Node == bids[1].Node {
		t.Fatalf("bid spans %+v", bids)
	}
	for _, b := range bids {
		if b.Parent != auction.ID || b.Node == req.host.ID() || b.Attrs["outcome"] != "bid" {
			t.Errorf("bid of %s: %+v, want a child of the auction %s", names[b.Node], b, auction.ID)
		}
	}
	lock, alloc := one("lock"), one("allocation")
	winner := lock.Node
	if lock.Parent != accept.ID || alloc.Parent != invoke.ID || alloc.Node != winner || winner == req.host.ID() || alloc.Attrs["state"] != "completed" {
		t.Errorf("lock %+v\nallocation %+v", lock, alloc)
	}
	for _, phase := range []string{"fetch", "execute", "store"} {
		if s := one(phase); s.Parent != alloc.ID || s.Node != winner || s.End.Before(s.Start) {
			t.Errorf("phase %+v, want a child of %s", s, alloc.ID)
		}
	}

	// A stranger that learnt the trace ID (bid requests travel on gossip)
	// reads nothing of it, from any node.
	strangerHome, _ := newHome(t)
	stranger := startNode(t, strangerHome, WithCompute(false), WithBootstrap(req.host.Addrs()...))
	for _, d := range append(provs, req) {
		reply, err := stranger.host.Request(ctx, d.host.ID(), d.host.Addrs(), p2p.TraceProtocol, &types.TraceQuery{TraceID: tr.TraceID})
		got, ok := reply.(*types.TraceSpans)
		if err != nil || !ok || len(got.Spans) != 0 {
			t.Errorf("the stranger asked %s: %+v, %v", names[d.host.ID()], reply, err)
		}
	}
	if _, err := stranger.JobTrace(ctx, h.ID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("the stranger's trace of a job it does not know: %v", err)
	}
	forgeTraces(t, ctx, stranger, provs[0], tr.TraceID, auction.ID)
	if again, err := req.JobTrace(ctx, h.ID); err != nil || len(byName(again, "bid")) != 2 || len(again.Spans) != len(tr.Spans) {
		t.Errorf("the requester's trace after the stranger's forgeries: %d spans, %d bids (before %d), %v",
			len(again.Spans), len(byName(again, "bid")), len(tr.Spans), err)
	}
	// A malformed trace ID is no error: no spans.
	reply, err := req.host.Request(ctx, provs[0].host.ID(), nil, p2p.TraceProtocol, &types.TraceQuery{TraceID: "not hex"})
	if got, ok := reply.(*types.TraceSpans); err != nil || !ok || len(got.Spans) != 0 {
		t.Errorf("a malformed trace ID: %+v, %v", reply, err)
	}
}

// TestJobTraceMissingNode: a provider that left is reported missing, and
// the rest of the trace is still there.
func TestJobTraceMissingNode(t *testing.T) {
	reqHome, _ := newHome(t)
	req := startNode(t, reqHome, WithCompute(false))
	provHome, _ := newHome(t)
	prov := startNode(t, provHome, WithBootstrap(req.host.Addrs()...))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return req.host.TopicPeers() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := tinySpec(t, 0, "alone\n")
	spec.EnoughBids = 1
	h, err := req.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if job, err := h.Wait(ctx); err != nil || job.State != types.JobCompleted {
		t.Fatalf("job %+v, %v", job, err)
	}
	waitFor(t, 10*time.Second, "the job's root span", func() bool {
		tr, err := req.JobTrace(ctx, h.ID)
		return err == nil && len(byName(tr, "job")) == 1
	})
	prov.Close()
	tr, err := req.JobTrace(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Nodes) != 2 || tr.Nodes[1].Node != prov.host.ID() || tr.Nodes[1].Error == "" || len(byName(tr, "auction")) != 1 || len(byName(tr, "bid")) != 0 {
		t.Fatalf("trace without its provider: %+v", tr)
	}
}

// forgeTraces has stranger send prov bid requests with a forged trace
// context (the requester's trace, under its auction) and malformed ones:
// prov takes each, and its span under the forged context is the
// stranger's to read, never the requester's.
func forgeTraces(t *testing.T, ctx context.Context, stranger, prov *DMS, traceID, auction string) {
	t.Helper()
	forged := "00-" + traceID + "-" + auction + "-01"
	for i, tp := range []string{forged, "00-garbage", "00-" + traceID + "-0000000000000000-01", strings.Repeat("0", 10_000)} {
		now := time.Now()
		env, err := types.Seal(stranger.key, &types.BidRequest{
			JobID: types.JobID(fmt.Sprintf("forged-%d", i)), Requester: stranger.host.ID(), ReplyAddrs: stranger.host.Addrs(), Executor: "wasm",
			Resources: types.Resources{CPU: 100, Memory: 16 << 20}, Deadline: now.Add(2 * time.Second), Trace: tp,
		}, now, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := stranger.host.SendBidRequests(ctx, env, []string{prov.host.ID()}); err != nil || len(got) != 1 {
			t.Fatalf("a bid request with trace %.40q: taken by %v, %v", tp, got, err)
		}
	}
	var got *types.TraceSpans
	waitFor(t, 10*time.Second, "the provider's span under the forged context", func() bool {
		reply, err := stranger.host.Request(ctx, prov.host.ID(), nil, p2p.TraceProtocol, &types.TraceQuery{TraceID: traceID})
		got, _ = reply.(*types.TraceSpans)
		return err == nil && got != nil && len(got.Spans) > 0
	})
	if len(got.Spans) != 1 || got.Spans[0].Name != "bid" || got.Spans[0].Parent != auction {
		t.Fatalf("the stranger reads %+v", got.Spans)
	}
}

func byName(tr api.Trace, name string) []api.Span {
	var out []api.Span
	for _, s := range tr.Spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestTracesConfig: a fresh home exports nowhere and samples no call; an
// OTLP endpoint and a call sample load back; an endpoint that is not an
// http(s) URL, or a sample out of 0..1, is refused, in the file or as an
// option, naming what is wrong.
func TestTracesConfig(t *testing.T) {
	home, _ := newHome(t)
	cfg, err := LoadConfig(home)
	if err != nil || cfg.Traces != (TracesConfig{}) {
		t.Fatalf("a fresh home's traces section: %+v, %v", cfg.Traces, err)
	}
	rewriteConfig(t, home, func(c *Config) { c.Traces.OTLPEndpoint = "http://localhost:4318" })
	if cfg, err = LoadConfig(home); err != nil || cfg.Traces.OTLPEndpoint != "http://localhost:4318" {
		t.Fatalf("after editing: %+v, %v", cfg.Traces, err)
	}
	rewriteConfig(t, home, func(c *Config) { c.Traces.OTLPEndpoint = "localhost:4318" })
	if _, err := LoadConfig(home); err == nil || !strings.Contains(err.Error(), `traces.otlp_endpoint: tracing: OTLP endpoint "localhost:4318": want an http:// or https:// URL`) {
		t.Errorf("a bare host:port: %v", err)
	}
	if _, err := New(WithHome(home), WithOTLPEndpoint("udp://x")); err == nil || !strings.Contains(err.Error(), "WithOTLPEndpoint") {
		t.Errorf("WithOTLPEndpoint with a bad URL: %v", err)
	}
	cfg.Traces = TracesConfig{CallSample: 0.25} // over the bad endpoint, which LoadConfig refuses
	if err := writeConfig(home, cfg); err != nil {
		t.Fatal(err)
	}
	if cfg, err = LoadConfig(home); err != nil || cfg.Traces.CallSample != 0.25 {
		t.Fatalf("a call sample: %+v, %v", cfg.Traces, err)
	}
	if _, err := New(WithHome(home), WithCallSample(-0.1)); err == nil || !strings.Contains(err.Error(), "WithCallSample") {
		t.Errorf("WithCallSample below 0: %v", err)
	}
	rewriteConfig(t, home, func(c *Config) { c.Traces.CallSample = 1.5 })
	if _, err := LoadConfig(home); err == nil || !strings.Contains(err.Error(), "call sample 1.5 is out of 0..1") || !strings.Contains(err.Error(), "traces.call_sample") {
		t.Errorf("a call sample over 1: %v", err)
	}
}

// A peer's answer is not trusted: spans of another trace are dropped, and
// no more than types.MaxTraceSpans are kept.
func TestOfTrace(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	var spans []types.Span
	for i := range 3 * types.MaxTraceSpans {
		tid := id
		if i%3 == 0 {
			tid = "00000000000000000000000000000001"
		}
		spans = append(spans, types.Span{TraceID: tid, ID: fmt.Sprintf("%016x", i), Name: "x"})
	}
	got := ofTrace(spans, id)
	if len(got) != types.MaxTraceSpans {
		t.Fatalf("kept %d spans", len(got))
	}
	for _, s := range got {
		if s.TraceID != id {
			t.Fatalf("kept a span of trace %s", s.TraceID)
		}
	}
}

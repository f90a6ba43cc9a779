package dms

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/dms/internal/tracing"
	"github.com/opendms/dms/types"
)

// TestCallTraceThroughGateway calls a function through the gateway's
// listener. A call without a traceparent header (the sample is 0) is not
// traced; one with a malformed header works and is not traced either; one
// with a valid header is answered with a traceparent of the caller's
// trace, and its trace holds the gateway's call span under the caller's
// span, the hop under it, and the provider's call span under the hop. A
// stranger that learnt the trace ID reads nothing of it.
func TestCallTraceThroughGateway(t *testing.T) {
	provHome, _ := newHome(t)
	gwHome, _ := newHome(t)
	provider := startNode(t, provHome)
	gw := startNode(t, gwHome, WithCompute(false), WithBootstrap(provider.host.Addrs()...), WithGatewayListen("127.0.0.1:0", "", ""))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return gw.host.TopicPeers() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, key, err := gw.Gateway().CreateAccount(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	c := gateway.NewClient(gw.GatewayURL(), gateway.Auth{Key: key.Secret}, nil)
	module, err := c.PutModule(ctx, bytes.NewReader(tinywasm.Module(0, "Status: 200 OK\n\nok")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(ctx, gateway.Deploy{Name: "f", Module: module, Resources: types.Resources{CPU: 100, Memory: 16 << 20}}); err != nil {
		t.Fatal(err)
	}
	call := func(traceparent string) http.Header {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gw.GatewayURL()+"/v1/functions/f/invoke", strings.NewReader("hi"))
		req.Header.Set("Authorization", "Bearer "+key.Secret)
		if traceparent != "" {
			req.Header.Set("Traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("call with traceparent %q: %d %q", traceparent, resp.StatusCode, body)
		}
		return resp.Header
	}

	for _, tp := range []string{"", "00-zzzz-not-a-trace", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if h := call(tp); h.Get("Traceparent") != "" {
			t.Errorf("a call with traceparent %q is traced: %s", tp, h.Get("Traceparent"))
		}
	}
	if peers := len(gw.traces.calls.order); peers != 0 {
		t.Fatalf("untraced calls left %d traces of calls", peers)
	}

	const tid, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	answer := call("00-" + tid + "-" + caller + "-01").Get("Traceparent")
	if !strings.HasPrefix(answer, "00-"+tid+"-") || strings.Contains(answer, caller) {
		t.Fatalf("the traced call's answer names %q", answer)
	}
	var tr api.Trace
	waitFor(t, 10*time.Second, "the call's spans on both nodes", func() bool {
		tr, err = gw.CallTrace(ctx, tid)
		return err == nil && len(tr.Spans) == 3
	})
	if len(tr.Nodes) != 2 || tr.Nodes[1].Node != provider.host.ID() || tr.Nodes[1].Error != "" || tr.Job != "" {
		t.Fatalf("nodes asked: %+v", tr.Nodes)
	}
	var root, hop, served api.Span
	for _, s := range tr.Spans {
		switch {
		case s.Name == "call" && s.Node == gw.host.ID():
			root = s
		case s.Name == "hop":
			hop = s
		case s.Name == "call" && s.Node == provider.host.ID():
			served = s
		}
	}
	if root.Parent != caller || root.Attrs["function"] != "f" || root.Attrs["account"] != "acme" || root.Attrs["revision"] != "1" ||
		root.Attrs["status"] != "200" || root.Attrs["queue_wait"] == "" || !strings.HasSuffix(answer, "-"+root.ID+"-01") {
		t.Errorf("the gateway's call span, under the caller's %s: %+v", caller, root)
	}
	if hop.Parent != root.ID || hop.Node != gw.host.ID() || hop.Attrs["peer"] != provider.host.ID() || hop.Attrs["status"] != "ok" {
		t.Errorf("the hop, under %s: %+v", root.ID, hop)
	}
	if served.Parent != hop.ID || served.Attrs["exit_code"] != "0" || served.Attrs["status"] != "ok" || served.Attrs["run"] == "" || served.Error != "" {
		t.Errorf("the provider's call span, under %s: %+v", hop.ID, served)
	}

	strangerHome, _ := newHome(t)
	stranger := startNode(t, strangerHome, WithCompute(false), WithBootstrap(gw.host.Addrs()...))
	for _, d := range []*DMS{gw, provider} {
		reply, err := stranger.host.Request(ctx, d.host.ID(), d.host.Addrs(), p2p.TraceProtocol, &types.TraceQuery{TraceID: tid})
		if got, ok := reply.(*types.TraceSpans); err != nil || !ok || len(got.Spans) != 0 {
			t.Errorf("the stranger asked %s: %+v, %v", d.host.ID(), reply, err)
		}
	}
	if _, err := stranger.CallTrace(ctx, tid); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("the stranger's trace of calls it never made: %v", err)
	}
	if _, err := gw.CallTrace(ctx, "not hex"); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("a malformed trace ID: %v", err)
	}
}

// newCallTracer is a node's traces with a call sample, on a tracer of its
// own.
func newCallTracer(t testing.TB, sample float64) *traces {
	t.Helper()
	tr, err := tracing.New(context.Background(), tracing.Config{Node: "12D3KooWGateway"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return newTraces(tr, sample)
}

// TestTraceCallsSample: a sample of 1 traces every call without a
// traceparent header, and only calls; an untraced call allocates nothing
// in traceCalls.
func TestTraceCallsSample(t *testing.T) {
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, c := range []struct {
		sample float64
		path   string
		traced bool
	}{
		{1, "/v1/functions/f/invoke", true}, {1, "/v1/functions/f/invoke/a/b", true}, {1, "/e/hello/x", true},
		{1, "/v1/functions/invoke", false}, {1, "/v1/accounts", false}, {0, "/v1/functions/f/invoke", false},
	} {
		rec := httptest.NewRecorder()
		newCallTracer(t, c.sample).traceCalls(ok).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, c.path, nil))
		if got := rec.Header().Get("Traceparent") != ""; got != c.traced {
			t.Errorf("sample %v, %s: traced %v", c.sample, c.path, got)
		}
	}
	h := newCallTracer(t, 0).traceCalls(ok)
	req, rec := httptest.NewRequest(http.MethodPost, "/v1/functions/f/invoke", nil), httptest.NewRecorder()
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(rec, req) }); n != 0 {
		t.Errorf("an untraced call allocates %v times", n)
	}
}

// BenchmarkTraceCalls: what traceCalls costs a call, untraced and traced
// (the gateway's call span, kept in memory).
func BenchmarkTraceCalls(b *testing.B) {
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, c := range []struct {
		name        string
		traceparent string
	}{{"untraced", ""}, {"traced", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}} {
		b.Run(c.name, func(b *testing.B) {
			h := newCallTracer(b, 0).traceCalls(ok)
			req := httptest.NewRequest(http.MethodPost, "/v1/functions/f/invoke", nil)
			if c.traceparent != "" {
				req.Header.Set("Traceparent", c.traceparent)
			}
			rec := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(rec, req)
			}
		})
	}
}

package dms

import (
	"context"
	"net/http"
	"path/filepath"

	"go.opentelemetry.io/otel/trace"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/dashboard"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/types"
)

// startGateway builds the node's gateway: accounts, functions, endpoints
// and tasks in its database, calls run as its jobs. It resumes the tasks
// a restart interrupted (after restoreJobs: their jobs are live again) and,
// when gateway.listen is set, serves callers there.
func (d *DMS) startGateway(ctx context.Context) error {
	g, err := gateway.New(gateway.Config{
		DB: d.db, Runner: gatewayRunner{d}, Caller: gatewayRunner{d}, Clock: d.opts.clock, Logger: d.log.With("component", "gateway"), TaskRetention: d.conf.Gateway.TaskRetention,
		RequireCredits: d.conf.Gateway.RequireCredits, Settler: d.opts.settler, TaskEnded: d.metrics.taskEnded,
	})
	if err != nil {
		return err
	}
	if err := d.joinGroup(ctx, g); err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	d.gw = g
	c := d.conf.Gateway
	if c.Listen == "" {
		return nil
	}
	trusted, err := c.trusted()
	if err != nil {
		return err
	}
	// Outside the metrics: they read the route the gateway's mux sets on
	// the request it is given, which a traced call's is a copy of.
	h := d.traces.traceCalls(d.metrics.gateway(gateway.NewHandler(g, gateway.HandlerConfig{TrustedProxies: trusted, Logger: d.log.With("component", "gateway-http")})))
	srv, err := gateway.Serve(gateway.ServerConfig{Addr: c.Listen, CertFile: d.inHome(c.CertFile), KeyFile: d.inHome(c.KeyFile)}, h)
	if err != nil {
		return err
	}
	d.gwServer = srv
	d.log.Info("gateway serving", "url", srv.URL())
	return nil
}

// gatewayRunner is what the gateway uses of its node: the job API, and
// calls of warm instances over the call streams (or to the node's own
// Node). It cancels (releases) jobs while the node closes too.
type gatewayRunner struct{ *DMS }

var _ gateway.Caller = gatewayRunner{}

// CancelJob releases a warm instance; it works while the node closes.
func (r gatewayRunner) CancelJob(ctx context.Context, id string) error { return r.cancelJob(ctx, id) }

// Call sends a call to a warm instance on peer: over the call streams, or
// to this node's own Node. A traced call (its caller's span records)
// carries its trace context to the provider.
func (r gatewayRunner) Call(ctx context.Context, peer string, req *types.CallRequest) (*types.CallReply, error) {
	if trace.SpanFromContext(ctx).IsRecording() {
		return r.traces.hop(ctx, peer, req, r.send)
	}
	return r.send(ctx, peer, req)
}

// send sends a call to a warm instance on peer.
func (r gatewayRunner) send(ctx context.Context, peer string, req *types.CallRequest) (*types.CallReply, error) {
	if peer != r.host.ID() {
		return r.host.Call(ctx, peer, nil, req)
	}
	return r.callNode(ctx, peer, req), nil
}

// serveCalls answers calls of warm instances from requesters on the call
// streams.
func (d *DMS) serveCalls() { d.host.HandleCalls(d.callNode) }

// callNode runs a call of requester from on this node's warm instances,
// timed by a span when the requester traced it; a node that offers no
// compute has none.
func (d *DMS) callNode(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
	if req.Trace != "" {
		return d.traces.served(ctx, from, req, d.runCall)
	}
	return d.runCall(ctx, from, req)
}

// runCall runs a call of requester from on this node's warm instances.
func (d *DMS) runCall(ctx context.Context, from string, req *types.CallRequest) *types.CallReply {
	if d.node == nil {
		return &types.CallReply{Seq: req.Seq, Status: types.CallUnknown, Error: "no such warm instance"}
	}
	return d.node.Call(ctx, from, req)
}

// inHome resolves a config file's path against the home; "" stays "".
func (d *DMS) inHome(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(d.home, path)
}

// localHandler is the node's local API: the job API (package api) and,
// under the gateway's paths, the gateway acting for the operator (accounts,
// invoices) and, with the DMS-Account header, as any account. Both take
// the token.
func (d *DMS) localHandler(token string) http.Handler {
	mux := http.NewServeMux()
	gw := d.metrics.gateway(gateway.NewHandler(d.gw, gateway.HandlerConfig{AdminToken: token, Logger: d.log.With("component", "api")}))
	for _, p := range []string{"/v1/accounts", "/v1/functions", "/v1/endpoints", "/v1/tasks", "/v1/tags", "/v1/gateway", "/v1/invoices", "/v1/payouts"} {
		mux.Handle(p, gw)
		mux.Handle(p+"/", gw)
	}
	mux.Handle(dashboard.Prefix, d.dashboard(token))
	mux.Handle("/", api.NewHandler(d, token, d.log.With("component", "api")))
	return mux
}

// Gateway returns the node's gateway (nil before Start): the Go API of
// functions over HTTP. As an operator:
//
//	acct, key, err := d.Gateway().CreateAccount(ctx, "acme")
//	svc, err := d.Gateway().As(ctx, "acme")
//	rev, err := svc.Deploy(ctx, gateway.Deploy{Name: "echo", Module: cid})
//	resp, err := svc.Invoke(ctx, "echo", gateway.Call{Method: "POST", Body: body})
func (d *DMS) Gateway() *gateway.Gateway {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gw
}

// GatewayURL is the gateway's base URL, such as http://127.0.0.1:8080;
// "" when the node serves no gateway.
func (d *DMS) GatewayURL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gwServer == nil {
		return ""
	}
	return d.gwServer.URL()
}

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/jobs"
)

// probeWait bounds how long a cluster waits for its requester's bid
// requests to reach every computing node.
const probeWait = 20 * time.Second

// quickLease is the nodes' lease with Options.Quick (dms.DefaultLease
// otherwise).
const quickLease = 5 * time.Second

// cluster is the network of the in-process scenarios: node 0 submits every
// job and offers no compute (a requester, like `dms run --compute=false`);
// the others run the jobs.
// benchBidRate is the bid requests a second (and at once) the nodes of a
// scenario's network accept from each requester.
const benchBidRate = 10_000

type cluster struct {
	*Network
	req    *dms.DMS
	module string     // the CID of the scenario's module, held by req
	spec   *jobs.Spec // a job running the module (tinySpec); scenarios change a copy (jobSpec)
}

// runner runs n jobs of spec on svc and checks their output against want:
// runMany (one after another) or runBurst (all at once).
type runner func(ctx context.Context, svc service, spec *jobs.Spec, want []byte, n int) []run

// warmUp runs warm jobs of spec before a scenario measures, so that every
// node has fetched and compiled its module: the first run of a module is
// not what the scenarios time.
func (c *cluster) warmUp(ctx context.Context, o Options, spec *jobs.Spec, want []byte, warm int, runN runner) error {
	if err := firstError(runN(ctx, c.req, spec, want, warm)); err != nil {
		return fmt.Errorf("bench: warm-up: %w", err)
	}
	o.Log.Info("warmed up", "jobs", warm)
	return nil
}

// startCluster starts nodes nodes, with extra options each, stores module
// on node 0 and waits until a bid request from node 0 reaches every other
// node.
func startCluster(ctx context.Context, o Options, nodes int, module []byte, extra ...dms.Option) (*cluster, error) {
	return startClusterWith(ctx, o, nodes, 1, module, func(int) []dms.Option { return extra })
}

// startClusterWith is startCluster with requesters nodes that offer no
// compute, the first ones (node 0 is c.req), each holding module, pinned,
// and reaching every computing node, and with options(i) for node i.
func startClusterWith(ctx context.Context, o Options, nodes, requesters int, module []byte, options func(i int) []dms.Option) (_ *cluster, err error) {
	began := time.Now()
	dir := ""
	if o.Dir != "" {
		if dir, err = os.MkdirTemp(o.Dir, "net-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	compute := func(i int) bool { return i >= requesters }
	net, err := StartNetwork(ctx, NetworkConfig{Nodes: nodes, Dir: dir, Compute: compute, Options: func(i int) []dms.Option {
		// The network's rate limit on each requester's bid requests (50 a
		// second by default, a guard against floods) is raised on every
		// node, as an operator placing thousands of jobs a second would.
		opts := []dms.Option{dms.WithBidRequestRate(benchBidRate, benchBidRate)}
		if o.Quick {
			// Quick runs are for the tests, under the race detector on a
			// loaded machine, where a node can miss its heartbeats for a
			// second: a spurious loss would fail a job they check.
			opts = append(opts, dms.WithLease(quickLease))
		}
		return append(opts, options(i)...)
	}})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, net.Close())
		}
	}()
	c := &cluster{Network: net, req: net.Nodes[0]}
	for _, req := range net.Nodes[:requesters] {
		if c.module, err = req.PutBlob(ctx, bytes.NewReader(module)); err != nil {
			return nil, fmt.Errorf("bench: storing the module: %w", err)
		}
		// Pinned, as a user who submits job after job of one module by
		// its CID would: between jobs nothing references it, and under a
		// tight store budget (disk) the collector may take it once it was
		// last used store.min_blob_age ago.
		if err := req.Pin(ctx, c.module); err != nil {
			return nil, fmt.Errorf("bench: pinning the module: %w", err)
		}
		if err := waitBidders(ctx, req, c.module, nodes-requesters, probeWait); err != nil {
			return nil, err
		}
	}
	if c.spec, err = tinySpec(c.module); err != nil {
		return nil, err
	}
	o.Log.Info("network ready", "nodes", nodes, "took", time.Since(began).Round(time.Millisecond))
	return c, nil
}

// closeInto closes c and joins its error into *err, for defer.
func closeInto(c interface{ Close() error }, err *error) {
	*err = errors.Join(*err, c.Close())
}

// jobSpec returns a copy of the cluster's job spec, for a scenario to change.
func (c *cluster) jobSpec() *jobs.Spec {
	s := *c.spec
	return &s
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/bench"
	"github.com/opendms/dms/jobs"
)

const (
	maxDevstackNodes = 200
	peerWait         = 15 * time.Second // how long nodes get to find a peer
	// devstackBench is each benchmark phase's length: short, because the
	// nodes share one machine and a devstack of 200 must start in seconds.
	devstackBench = 20 * time.Millisecond
)

// devstackFlags are the flags of `dms devstack`.
type devstackFlags struct {
	nodes     int
	job       string
	flow      string
	basePort  int
	logLevel  string
	logFormat string
	otlp      string
}

func (c *cli) devstackCmd() *cobra.Command {
	var f devstackFlags
	cmd := &cobra.Command{
		Use:   "devstack",
		Short: "Run a network of N real nodes over loopback in this process (homes in a temporary directory)",
		Long: `Run a network of N real libp2p nodes over loopback in this process, each with
its own home in a temporary directory removed at exit. Node 0 serves the API;
the others join through it. With --job, run that job on node 0, print its
output and exit with the job's status; with --flow, run that flow on node 0
(docs/workflows.md), print its outputs and exit with the flow's status;
without either, serve until interrupted. --home is not used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.devstack(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.IntVarP(&f.nodes, "nodes", "n", 3, "number of nodes, 1 to 200")
	fl.StringVar(&f.job, "job", "", "job spec FILE to run on node 0, then exit")
	fl.StringVar(&f.flow, "flow", "", "flow FILE to run on node 0, then exit")
	fl.IntVar(&f.basePort, "base-port", 0, "node i listens on TCP and UDP port base+i; 0 picks free ports")
	fl.StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", logFormatUsage)
	fl.StringVar(&f.otlp, "otlp-endpoint", "", "export every node's traces to this OTLP/HTTP collector, such as http://localhost:4318")
	return cmd
}

func (f devstackFlags) validate() error {
	if f.nodes < 1 || f.nodes > maxDevstackNodes {
		return fmt.Errorf("--nodes %d: want 1 to %d", f.nodes, maxDevstackNodes)
	}
	if f.job != "" && f.flow != "" {
		return errors.New("--job and --flow: give one of them")
	}
	if f.basePort < 0 || f.basePort > 0 && f.basePort+f.nodes-1 > 65535 {
		return fmt.Errorf("--base-port %d: ports %d..%d are not all valid", f.basePort, f.basePort, f.basePort+f.nodes-1)
	}
	if err := dms.CheckOTLPEndpoint(f.otlp); err != nil {
		return fmt.Errorf("--otlp-endpoint: %w", err)
	}
	return nil
}

func (c *cli) devstack(ctx context.Context, f devstackFlags) (err error) {
	if err := f.validate(); err != nil {
		return err
	}
	logger, err := newLogger(c.stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	var spec *jobs.Spec
	if f.job != "" {
		if spec, err = jobs.ParseFile(f.job); err != nil {
			return err
		}
	}
	var flow *jobs.Flow
	if f.flow != "" {
		if flow, err = jobs.ParseFlowFile(f.flow); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "dms-devstack-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	net, err := bench.StartNetwork(ctx, bench.NetworkConfig{
		Nodes: f.nodes, Dir: dir, BasePort: f.basePort, Logger: logger,
		Options:       func(i int) []dms.Option { return append(devstackAPI(i), devstackOTLP(f.otlp)...) },
		BenchDuration: devstackBench, Ready: bench.ReadyAnyPeer, ReadyTimeout: peerWait,
	})
	if errors.Is(err, bench.ErrNotReady) {
		return fmt.Errorf("%w: run with --log-level debug to see why", err)
	}
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, net.Close()) }()
	if spec != nil {
		return exitWith(c.runJob(ctx, net.Nodes[0], spec, false))
	}
	if flow != nil {
		return c.runFlow(ctx, net.Nodes[0], flow, false, errDevstackStopped)
	}
	return c.serveDevstack(ctx, net.Nodes, net.Homes[0])
}

// errDevstackStopped is how a devstack's flow ends on Ctrl-C: the network
// stops, and the flow with it.
var errDevstackStopped = errors.New("interrupted: the devstack stops, and the flow with it")

// devstackAPI gives node 0, and only node 0, the API.
func devstackAPI(i int) []dms.Option {
	if i == 0 {
		return []dms.Option{dms.WithAPI("127.0.0.1:0")}
	}
	return nil
}

// devstackOTLP exports every node's spans to endpoint, if set.
func devstackOTLP(endpoint string) []dms.Option {
	if endpoint == "" {
		return nil
	}
	return []dms.Option{dms.WithOTLPEndpoint(endpoint)}
}

// devstackNode describes one node for the devstack's JSON output.
type devstackNode struct {
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
}

// serveDevstack prints the nodes and node 0's API endpoint, then waits for ctx.
func (c *cli) serveDevstack(ctx context.Context, nodes []*dms.DMS, home0 string) error {
	e, err := api.ReadEndpoint(home0)
	if err != nil {
		return err
	}
	list := make([]devstackNode, len(nodes))
	for i, d := range nodes {
		info, err := d.Node(ctx)
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		list[i] = devstackNode{PeerID: info.PeerID, Addrs: info.Addrs}
	}
	out := map[string]any{"nodes": list, "api": e, "home": home0}
	if err := c.print(out, func(w io.Writer) error { return writeDevstack(w, list, e, home0) }); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func writeDevstack(w io.Writer, list []devstackNode, e api.Endpoint, home0 string) error {
	rows := make([][]string, len(list))
	for i, n := range list {
		rows[i] = []string{strconv.Itoa(i), n.PeerID, orNone(n.Addrs)[0]}
	}
	if err := writeTable(w, []string{"NODE", "PEER", "ADDR"}, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nnode 0 API: %s (token %s)\ntry: DMS_HOME=%s dms job run job.yaml\nCtrl-C stops the network and removes its homes\n",
		e.Addr, e.Token, home0)
	return err
}

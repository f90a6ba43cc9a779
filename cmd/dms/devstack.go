package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

const (
	maxDevstackNodes = 200
	peerWait         = 15 * time.Second      // how long nodes get to find a peer
	peerPoll         = 20 * time.Millisecond // how often they are asked
	// devstackBench is each benchmark phase's length: short, because the
	// nodes share one machine and a devstack of 200 must start in seconds.
	devstackBench = 20 * time.Millisecond
)

// devstackFlags are the flags of `dms devstack`.
type devstackFlags struct {
	nodes    int
	job      string
	basePort int
	logLevel string
}

func (c *cli) devstackCmd() *cobra.Command {
	var f devstackFlags
	cmd := &cobra.Command{
		Use:   "devstack",
		Short: "Run a network of N real nodes over loopback in this process (homes in a temporary directory)",
		Long: `Run a network of N real libp2p nodes over loopback in this process, each with
its own home in a temporary directory removed at exit. Node 0 serves the API;
the others join through it. With --job, run that job on node 0, print its
output and exit with the job's status; without, serve until interrupted.
--home is not used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.devstack(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.IntVarP(&f.nodes, "nodes", "n", 3, "number of nodes, 1 to 200")
	fl.StringVar(&f.job, "job", "", "job spec FILE to run on node 0, then exit")
	fl.IntVar(&f.basePort, "base-port", 0, "node i listens on TCP and UDP port base+i; 0 picks free ports")
	fl.StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	return cmd
}

func (f devstackFlags) validate() error {
	if f.nodes < 1 || f.nodes > maxDevstackNodes {
		return fmt.Errorf("--nodes %d: want 1 to %d", f.nodes, maxDevstackNodes)
	}
	if f.basePort < 0 || f.basePort > 0 && f.basePort+f.nodes-1 > 65535 {
		return fmt.Errorf("--base-port %d: ports %d..%d are not all valid", f.basePort, f.basePort, f.basePort+f.nodes-1)
	}
	return nil
}

func (c *cli) devstack(ctx context.Context, f devstackFlags) (err error) {
	if err := f.validate(); err != nil {
		return err
	}
	logger, err := newLogger(c.stderr, f.logLevel)
	if err != nil {
		return err
	}
	var spec *jobs.Spec
	if f.job != "" {
		if spec, err = jobs.ParseFile(f.job); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "dms-devstack-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	nodes, err := startNodes(ctx, dir, f, logger)
	defer func() { err = errors.Join(err, closeNodes(nodes)) }()
	if err != nil {
		return err
	}
	if err := waitPeers(ctx, nodes); err != nil {
		return err
	}
	if spec != nil {
		return exitWith(c.runJob(ctx, nodes[0], spec, false))
	}
	return c.serveDevstack(ctx, nodes, nodeHome(dir, 0))
}

// startNodes inits and starts f.nodes nodes, node 0 first; the others
// bootstrap from it. On error it returns the nodes started so far.
func startNodes(ctx context.Context, dir string, f devstackFlags, logger *slog.Logger) ([]*dms.DMS, error) {
	var nodes []*dms.DMS
	var boot []string
	for i := range f.nodes {
		d, err := startNode(ctx, nodeHome(dir, i), i, nodeOptions(i, f.basePort, boot, logger))
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, d)
		if i == 0 {
			info, err := d.Node(ctx)
			if err != nil {
				return nodes, fmt.Errorf("node 0: %w", err)
			}
			boot = info.Addrs
		}
	}
	return nodes, nil
}

func nodeHome(dir string, i int) string { return filepath.Join(dir, "node"+strconv.Itoa(i)) }

// nodeOptions configures node i: loopback listeners, the API on node 0 only,
// and node 0's addresses as bootstrap peers for the others.
func nodeOptions(i, basePort int, boot []string, logger *slog.Logger) []dms.Option {
	port := 0
	if basePort > 0 {
		port = basePort + i
	}
	opts := []dms.Option{
		dms.WithListen(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port), fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", port)),
		dms.WithLogger(logger.With("node", i)),
	}
	if i == 0 {
		return append(opts, dms.WithAPI("127.0.0.1:0"))
	}
	return append(opts, dms.WithAPI(""), dms.WithBootstrap(boot...))
}

// startNode creates a home and starts a node in it.
func startNode(ctx context.Context, home string, i int, opts []dms.Option) (*dms.DMS, error) {
	if _, err := dms.Init(ctx, home, dms.InitOptions{BenchDuration: devstackBench}); err != nil {
		return nil, fmt.Errorf("node %d: init: %w", i, err)
	}
	d, err := dms.New(append(opts, dms.WithHome(home))...)
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", i, err)
	}
	if err := d.Start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("node %d: start: %w", i, err), d.Close())
	}
	return d, nil
}

// closeNodes closes the nodes, last started first.
func closeNodes(nodes []*dms.DMS) error {
	var errs []error
	for i := len(nodes) - 1; i >= 0; i-- {
		if err := nodes[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("node %d: close: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// waitPeers waits until every node sees at least one peer, or peerWait passes.
func waitPeers(ctx context.Context, nodes []*dms.DMS) error {
	if len(nodes) < 2 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, peerWait)
	defer cancel()
	for i, d := range nodes {
		if err := waitPeer(wctx, d); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("node %d found no peer within %s (%w): run with --log-level debug to see why", i, peerWait, err)
		}
	}
	return nil
}

// waitPeer polls d until it sees a peer or ctx ends.
func waitPeer(ctx context.Context, d *dms.DMS) error {
	tick := time.NewTicker(peerPoll)
	defer tick.Stop()
	for {
		peers, err := d.Peers(ctx)
		if err == nil && len(peers) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
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

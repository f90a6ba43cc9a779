package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/opendms/dms/dms"
)

// Ready says when StartNetwork considers a network ready.
type Ready int

const (
	// ReadyMesh waits until every node is connected to every other node.
	// Scenarios use it: a bid request from any node then reaches every
	// computing node directly.
	ReadyMesh Ready = iota
	// ReadyAnyPeer waits until every node is connected to some peer: enough
	// for a large devstack, whose nodes never all connect to each other.
	ReadyAnyPeer
)

// Defaults of NetworkConfig.
const (
	// DefaultBenchDuration is each capability benchmark phase at init: short,
	// because the nodes share one machine and must start in seconds.
	DefaultBenchDuration = 20 * time.Millisecond
	// DefaultReadyTimeout bounds the wait for a network to be ready.
	DefaultReadyTimeout = 15 * time.Second

	readyPoll = 20 * time.Millisecond
)

// NetworkConfig describes a network of real nodes on loopback.
type NetworkConfig struct {
	Nodes int // at least 1
	// Dir holds the homes node0 ... node<N-1>; "" makes a temporary
	// directory that Close removes.
	Dir string
	// BasePort: node i listens on TCP and UDP port BasePort+i; 0 picks free
	// ports.
	BasePort int
	// Compute says whether node i offers compute; nil: every node does.
	Compute func(i int) bool
	// Options returns more options for node i. They come after the
	// defaults (a home, loopback listeners, no API, compute as above, and
	// node 0's addresses as bootstrap peers for the others), so they
	// override them: dms.WithAPI("127.0.0.1:0") gives node i an API.
	Options func(i int) []dms.Option
	// Logger receives every node's logs, tagged node=i; nil discards them.
	Logger *slog.Logger
	// BenchDuration is each benchmark phase of dms.Init (default
	// DefaultBenchDuration).
	BenchDuration time.Duration
	Ready         Ready
	ReadyTimeout  time.Duration // default DefaultReadyTimeout
}

func (c *NetworkConfig) validate() error {
	if c.Nodes < 1 {
		return fmt.Errorf("%w: %d nodes: want at least 1", ErrBadConfig, c.Nodes)
	}
	if c.BasePort < 0 || c.BasePort > 0 && c.BasePort+c.Nodes-1 > 65535 {
		return fmt.Errorf("%w: base port %d: ports %d..%d are not all valid", ErrBadConfig, c.BasePort, c.BasePort, c.BasePort+c.Nodes-1)
	}
	if c.Compute == nil {
		c.Compute = func(int) bool { return true }
	}
	if c.Options == nil {
		c.Options = func(int) []dms.Option { return nil }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.BenchDuration <= 0 {
		c.BenchDuration = DefaultBenchDuration
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	return nil
}

// Network is a set of nodes started by StartNetwork, in one process.
type Network struct {
	Nodes []*dms.DMS
	Homes []string

	dir       string
	removeDir bool
	closeOnce sync.Once
	closeErr  error
}

// StartNetwork inits and starts c.Nodes nodes on 127.0.0.1 (TCP and QUIC),
// node 0 first; the others bootstrap from it. It returns once the network
// is ready (c.Ready), or an error wrapping ErrNotReady when it is not
// within c.ReadyTimeout. On error every node it started is closed again.
// The caller must Close the network.
func StartNetwork(ctx context.Context, c NetworkConfig) (_ *Network, err error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	n := &Network{dir: c.Dir}
	if n.dir == "" {
		if n.dir, err = os.MkdirTemp("", "dms-net-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		n.removeDir = true
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()
	var boot []string
	for i := range c.Nodes {
		home := filepath.Join(n.dir, "node"+strconv.Itoa(i))
		d, err := startNode(ctx, home, c.BenchDuration, nodeOptions(c, i, boot))
		if err != nil {
			return nil, fmt.Errorf("bench: node %d: %w", i, err)
		}
		n.Nodes, n.Homes = append(n.Nodes, d), append(n.Homes, home)
		if i == 0 {
			info, err := d.Node(ctx)
			if err != nil {
				return nil, fmt.Errorf("bench: node 0: %w", err)
			}
			boot = info.Addrs
		}
	}
	return n, n.waitReady(ctx, c.Ready, c.ReadyTimeout)
}

// nodeOptions configures node i (see NetworkConfig.Options).
func nodeOptions(c NetworkConfig, i int, boot []string) []dms.Option {
	port := 0
	if c.BasePort > 0 {
		port = c.BasePort + i
	}
	opts := []dms.Option{
		dms.WithListen(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port), fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", port)),
		dms.WithAPI(""),
		dms.WithCompute(c.Compute(i)),
		dms.WithLogger(c.Logger.With("node", i)),
	}
	if i > 0 {
		opts = append(opts, dms.WithBootstrap(boot...))
	}
	return append(opts, c.Options(i)...)
}

// startNode creates a home and starts a node in it.
func startNode(ctx context.Context, home string, bench time.Duration, opts []dms.Option) (*dms.DMS, error) {
	if _, err := dms.Init(ctx, home, dms.InitOptions{BenchDuration: bench}); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	d, err := dms.New(append(opts, dms.WithHome(home))...)
	if err != nil {
		return nil, err
	}
	if err := d.Start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("start: %w", err), d.Close())
	}
	return d, nil
}

// waitReady polls every node's peers until the network is ready.
func (n *Network) waitReady(ctx context.Context, r Ready, limit time.Duration) error {
	if len(n.Nodes) < 2 {
		return nil
	}
	ids := make([]string, len(n.Nodes))
	for i, d := range n.Nodes {
		ids[i] = d.ID().PeerID
	}
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for i, d := range n.Nodes {
		want := slices.Delete(slices.Clone(ids), i, i+1)
		if err := waitPeers(wctx, d, r, want); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: node %d: %w within %s", ErrNotReady, i, err, limit)
		}
	}
	return nil
}

// waitPeers polls d until it is connected to every peer of want (ReadyMesh)
// or to any peer (ReadyAnyPeer), or ctx ends.
func waitPeers(ctx context.Context, d *dms.DMS, r Ready, want []string) error {
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	missing := len(want)
	for {
		peers, err := d.Peers(ctx)
		if err == nil {
			missing = len(want)
			for _, p := range peers {
				if slices.Contains(want, p.ID) {
					missing--
				}
			}
			if r == ReadyAnyPeer && len(peers) > 0 || missing == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			if r == ReadyAnyPeer {
				return errors.New("found no peer")
			}
			return fmt.Errorf("not connected to %d of its %d peers", missing, len(want))
		case <-tick.C:
		}
	}
}

// Close closes the nodes, last started first (a node closed already is
// skipped), and removes the homes if StartNetwork made their directory. It
// is safe to call more than once.
func (n *Network) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		for i := len(n.Nodes) - 1; i >= 0; i-- {
			if err := n.Nodes[i].Close(); err != nil {
				errs = append(errs, fmt.Errorf("bench: node %d: close: %w", i, err))
			}
		}
		if n.removeDir {
			errs = append(errs, os.RemoveAll(n.dir))
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// Index returns the index of the node with PeerID id, or -1.
func (n *Network) Index(id string) int {
	return slices.IndexFunc(n.Nodes, func(d *dms.DMS) bool { return d.ID().PeerID == id })
}

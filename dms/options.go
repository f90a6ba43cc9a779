package dms

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// Option configures a DMS. Options validate their arguments and New returns
// the first error.
type Option func(*config) error

type config struct {
	home      string
	listen    []string
	bootstrap []string
	compute   *bool // nil: as the config file says
	apiAddr   *string
	apiRemote bool
	metrics   *string // nil: as the config file says
	docker    *DockerConfig
	idle      *node.IdleConfig // WithIdleOnly's fields over offer.idle
	store     *StoreConfig
	gateway   *GatewayConfig
	// gatewayListen overlays the gateway section's address and TLS pair.
	gatewayListen *gatewayListen
	// gatewayGroup replaces the gateway section's group.
	gatewayGroup *GroupConfig
	flowCache    *FlowCacheConfig
	bidRate      *NetworkConfig // only its bid-request rate and burst
	holdShare    float64        // 0: as the config file says
	logger       *slog.Logger
	clock        func() time.Time
	benchmark    bool // run a fresh benchmark at start even if one is stored
	lease        time.Duration
	confirm      time.Duration // 0: the orchestrator's default
	sampling     *int          // bid requests go to this many sampled nodes; 0: gossip to all; nil: the config file's
	sampleAbove  int           // network.sample_above over the config file's; 0: the file's
	dht          string        // network.dht over the config file's; "": the file's
	locality     float64       // orchestrator.Config.LocalityWeight: 0 the default, NoLocality off
	inMemory     bool          // the database lives in memory, seeded from the home's
	connsLow     int           // connection manager watermarks; 0: p2p's defaults
	connsHigh    int
	// heartbeatGate, when set, is asked before every frame this node sends
	// on an invocation stream; false drops the frame. Tests only: it cuts a
	// node off silently without closing its connections.
	heartbeatGate func(types.AllocationID) bool
	failpoint     func(name string)                 // nil: none (see WithFailpoint)
	settler       gateway.Settler                   // nil: gateway.RecordOnly (see WithSettler)
	execWrap      func(jobs.Executor) jobs.Executor // nil: none (see WithExecutorWrap)
	otlpEndpoint  *string                           // nil: as the config file says
	callSample    *float64                          // nil: as the config file says
}

// DefaultLease is how long a requester waits for a frame (a status or a
// heartbeat) from the node running its job before it declares the node lost.
const DefaultLease = time.Second

// WithLease sets how long an allocation's status stream may stay silent
// before its node is declared lost and the job placed again (default
// DefaultLease, at least 100ms). Nodes send a heartbeat every quarter of
// the lease their requester names. Shorter detects a lost node sooner; it
// also declares nodes lost on a network whose delays approach three
// quarters of it (docs/reliability.md).
func WithLease(d time.Duration) Option {
	return func(c *config) error {
		if d < minLease || d > maxLease {
			return fmt.Errorf("dms: WithLease: %s is outside %s to %s", d, minLease, maxLease)
		}
		c.lease = d
		return nil
	}
}

// WithConfirmTimeout sets how long the winner of an auction has to confirm
// its lock before the next bidder is offered the job (default 2s, at most
// a minute). A longer one suits slow or overloaded networks, where a
// confirmation that comes late is wasted: the lock it reports is released.
func WithConfirmTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < minConfirm || d > maxConfirm {
			return fmt.Errorf("dms: WithConfirmTimeout: %s is outside %s to %s", d, minConfirm, maxConfirm)
		}
		c.confirm = d
		return nil
	}
}

// Bounds of WithLease and WithConfirmTimeout.
const (
	minLease   = 100 * time.Millisecond
	maxLease   = 10 * time.Minute
	minConfirm = 10 * time.Millisecond
	maxConfirm = time.Minute
)

// MaxBidSampling bounds WithBidSampling.
const MaxBidSampling = 100

// WithBidSampling sets how many compute nodes this node's bid requests go
// to, over network.sampling (whose default, auto, gossips them until the
// node knows network.sample_above compute nodes that may fit the job,
// then samples DefaultBidSampling). 0 publishes each on the gossip topic,
// which reaches every node: O(N) messages a job. d >= 1 sends it straight
// to d compute nodes chosen uniformly at random among those advertised in
// the DHT whose class of offered cores may fit the job (power of d
// choices, as in the Sparrow scheduler), from a cache the node keeps fresh
// in the background, so submitting never waits for a DHT lookup. The
// auction then closes as soon as those d answered and offers the job to
// the best bid first. While the node knows fewer than d such nodes, as
// right after it joined, bid requests go out on gossip.
func WithBidSampling(d int) Option {
	return func(c *config) error {
		if d < 0 || d > MaxBidSampling {
			return fmt.Errorf("dms: WithBidSampling: %d is outside 0 to %d", d, MaxBidSampling)
		}
		c.sampling = &d
		return nil
	}
}

// WithSampleAbove sets network.sample_above: how many compute nodes that
// may fit a job the default sampling (auto) waits to know before it
// samples. n >= 1.
func WithSampleAbove(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("dms: WithSampleAbove: %d is below 1", n)
		}
		c.sampleAbove = n
		return nil
	}
}

// WithDHTMode sets the node's part in the DHT (network.dht): DHTServer or
// DHTClient.
func WithDHTMode(mode string) Option {
	return func(c *config) error {
		if mode != DHTServer && mode != DHTClient {
			return fmt.Errorf("dms: WithDHTMode: %q: want %q or %q", mode, DHTServer, DHTClient)
		}
		c.dht = mode
		return nil
	}
}

// MaxLocalityWeight bounds WithLocalityWeight.
const MaxLocalityWeight = 100

// WithLocalityWeight sets how much this node, as a requester, prefers a
// bidder that already holds a job's input files (input_files): a bid
// earns w times the share of the input bytes its node holds, beside price
// and capability (weight 1 each) and load (0.5), each of which scores 0 to
// 1 among the bids. The default, orchestrator.DefaultLocalityWeight (2),
// lets locality settle what price and load leave close; 0 turns locality
// off (benchmarks compare), at most MaxLocalityWeight.
func WithLocalityWeight(w float64) Option {
	return func(c *config) error {
		if !(w >= 0 && w <= MaxLocalityWeight) {
			return fmt.Errorf("dms: WithLocalityWeight: %v is outside 0 to %d", w, MaxLocalityWeight)
		}
		c.locality = w
		if w == 0 {
			c.locality = orchestrator.NoLocality
		}
		return nil
	}
}

// WithInMemoryStore keeps the node's database in memory, starting from a
// copy of the one in its home, which it never writes. Nothing the node
// records after New (jobs, allocations, locks, blobs) survives Close. For
// simulations and benchmarks that run many nodes in one process: it saves
// each node its database files and their background work.
func WithInMemoryStore() Option {
	return func(c *config) error {
		c.inMemory = true
		return nil
	}
}

// WithConnLimits sets the connection manager's watermarks: discovery stops
// dialing new peers at low connections, and above high the node trims back
// to low (defaults 256 and 512). A network of hundreds of nodes in one
// process needs them low; low must be below high, and high at most 1024.
func WithConnLimits(low, high int) Option {
	return func(c *config) error {
		if low < 1 || low >= high || high > maxConns {
			return fmt.Errorf("dms: WithConnLimits: want 1 <= low < high <= %d, got %d and %d", maxConns, low, high)
		}
		c.connsLow, c.connsHigh = low, high
		return nil
	}
}

// maxConns is the connections a node admits (p2p.Config.MaxConns' default).
const maxConns = 1024

// withHeartbeatGate installs a test-only gate on the frames this node sends
// on invocation streams (see config.heartbeatGate).
func withHeartbeatGate(open func(types.AllocationID) bool) Option {
	return func(c *config) error {
		c.heartbeatGate = open
		return nil
	}
}

// WithHome sets the node's home directory (created by Init). Required.
func WithHome(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("dms: WithHome: empty directory")
		}
		c.home = dir
		return nil
	}
}

// WithListen sets the multiaddrs to listen on, replacing the config file's.
func WithListen(addrs ...string) Option {
	return func(c *config) error {
		if len(addrs) == 0 {
			return errors.New("dms: WithListen: no address")
		}
		c.listen = append([]string(nil), addrs...)
		return nil
	}
}

// WithBootstrap adds bootstrap peers (full multiaddrs with /p2p/ID) to the
// config file's list.
func WithBootstrap(addrs ...string) Option {
	return func(c *config) error {
		c.bootstrap = append(c.bootstrap, addrs...)
		return nil
	}
}

// WithCompute sets whether this node offers compute. A node with compute off
// submits jobs and serves results but never bids.
func WithCompute(on bool) Option {
	return func(c *config) error {
		c.compute = &on
		return nil
	}
}

// WithAPI sets the local API's listen address (host:port on loopback); ""
// disables the API.
func WithAPI(addr string) Option {
	return func(c *config) error {
		c.apiAddr = &addr
		return nil
	}
}

// WithMetrics serves the node's Prometheus metrics on addr (GET /metrics
// only), replacing the config file's metrics; "" serves none. A bare
// ":PORT" binds loopback: name a host, such as 0.0.0.0:9464, to let other
// machines scrape. MetricsHandler serves the same without a listener.
func WithMetrics(addr string) Option {
	return func(c *config) error {
		if _, err := metricsAddr(addr); err != nil {
			return err // it says "dms: bad metrics address" and why: a CLI user reads it too
		}
		c.metrics = &addr
		return nil
	}
}

// WithRemoteAPI lets the API listen on a non-loopback address (see the
// config file's api_remote).
func WithRemoteAPI() Option {
	return func(c *config) error {
		c.apiRemote = true
		return nil
	}
}

// WithDocker replaces the config file's docker section: whether and how
// the node runs container jobs.
func WithDocker(c DockerConfig) Option {
	return func(o *config) error {
		if err := c.validate(); err != nil {
			return fmt.Errorf("dms: WithDocker: %w", err)
		}
		o.docker = &c
		return nil
	}
}

// WithFlowCache replaces the config file's flows.cache section: whether
// the node shares its flows' results through the DHT (share), whose shared
// results it reuses (trust: PeerIDs or did:keys, at most
// MaxFlowCacheTrust), and how long it looks for them (0: the default).
// Trust only nodes you would let run your jobs: a trusted node can hand
// this one any result it likes for a step (docs/workflows.md, The cache).
func WithFlowCache(c FlowCacheConfig) Option {
	return func(o *config) error {
		if err := c.validate(); err != nil {
			return fmt.Errorf("dms: WithFlowCache: %w", err)
		}
		o.flowCache = &c
		return nil
	}
}

// WithBidRequestRate sets how many bid requests a second, and at once,
// the node accepts from each requester, itself included (the config file's
// network.bid_request_rate and bid_request_burst; default 50 and 100). A
// network that places more jobs a second raises them on every node.
func WithBidRequestRate(perSecond float64, burst int) Option {
	return func(c *config) error {
		if perSecond <= 0 || burst <= 0 {
			return fmt.Errorf("dms: WithBidRequestRate: %v a second, burst %d: both must be positive", perSecond, burst)
		}
		c.bidRate = &NetworkConfig{BidRequestRate: perSecond, BidRequestBurst: burst}
		return nil
	}
}

// WithHoldShare sets the part of the node's offer, in each dimension, that
// one requester's bids and unstarted locks may keep while other requesters
// want room (the config file's admission.hold_share; default 0.5). A bid
// that fits in free capacity is held whatever its size; beyond the free
// capacity, a requester within its share evicts the holds of requesters
// beyond theirs. 1 turns the sharing off.
func WithHoldShare(share float64) Option {
	return func(c *config) error {
		if !(share > 0 && share <= 1) {
			return fmt.Errorf("dms: WithHoldShare: %v must be in (0, 1]", share)
		}
		c.holdShare = share
		return nil
	}
}

// WithLogger sets the structured logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("dms: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithOTLPEndpoint exports the node's spans to an OTLP/HTTP collector at
// this URL (such as http://localhost:4318), over the config file's
// traces.otlp_endpoint; "" exports them nowhere but where
// OTEL_EXPORTER_OTLP_ENDPOINT says.
func WithOTLPEndpoint(url string) Option {
	return func(c *config) error {
		if err := CheckOTLPEndpoint(url); err != nil {
			return fmt.Errorf("dms: WithOTLPEndpoint: %w", err)
		}
		c.otlpEndpoint = &url
		return nil
	}
}

// WithCallSample traces this share (0 to 1) of the gateway's calls
// whose caller sent no traceparent header, over the config file's
// traces.call_sample; 0 traces only those that sent one.
func WithCallSample(share float64) Option {
	return func(c *config) error {
		if err := CheckCallSample(share); err != nil {
			return fmt.Errorf("dms: WithCallSample: %w", err)
		}
		c.callSample = &share
		return nil
	}
}

// WithExecutorWrap wraps each executor the node runs programs with. For
// tests only: a node whose wrapper changes the output is a provider that
// fabricates results, which replicated units must outvote
// (docs/batches.md).
func WithExecutorWrap(wrap func(jobs.Executor) jobs.Executor) Option {
	return func(c *config) error {
		if wrap == nil {
			return errors.New("dms: WithExecutorWrap: nil function")
		}
		c.execWrap = wrap
		return nil
	}
}

// WithSettler makes the node's gateway pay providers through s at a
// payout (dms payout run): a payment rail. By default a payout records its
// statements and leaves paying to the operator (gateway.RecordOnly).
func WithSettler(s gateway.Settler) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("dms: WithSettler: nil settler")
		}
		c.settler = s
		return nil
	}
}

// WithFailpoint installs hit, called with the name of every failpoint the
// node passes (orchestrator.FailpointInvoke), so that a fault test can
// kill the process at that exact point; `dms run` installs one when
// DMS_FAILPOINT names a failpoint (docs/testing.md). For tests only.
func WithFailpoint(hit func(name string)) Option {
	return func(c *config) error {
		if hit == nil {
			return errors.New("dms: WithFailpoint: nil function")
		}
		c.failpoint = hit
		return nil
	}
}

// WithClock injects the clock (default time.Now), for tests and simulations.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("dms: WithClock: nil clock")
		}
		c.clock = now
		return nil
	}
}

func newConfig(opts []Option) (*config, error) {
	c := &config{logger: slog.New(slog.DiscardHandler), clock: time.Now, lease: DefaultLease}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.home == "" {
		return nil, fmt.Errorf("dms: no home directory: use WithHome")
	}
	return c, nil
}

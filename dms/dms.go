package dms

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/gateway/group"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/dms/internal/tracing"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/jobs/docker"
	"github.com/opendms/dms/jobs/wasm"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// MaxBlobSize bounds every blob a node stores, serves or fetches: modules,
// inputs and outputs.
const MaxBlobSize = 256 << 20

// DMS is one node of the network: libp2p host, Kademlia DHT, gossipsub, actor
// system, store, Node (when it offers compute) and orchestrator, and the
// local API. It implements api.Service. Its methods are safe for concurrent use.
type DMS struct {
	opts     *config
	conf     Config
	sampling sampling // conf.Network's, read at start
	// gossip publishes this node's bid requests on the topic, several in
	// one message under load (bidbatch.go); batchedBidRequests counts
	// those it published so.
	gossip             *gossipBatcher
	batchedBidRequests atomic.Uint64
	home               string
	key                ed25519.PrivateKey
	uuid               string
	db                 *store.DB
	blobs              *store.Blobs
	log                *slog.Logger
	gc                 *collector
	// metrics is the node's own Prometheus registry and the instruments
	// counted as events happen (metrics.go).
	metrics *metrics
	// recordCID names the signed capability record this node publishes:
	// a blob the collector keeps.
	recordCID atomic.Value // string
	peerRecs  *peerRecords // what connected peers offer (peerrecords.go)

	mu      sync.Mutex // guards the fields below
	started bool
	closed  bool
	id      types.NodeID
	record  types.CapabilityRecord
	// signedRecord is record as signed: the blob id.CapabilityCID names.
	signedRecord []byte

	host   *p2p.Host
	system *actor.ActorSystem
	exec   *wasm.Executor
	docker *docker.Executor // nil when the node runs no containers
	// executors are those the node offers now (its record's): docker
	// comes and goes with its engine.
	executors []string
	node      *node.Node // nil when the node offers no compute
	orch      *orchestrator.Orchestrator
	api       *api.Server
	// metricsSrv serves GET /metrics; nil without a metrics address.
	metricsSrv *api.Server
	gw         *gateway.Gateway // functions over HTTP: state and calls
	gwServer   *gateway.Server  // its HTTP listener; nil without gateway.listen
	grp        *group.Group     // the gateway's group; nil without gateway.group
	traces     *traces          // this node's spans of jobs (trace.go)
	flows      *flows           // the workflows this node runs
	shared     *sharedCache     // their results shared through the DHT
	batches    *batches         // the batches this node runs
	// restored is closed once every job of a previous run is back in the
	// orchestrator: those that go to a new auction wait for the network.
	restored chan struct{}

	receiptsRefused atomic.Uint64 // receipts refused since the start
	// held are the jobs of this node that hold credits of an account of
	// its gateway (holds.go): their holds go when they end.
	held sync.Map // types.JobID -> struct{}
	// up is set once Start has set every part: handlers that may run
	// while it starts (receipts) read the parts only once it is.
	up atomic.Bool

	ctx       context.Context // cancelled by Close: parent of background work
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ api.Service = (*DMS)(nil)

// New opens a node home (see Init) with its config file, key and database.
// It does not touch the network: Start does.
func New(opts ...Option) (*DMS, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	key, err := readKey(c.home)
	if err != nil {
		return nil, err
	}
	conf, err := LoadConfig(c.home)
	if err != nil {
		return nil, err
	}
	c.apply(&conf)
	if err := conf.Gateway.validate(); err != nil {
		return nil, fmt.Errorf("dms: %w", err)
	}
	if err := conf.checkIdle(); err != nil {
		return nil, fmt.Errorf("dms: %w", err)
	}
	db, err := c.openStore()
	if err != nil {
		return nil, err
	}
	d := &DMS{opts: c, conf: conf, home: c.home, key: key, db: db, blobs: db.Blobs(MaxBlobSize), log: c.logger, executors: offeredExecutors(false), restored: make(chan struct{})}
	if err := db.Get(uuidKey, &d.uuid); err != nil {
		db.Close()
		return nil, fmt.Errorf("dms: %s: node UUID: %w (re-run dms init)", c.home, err)
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.gc = newCollector(d)
	d.peerRecs = newPeerRecords()
	d.metrics = newMetrics(d)
	d.flows = &flows{d: d, runs: map[string]*flowRun{}}
	d.batches = &batches{d: d, runs: map[string]*batchRun{}, managed: map[string]*batchRun{}}
	return d, nil
}

// openStore opens the home's database, or a copy of it in memory
// (WithInMemoryStore).
func (c *config) openStore() (*store.DB, error) {
	o := storeOptions(c.home)
	o.Logger, o.Clock = c.logger.With("component", "store"), c.clock
	if c.inMemory {
		return store.OpenInMemory(o)
	}
	return store.Open(o)
}

// storeOptions places a home's database: records in db/, blobs in blobs/.
func storeOptions(home string) store.Options {
	return store.Options{Dir: filepath.Join(home, dbDir), BlobDir: filepath.Join(home, blobDir)}
}

// apply lays the options over the config file.
func (c *config) apply(conf *Config) {
	if c.listen != nil {
		conf.Listen = c.listen
	}
	conf.Bootstrap = append(conf.Bootstrap, c.bootstrap...)
	if c.compute != nil {
		conf.Compute = *c.compute
	}
	if c.apiAddr != nil {
		conf.API = *c.apiAddr
	}
	if c.apiRemote {
		conf.APIRemote = true
	}
	if c.metrics != nil {
		conf.Metrics = *c.metrics
	}
	if c.docker != nil {
		conf.Docker = *c.docker
	}
	applyIdle(c.idle, &conf.Offer.Idle)
	if c.store != nil {
		conf.Store = *c.store
	}
	if c.gateway != nil {
		conf.Gateway = *c.gateway
	}
	c.gatewayListen.apply(&conf.Gateway)
	if c.gatewayGroup != nil {
		conf.Gateway.Group = *c.gatewayGroup
	}
	if c.bidRate != nil {
		conf.Network.BidRequestRate, conf.Network.BidRequestBurst = c.bidRate.BidRequestRate, c.bidRate.BidRequestBurst
	}
	switch {
	case c.sampling == nil:
	case *c.sampling == 0:
		conf.Network.Sampling = SampleGossip
	default:
		conf.Network.Sampling = strconv.Itoa(*c.sampling)
	}
	if c.dht != "" {
		conf.Network.DHT = c.dht
	}
	if c.sampleAbove > 0 {
		conf.Network.SampleAbove = c.sampleAbove
	}
	if c.holdShare != 0 {
		conf.Admission.HoldShare = c.holdShare
	}
	if c.flowCache != nil {
		conf.Flows.Cache = *c.flowCache
	}
	if c.otlpEndpoint != nil {
		conf.Traces.OTLPEndpoint = *c.otlpEndpoint
	}
	if c.callSample != nil {
		conf.Traces.CallSample = *c.callSample
	}
}

// Start joins the network: it builds the capability record, starts the
// libp2p host (DHT, gossipsub, stream protocols), the Node actor when the
// node offers compute, the orchestrator, which resumes the unfinished jobs
// of the database, and the local API, whose address and token it writes to
// api.json in the home.
func (d *DMS) Start(ctx context.Context) (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.started {
		return errors.New("dms: already started")
	}
	defer func() {
		if err != nil {
			d.closed = true
			d.closeOnce.Do(d.stop)
		}
	}()
	if err := d.startDocker(ctx); err != nil { // first: the record lists the executors
		return err
	}
	if err := d.buildRecord(ctx); err != nil {
		return err
	}
	if err := d.startNetwork(ctx); err != nil {
		return err
	}
	if err := d.startCompute(); err != nil {
		return err
	}
	if err := d.startOrchestrator(); err != nil {
		return err
	}
	if err := d.restoreJobs(ctx); err != nil {
		return err
	}
	if err := d.indexOldProducers(); err != nil { // their results are then found in the DHT only
		d.log.Warn("results of earlier versions' jobs left out of the index of producers", "err", err)
	}
	if err := d.startGateway(ctx); err != nil {
		return err
	}
	if err := d.startAPI(); err != nil {
		return err
	}
	if err := d.startMetrics(); err != nil {
		return err
	}
	d.started = true
	d.up.Store(true)
	d.goDo(d.sweepHolds)
	if err := d.restoreFlows(); err != nil {
		return err
	}
	if err := d.serveBatches(); err != nil {
		return err
	}
	if err := d.restoreManaged(); err != nil {
		return err
	}
	if err := d.restoreBatches(); err != nil {
		return err
	}
	d.goRefreshEnergy()
	d.goWatchDocker()
	d.goCollect()
	d.log.Info("node started", "peer_id", d.id.PeerID, "compute", d.conf.Compute, "addrs", d.host.Addrs())
	return nil
}

func (d *DMS) startNetwork(ctx context.Context) error {
	psk, err := d.conf.Network.psk(d.home)
	if err != nil {
		return fmt.Errorf("dms: %w", err)
	}
	if d.sampling, err = d.conf.Network.bidSampling(); err != nil {
		return fmt.Errorf("dms: %w", err)
	}
	above := 0
	if d.sampling.auto {
		above = d.sampling.above
	}
	dhtClient, err := d.conf.Network.dhtClient()
	if err != nil {
		return fmt.Errorf("dms: %w", err)
	}
	host, err := p2p.New(ctx, p2p.Config{
		Key: d.key, Listen: d.conf.Listen, Bootstrap: d.conf.Bootstrap, PSK: psk,
		Logger: d.log.With("component", "p2p"), Clock: d.opts.clock,
		ConnsLow: d.opts.connsLow, ConnsHigh: d.opts.connsHigh,
		BidRequestRate: d.conf.Network.BidRequestRate, BidRequestBurst: d.conf.Network.BidRequestBurst,
		Compute: d.conf.Compute, ComputeCPU: d.record.Offered.CPU, Sampling: d.sampling.d > 0 && !d.sampling.auto, SampleAbove: above,
		DHTClient: dhtClient,
	})
	if err != nil {
		return err
	}
	d.host = host
	tracer, err := tracing.New(ctx, tracing.Config{Node: host.ID(), Endpoint: d.conf.Traces.OTLPEndpoint})
	if err != nil {
		return fmt.Errorf("dms: %w", err)
	}
	d.traces = newTraces(tracer, d.conf.Traces.CallSample)
	if d.shared, err = newSharedCache(d); err != nil {
		return err
	}
	d.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return d.log.With("component", "actor")
	}))
	d.registerProtocols()
	d.goPublishRecord()
	d.gossip = newGossipBatcher(d)
	d.goDo(d.gossip.run)
	return nil
}

func (d *DMS) startCompute() error {
	if !d.conf.Compute {
		return nil
	}
	exec, err := wasm.New(wasm.Config{CacheDir: filepath.Join(d.home, compiledDir)})
	if err != nil {
		return err
	}
	d.exec = exec
	adm, err := d.conf.Admission.admission(d.id.PeerID)
	if err != nil {
		return fmt.Errorf("dms: %w", err)
	}
	d.log.Info("admission", "policy", adm)
	executors := map[string]jobs.Executor{exec.Name(): exec}
	if d.docker != nil {
		executors[d.docker.Name()] = d.docker
	}
	if wrap := d.opts.execWrap; wrap != nil {
		for name, e := range executors {
			executors[name] = wrap(e)
		}
	}
	holds, err := d.conf.Admission.holds()
	if err != nil {
		return fmt.Errorf("dms: %w", err)
	}
	idle, cpu, err := d.conf.idlePolicy()
	if err != nil {
		return fmt.Errorf("dms: %w", err)
	}
	if idle != nil {
		d.log.Info("idle only: bidding only while the host's other processes leave its CPU idle",
			"threshold", d.conf.Offer.Idle.Threshold, "period", idle.Period, "stop_within", idle.StopWithin)
	}
	d.node, err = node.New(d.system, node.Config{
		ID: d.id, Record: d.record, Executors: executors, Admission: adm, Network: d.conf.Docker.Network, Holds: holds,
		WorkDir: filepath.Join(d.home, workDir), Clock: d.opts.clock, Logger: d.log.With("component", "node"),
		Idle: idle, CPU: cpu, Phase: d.traces.phase,
	}, &network{d: d}, d.db, d.blobs)
	if err != nil {
		return err
	}
	handle := func(from string, _ *types.Envelope, req *types.BidRequest) { d.bidRequested(from, req) }
	if err := d.host.SubscribeBidRequests(handle); err != nil {
		return err
	}
	d.host.ServeBidRequests(handle) // sampled bid requests, checked like those from the topic
	return nil
}

func (d *DMS) startOrchestrator() error {
	peers, err := d.loadPeers()
	if err != nil {
		return err
	}
	rank, err := ranking(d.conf.Placement)
	if err != nil {
		return err
	}
	orch, err := orchestrator.New(orchestrator.Config{
		Self: d.host.ID(), Addrs: d.host.Addrs, Clock: d.opts.clock, Logger: d.log.With("component", "orchestrator"), Ranking: rank,
		Lease: d.opts.lease, Defaults: orchestrator.Defaults{ConfirmTimeout: d.opts.confirm},
		Failpoint: d.opts.failpoint, Peers: peers, LocalityWeight: d.opts.locality, Ended: d.ended, Observer: d.metrics,
	}, &network{d: d}, jobStore{d: d})
	if err != nil {
		return err
	}
	d.orch = orch
	return nil
}

// ended is told of each of this node's jobs as it ends (from the
// orchestrator's loop: it must not block).
func (d *DMS) ended(info orchestrator.JobInfo) {
	d.metrics.jobEnded(info.State)
	d.jobEnded(info)
}

func (d *DMS) startAPI() error {
	if d.conf.API == "" {
		return nil
	}
	token, err := api.NewToken()
	if err != nil {
		return err
	}
	serve := api.Serve
	if d.conf.APIRemote {
		serve = api.ServeRemote
	}
	srv, err := serve(d.conf.API, d.localHandler(token))
	if err != nil {
		return err
	}
	d.api = srv
	return api.WriteEndpoint(d.home, api.Endpoint{Addr: srv.Addr(), Token: token})
}

// goDo runs f in a goroutine owned by d: Close cancels ctx and waits for it.
func (d *DMS) goDo(f func(ctx context.Context)) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f(d.ctx)
	}()
}

// Close stops everything Start started, in reverse order, and closes the
// database. It is safe to call more than once.
func (d *DMS) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		d.stop()
	})
	return nil
}

func (d *DMS) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	d.stopMetrics(ctx)
	cancel()
	if d.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.api.Close(ctx)
		cancel()
		_ = os.Remove(filepath.Join(d.home, api.EndpointFile))
	}
	if d.gwServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.gwServer.Close(ctx)
		cancel()
	}
	d.cancel()
	if d.gw != nil {
		_ = d.gw.Close()
	}
	if d.grp != nil {
		_ = d.grp.Close()
	}
	if d.orch != nil {
		_ = d.orch.Close()
	}
	if d.node != nil {
		_ = d.node.Close()
	}
	if d.host != nil {
		_ = d.host.Close()
	}
	d.wg.Wait()
	if d.exec != nil {
		_ = d.exec.Close(context.Background())
	}
	if d.docker != nil {
		_ = d.docker.Close()
	}
	if d.system != nil {
		d.system.Shutdown()
	}
	if d.traces != nil {
		if err := d.traces.t.Close(); err != nil {
			d.log.Warn("flushing traces to the OTLP endpoint", "err", err)
		}
	}
	_ = d.db.Close()
}

// APIAddr returns the API's listen address once started ("" when disabled).
func (d *DMS) APIAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.api == nil {
		return ""
	}
	return d.api.Addr()
}

// ID returns the node's identity (its capability CID is set by Start).
func (d *DMS) ID() types.NodeID {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.id
}

package dms

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"text/template"
	"time"

	"github.com/google/uuid"
	"github.com/libp2p/go-libp2p/core/pnet"
	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// The files of a node home.
const (
	keyFile    = "key.pem"     // the node's Ed25519 identity, PKCS#8, mode 0600
	configFile = "config.yaml" // the provider's settings, documented inline
	dbDir      = "db"          // badger: capability, locks, allocations, jobs
	blobDir    = "blobs"       // blobs (modules, inputs, outputs), a file each
	workDir    = "work"        // scratch space of running allocations
)

// Database keys of the node's own identity and capability.
const (
	uuidKey      = "node/uuid"
	hardwareKey  = "node/hardware"
	benchmarkKey = "node/benchmark"
)

// Config is the node's config file, config.yaml in its home.
type Config struct {
	Listen    []string      `yaml:"listen"`
	Bootstrap []string      `yaml:"bootstrap"`
	Network   NetworkConfig `yaml:"network"`
	Compute   bool          `yaml:"compute"`
	API       string        `yaml:"api"`
	APIRemote bool          `yaml:"api_remote"`
	Metrics   string        `yaml:"metrics"` // GET /metrics there (metricsAddr); "": none
	// Placement is how this node, as a requester, ranks the bids for its
	// jobs beside price and capability: PlaceBinpack ("" too) or PlaceSpread.
	Placement string          `yaml:"placement"`
	Admission AdmissionConfig `yaml:"admission"`
	Docker    DockerConfig    `yaml:"docker"`
	Offer     node.Offer      `yaml:"offer"`
	Store     StoreConfig     `yaml:"store"`
	Gateway   GatewayConfig   `yaml:"gateway"`
	Flows     FlowsConfig     `yaml:"flows"`
	Traces    TracesConfig    `yaml:"traces"`
}

// TracesConfig says where the node's traces go besides its own memory
// (docs/observability.md).
type TracesConfig struct {
	// OTLPEndpoint is an OTLP/HTTP collector's URL, such as
	// http://localhost:4318: the node exports its spans there. "" exports
	// to the one OTEL_EXPORTER_OTLP_ENDPOINT names, if set, else nowhere.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// CallSample is the share (0 to 1) of the gateway's calls traced
	// although their caller sent no traceparent header: 0, the default,
	// traces only those that did. A traced call costs its gateway and
	// provider a few microseconds; calls are the hot path.
	CallSample float64 `yaml:"call_sample"`
}

// NetworkConfig holds the settings of the node's libp2p host.
type NetworkConfig struct {
	// PSKFile names a libp2p pre-shared key file ("/key/swarm/psk/1.0.0/"),
	// relative to the home unless absolute. With one, the node connects only
	// to nodes holding the same key, over TCP only. "": the public network.
	PSKFile string `yaml:"psk_file"`
	// BidRequestRate and BidRequestBurst are how many bid requests a second
	// (and at once) this node accepts from each publisher, itself included:
	// a network that places more jobs a second must raise them on every
	// node. 0: 50 and 100.
	BidRequestRate  float64 `yaml:"bid_request_rate"`
	BidRequestBurst int     `yaml:"bid_request_burst"`
	// Sampling is where this node's bid requests go: "auto" ("" too) to
	// every node over gossip until the node knows SampleAbove compute
	// nodes that may fit the job, then to DefaultBidSampling of them
	// chosen at random; "gossip" always to every node; a number d (1 to
	// MaxBidSampling) to d sampled nodes whenever it knows d.
	Sampling string `yaml:"sampling"`
	// SampleAbove is how many compute nodes that may fit a job "auto"
	// waits to know; 0: DefaultSampleAbove.
	SampleAbove int `yaml:"sample_above"`
	// DHT is the node's part in the Kademlia DHT: "server" ("" too)
	// answers queries and stores other nodes' records; "client" only asks,
	// as a node behind NAT or one that only computes would run, keeping
	// fewer connections (it is in no other node's routing table). A network
	// needs servers: its bootstrap nodes at least.
	DHT string `yaml:"dht"`
}

// DHT modes (NetworkConfig.DHT).
const (
	DHTServer = "server"
	DHTClient = "client"
)

// dhtClient reads DHT.
func (n NetworkConfig) dhtClient() (bool, error) {
	switch n.DHT {
	case "", DHTServer:
		return false, nil
	case DHTClient:
		return true, nil
	}
	return false, fmt.Errorf("network.dht %q: want %q or %q", n.DHT, DHTServer, DHTClient)
}

// Sampling modes and defaults (NetworkConfig.Sampling).
const (
	SampleAuto         = "auto"
	SampleGossip       = "gossip"
	DefaultBidSampling = 2
	DefaultSampleAbove = 32
)

// sampling is where a node's bid requests go (NetworkConfig.Sampling):
// to d sampled nodes (0: gossip), with auto only once above compute nodes
// that may fit the job are known.
type sampling struct {
	d     int
	auto  bool
	above int
}

// bidSampling reads Sampling and SampleAbove.
func (n NetworkConfig) bidSampling() (sampling, error) {
	above := n.SampleAbove
	if above == 0 {
		above = DefaultSampleAbove
	}
	if above < 0 {
		return sampling{}, fmt.Errorf("network.sample_above %d: want 0 (the default, %d) or more", n.SampleAbove, DefaultSampleAbove)
	}
	switch n.Sampling {
	case "", SampleAuto:
		return sampling{d: DefaultBidSampling, auto: true, above: above}, nil
	case SampleGossip:
		return sampling{}, nil
	}
	d, err := strconv.Atoi(n.Sampling)
	if err != nil || d < 1 || d > MaxBidSampling {
		return sampling{}, fmt.Errorf("network.sampling %q: want auto, gossip or a number of nodes from 1 to %d", n.Sampling, MaxBidSampling)
	}
	return sampling{d: d}, nil
}

// The admission modes.
const (
	AdmitOpen      = "open"      // every requester may use the node
	AdmitAllowlist = "allowlist" // only the requesters in Allow, and the node itself
)

// AdmissionConfig says who may use the node's compute.
type AdmissionConfig struct {
	// Mode is AdmitOpen (also when empty) or AdmitAllowlist.
	Mode string `yaml:"mode"`
	// Allow lists the requesters admitted in allowlist mode, each a did:key
	// or a PeerID; a node always admits itself.
	Allow []string `yaml:"allow"`
	// HoldShare is the part of the node's offer, in each dimension, that
	// one requester's bids and unstarted locks may keep while others want
	// room (node.HoldPolicy.Share); 0: 0.5. In (0, 1].
	HoldShare float64 `yaml:"hold_share"`
	// HoldsPerRequester is how many bids of one requester the node holds
	// at once; 0: 64.
	HoldsPerRequester int `yaml:"holds_per_requester"`
}

// holds returns the node's hold policy, validated.
func (a AdmissionConfig) holds() (node.HoldPolicy, error) {
	p := node.HoldPolicy{Share: a.HoldShare, PerRequester: a.HoldsPerRequester}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("admission.hold_share %v / holds_per_requester %d: %w", a.HoldShare, a.HoldsPerRequester, err)
	}
	return p, nil
}

// PeerIDs validates the admission section and returns the admitted
// PeerIDs, every did:key converted to its PeerID, sorted and without
// duplicates; nil when the mode is open.
func (a AdmissionConfig) PeerIDs() ([]string, error) {
	switch a.Mode {
	case "", AdmitOpen:
		if len(a.Allow) > 0 {
			return nil, fmt.Errorf("admission.allow lists %d requesters but admission.mode is open, which admits everyone: set mode: allowlist", len(a.Allow))
		}
		return nil, nil
	case AdmitAllowlist:
	default:
		return nil, fmt.Errorf("admission.mode: %q is neither %q nor %q", a.Mode, AdmitOpen, AdmitAllowlist)
	}
	ids := make([]string, 0, len(a.Allow))
	for i, entry := range a.Allow {
		id, err := admittedPeerID(entry)
		if err != nil {
			return nil, fmt.Errorf("admission.allow[%d]: %w", i, err)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// admission returns the node's admission policy: open, or its allowlist
// and itself.
func (a AdmissionConfig) admission(self string) (node.Admission, error) {
	ids, err := a.PeerIDs()
	if err != nil || ids == nil {
		return node.Admission{}, err
	}
	return node.Allowlist(append(ids, self)...), nil
}

// DefaultConfig is what Init writes.
func DefaultConfig() Config {
	return Config{
		Listen:  []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Compute: true,
		API:     "127.0.0.1:0",
		Offer:   node.DefaultOffer(),
		Store:   StoreConfig{}.withDefaults(),
		Gateway: GatewayConfig{TaskRetention: gateway.DefaultTaskRetention},
		Flows:   FlowsConfig{Cache: FlowCacheConfig{}.withDefaults()},
	}
}

var configTemplate = template.Must(template.New("config").Parse(`# DMS node configuration (docs/config.md explains every field).
# The offer section is re-read by a running daemon on SIGHUP; the rest at restart.

# Multiaddrs to listen on. The default is loopback only: use /ip4/0.0.0.0/tcp/4001
# and /ip4/0.0.0.0/udp/4001/quic-v1 to join a network across machines.
listen:
{{- range .Listen}}
  - {{.}}
{{- end}}

# Peers to join the network through: full multiaddrs ending in /p2p/<PeerID>,
# as printed by 'dms node info' on another node. --bootstrap adds to these.
bootstrap:{{if not .Bootstrap}} []{{end}}
{{- range .Bootstrap}}
  - {{.}}
{{- end}}

# A private network (docs/security.md): psk_file names a libp2p pre-shared
# key file (relative to this home), and the node connects only to nodes
# holding the same key. Private networks run over TCP only: remove the
# quic-v1 addresses from listen when you set it.
network:
  psk_file:{{with .Network.PSKFile}} "{{.}}"{{end}}
  # Bid requests a second, and at once, accepted from each requester (this
  # node included); 0 means 50 and 100. A network placing more jobs a second
  # raises them on every node.
  bid_request_rate: {{.Network.BidRequestRate}}
  bid_request_burst: {{.Network.BidRequestBurst}}
  # Where bid requests go (docs/protocol.md, sampled bid requests): auto
  # gossips them to every node until this node knows sample_above compute
  # nodes that may fit the job (0: 32), then sends them to 2 of those at
  # random; gossip always reaches every node; a number d asks d nodes.
  sampling: "{{.Network.Sampling}}"
  sample_above: {{.Network.SampleAbove}}
  # The node's part in the DHT: server answers other nodes' queries and
  # keeps their records; client only asks, with fewer connections, as a
  # node behind NAT or one that only computes may run. Bootstrap nodes
  # must be servers.
  dht: "{{.Network.DHT}}"

# Whether this node offers compute. false: it submits jobs and serves their
# inputs, but never bids (the same as 'dms run --compute=false').
compute: {{.Compute}}

# How this node's jobs choose among the bids of equal price and capability
# (docs/protocol.md, ranking): binpack prefers the fullest node that fits,
# which keeps whole nodes free for large jobs; spread prefers the least
# loaded. "" is binpack.
placement: "{{.Placement}}"

# The local HTTP API (docs/api.md): loopback only, token in api.json.
api: {{.API}}
# true serves the API on any address (0.0.0.0:7777 in a container, say).
# Every request still needs the token, which travels in clear HTTP: keep
# such an address on a private network.
api_remote: {{.APIRemote}}

# Prometheus metrics (docs/observability.md): GET /metrics on this address,
# such as 127.0.0.1:9464; "" serves none. A bare :9464 binds loopback; name
# a host (0.0.0.0:9464) to let other machines scrape: metrics carry no token.
metrics: "{{.Metrics}}"

# Who may run jobs on this node. mode: open admits every requester;
# mode: allowlist only those in allow (did:key:z6Mk... or 12D3KooW... PeerIDs,
# as 'dms node info' prints them) and this node itself. A refused requester's
# job is declined with the reason.
admission:
  mode: {{if .Admission.Mode}}{{.Admission.Mode}}{{else}}open{{end}}
  allow:{{if not .Admission.Allow}} []{{end}}
{{- range .Admission.Allow}}
    - {{.}}
{{- end}}
  # The part of the offer one requester's bids may keep while others want
  # room (a bid that fits in free capacity is always held), and how many
  # bids of one requester are held at once.
  hold_share: {{if .Admission.HoldShare}}{{.Admission.HoldShare}}{{else}}0.5{{end}}
  holds_per_requester: {{if .Admission.HoldsPerRequester}}{{.Admission.HoldsPerRequester}}{{else}}64{{end}}

# Container jobs (executor: docker) on a Docker Engine. mode: auto offers them
# while the engine answers; on refuses to start without one; off never runs
# containers. host: "" reads DOCKER_HOST. network: true gives jobs that ask
# for a network one (they are declined otherwise).
docker:
  mode: {{if .Docker.Mode}}{{.Docker.Mode}}{{else}}auto{{end}}
  host: "{{.Docker.Host}}"
  network: {{.Docker.Network}}

# What this node offers the network.
offer:
  # Cores: "2", "0.5", "500m", or a share of the machine such as "75%".
  cpu: "{{.Offer.CPU}}"
  # Memory and disk: "8GiB", "512MiB", or a share such as "50%" (disk: of the free space).
  memory: "{{.Offer.Memory}}"
  disk: "{{.Offer.Disk}}"
  # Price in credits per core-hour, exact to the micro-credit (at most 6
  # decimals, e.g. 0.25); jobs with a lower max_price are declined.
  price: {{.Offer.Price}}
  # Labels jobs can require with constraints.labels, e.g. region: eu.
  labels:{{if not .Offer.Labels}} {}{{end}}
{{- range $k, $v := .Offer.Labels}}
    {{printf "%q" $k}}: {{printf "%q" $v}}
{{- end}}
  # The energy this machine runs on. Jobs with constraints.renewable_only skip
  # nodes that are not renewable. file or command (printing
  # {"renewable": true, "carbon_intensity": 50}) are re-read every refresh.
  energy:
    renewable: {{.Offer.Energy.Renewable}}
    carbon_intensity: {{.Offer.Energy.CarbonIntensity}}
    file: ""
    command: ""
    refresh: 1m
  # Give only idle CPU (docs/batches.md): with enabled, the node bids only
  # while the host's other processes (all but this daemon and its units)
  # have used at most threshold of all its cores for period, and stops its
  # running units within stop_within when they go over it (their jobs are
  # placed on other nodes). policy: stop is the only one (throttle is not
  # offered). Linux only; an idle-only node runs no container jobs. Read at
  # start only.
  idle:
    enabled: {{.Offer.Idle.Enabled}}
    threshold: "{{.Offer.Idle.Threshold}}"
    period: {{.Offer.Idle.Period}}
    stop_within: {{.Offer.Idle.StopWithin}}
    policy: {{.Offer.Idle.Policy}}

# What the node keeps on disk (docs/architecture.md, State): its blobs,
# records and compiled modules stay under max_bytes. Blobs (modules,
# inputs, outputs) that no unfinished job, live allocation or pin references
# are removed, least recently used first, once they take more than the
# records and compiled modules leave of it; a blob used within min_blob_age
# is always kept. Records of
# jobs and allocations that ended more than retention ago keep only their
# summary (ids, nodes, resources, epoch, state, reason, result CIDs, times).
store:
  max_bytes: "{{.Store.MaxBytes}}"
  min_blob_age: {{.Store.MinBlobAge}}
  retention: {{.Store.Retention}}

# Functions over HTTP (docs/functions.md). Every node keeps accounts,
# functions and endpoints, managed through its local API; listen opens a
# gateway to callers with API keys (dms run --gateway sets it too), such as
# 127.0.0.1:8080, or 0.0.0.0:443 with cert_file and key_file for HTTPS.
# trusted_proxies (CIDRs) may set X-Forwarded-For; task_retention is how
# long finished calls are kept; require_credits: true admits calls and jobs
# of an account only while it has credits (dms account credit), else 402.
# group makes the gateway a member of a
# replicated group of gateways (docs/gateway.md): its name, the multiaddrs
# (with /p2p/ID) of the other founders, or join: true for a gateway an
# existing member adds (dms gateway add); --gateway-group and friends set it.
gateway:
  listen: "{{.Gateway.Listen}}"
  cert_file: "{{.Gateway.CertFile}}"
  key_file: "{{.Gateway.KeyFile}}"
  trusted_proxies:{{if not .Gateway.TrustedProxies}} []{{end}}
{{- range .Gateway.TrustedProxies}}
    - {{.}}
{{- end}}
  task_retention: {{.Gateway.TaskRetention}}
  require_credits: {{.Gateway.RequireCredits}}
  group:
    name: "{{.Gateway.Group.Name}}"
    peers:{{if not .Gateway.Group.Peers}} []{{end}}
{{- range .Gateway.Group.Peers}}
      - "{{.}}"
{{- end}}
    join: {{.Gateway.Group.Join}}

# Workflows (docs/workflows.md). A step's result is reused from this node's
# cache; cache shares it with other nodes through the DHT. share: true
# publishes a record of each result, signed by this node (and sealed: only
# nodes that know the step can read it). trust lists the nodes (PeerIDs or
# did:keys, at most 16) whose records this node reuses when its own cache
# misses: a trusted node can hand you any result for a step, so list only
# nodes you would let run your jobs. lookup_timeout bounds each look-up.
flows:
  cache:
    share: {{.Flows.Cache.Share}}
    trust:{{if not .Flows.Cache.Trust}} []{{end}}
{{- range .Flows.Cache.Trust}}
      - {{.}}
{{- end}}
    lookup_timeout: {{.Flows.Cache.LookupTimeout}}

# Traces (docs/observability.md). Every node keeps its recent spans in
# memory for dms job trace; otlp_endpoint (an http:// or https:// URL,
# such as http://localhost:4318) exports them to an OpenTelemetry
# collector too; "" exports nowhere unless OTEL_EXPORTER_OTLP_ENDPOINT is
# set. dms run --otlp-endpoint sets it. Gateway calls are traced when
# their caller sends a W3C traceparent header, and call_sample (0 to 1)
# of the others: 0 traces only those.
traces:
  otlp_endpoint: "{{.Traces.OTLPEndpoint}}"
  call_sample: {{.Traces.CallSample}}
`))

// LoadConfig reads and validates home/config.yaml. Unknown fields are errors.
func LoadConfig(home string) (Config, error) {
	path := filepath.Join(home, configFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("dms: reading config: %w", err)
	}
	cfg := Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if err := cfg.Offer.Validate(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if _, err := cfg.Admission.PeerIDs(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if _, err := cfg.Admission.holds(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if _, err := cfg.Network.psk(home); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if n := cfg.Network; n.BidRequestRate < 0 || n.BidRequestBurst < 0 {
		return Config{}, fmt.Errorf("dms: %s: network.bid_request_rate and bid_request_burst must not be negative", path)
	}
	if _, err := cfg.Network.bidSampling(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if _, err := cfg.Network.dhtClient(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if err := cfg.Docker.validate(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if err := cfg.checkIdle(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if err := cfg.Store.validate(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if err := cfg.Gateway.validate(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if err := cfg.Flows.Cache.validate(); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	if err := CheckOTLPEndpoint(cfg.Traces.OTLPEndpoint); err != nil {
		return Config{}, fmt.Errorf("dms: %s: traces.otlp_endpoint: %w", path, err)
	}
	if err := CheckCallSample(cfg.Traces.CallSample); err != nil {
		return Config{}, fmt.Errorf("%w (in %s, traces.call_sample)", err, path)
	}
	if _, err := metricsAddr(cfg.Metrics); err != nil {
		return Config{}, fmt.Errorf("%w (in %s, metrics)", err, path)
	}
	if _, err := ranking(cfg.Placement); err != nil {
		return Config{}, fmt.Errorf("dms: %s: %w", path, err)
	}
	return cfg, nil
}

// The placement strategies (Config.Placement).
const (
	PlaceBinpack = "binpack"
	PlaceSpread  = "spread"
)

// ranking is the orchestrator's ranking for a placement strategy.
func ranking(placement string) (orchestrator.Ranking, error) {
	switch placement {
	case "", PlaceBinpack:
		return orchestrator.BinpackRanking(), nil
	case PlaceSpread:
		return orchestrator.SpreadRanking(), nil
	}
	return orchestrator.Ranking{}, fmt.Errorf("placement %q: want %s or %s", placement, PlaceBinpack, PlaceSpread)
}

// psk reads the pre-shared key file, if any; nil without one.
func (n NetworkConfig) psk(home string) ([]byte, error) {
	if n.PSKFile == "" {
		return nil, nil
	}
	path := n.PSKFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(home, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("network.psk_file: %w", err)
	}
	defer f.Close()
	psk, err := pnet.DecodeV1PSK(f)
	if err != nil {
		return nil, fmt.Errorf("network.psk_file: %s is not a libp2p pre-shared key file (docs/security.md shows how to make one): %w", path, err)
	}
	return psk, nil
}

func writeConfig(home string, cfg Config) error {
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, cfg); err != nil {
		return fmt.Errorf("dms: rendering config: %w", err)
	}
	return writeFileAtomic(filepath.Join(home, configFile), b.Bytes(), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("dms: writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err == nil {
		_, err = tmp.Write(data)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("dms: writing %s: %w", path, err)
	}
	return nil
}

func writeKey(home string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dms: generating key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("dms: encoding key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return key, writeFileAtomic(filepath.Join(home, keyFile), pemBytes, 0o600)
}

func readKey(home string) (ed25519.PrivateKey, error) {
	path := filepath.Join(home, keyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s: run 'dms init --home %s' first", ErrNoHome, home, keyFile, home)
	}
	if err != nil {
		return nil, fmt.Errorf("dms: reading key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("dms: %s is not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dms: %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("dms: %s holds a %T, not an Ed25519 key", path, k)
	}
	return key, nil
}

// InitOptions controls Init.
type InitOptions struct {
	Force bool // replace an existing home: a new identity, and the old database is removed
	// BenchDuration is how long each benchmark phase runs (default: the
	// node package's, about a quarter second). Tests shorten it.
	BenchDuration time.Duration
}

// Init creates a node home: an Ed25519 key (mode 0600), a documented
// config.yaml, a UUID, and a first capability benchmark stored in the node's
// database. It refuses an existing home unless opts.Force.
func Init(ctx context.Context, home string, opts InitOptions) (api.NodeInfo, error) {
	if _, err := os.Stat(filepath.Join(home, keyFile)); err == nil && !opts.Force {
		return api.NodeInfo{}, fmt.Errorf("%w: %s already holds a node (its %s): use --force to replace it with a new identity", ErrHomeExists, home, keyFile)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return api.NodeInfo{}, fmt.Errorf("dms: creating home: %w", err)
	}
	if opts.Force {
		for _, dir := range []string{dbDir, blobDir} {
			if err := os.RemoveAll(filepath.Join(home, dir)); err != nil {
				return api.NodeInfo{}, fmt.Errorf("dms: removing old database: %w", err)
			}
		}
	}
	key, err := writeKey(home)
	if err != nil {
		return api.NodeInfo{}, err
	}
	if err := writeConfig(home, DefaultConfig()); err != nil {
		return api.NodeInfo{}, err
	}
	db, err := store.Open(storeOptions(home))
	if err != nil {
		return api.NodeInfo{}, err
	}
	defer db.Close()
	id := uuid.NewString()
	if err := db.Put(uuidKey, id); err != nil {
		return api.NodeInfo{}, err
	}
	hw, bench, err := measure(ctx, home, db, opts.BenchDuration)
	if err != nil {
		return api.NodeInfo{}, err
	}
	cfg := DefaultConfig()
	rec, err := capabilityRecord(key, cfg.Offer, hw, bench, types.Energy{Renewable: cfg.Offer.Energy.Renewable}, offeredExecutors(false), time.Now())
	if err != nil {
		return api.NodeInfo{}, err
	}
	nid, _, err := signedID(key, id, rec, time.Now())
	if err != nil {
		return api.NodeInfo{}, err
	}
	return api.NodeInfo{ID: nid, PeerID: nid.PeerID, DID: nid.DID, Compute: cfg.Compute, Capability: &rec, Registered: rec.Offered}, nil
}

// measure detects the hardware and runs the benchmark, and stores both.
func measure(ctx context.Context, home string, db *store.DB, phase time.Duration) (types.Hardware, types.Benchmark, error) {
	hw, err := node.DetectHardware(ctx, home)
	if err != nil {
		return hw, types.Benchmark{}, err
	}
	bench, err := node.RunBenchmark(ctx, home, node.BenchOptions{Duration: phase})
	if err != nil {
		return hw, bench, err
	}
	if err := db.Put(hardwareKey, hw); err != nil {
		return hw, bench, err
	}
	return hw, bench, db.Put(benchmarkKey, bench)
}

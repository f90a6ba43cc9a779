package api

import (
	"context"
	"io"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Service is what a daemon offers its local API. *dms.DMS implements it, and
// so does *Client, so a command works the same against an in-process node and
// a daemon. Implementations are safe for concurrent use.
type Service interface {
	// SubmitJob starts a job. spec.Module must be a CID (see Upload).
	SubmitJob(ctx context.Context, spec *jobs.Spec) (Job, error)
	// ListJobs returns the jobs this node submitted.
	ListJobs(ctx context.Context) ([]Job, error)
	// GetJob returns one job, or ErrNotFound.
	GetJob(ctx context.Context, id string) (Job, error)
	// WatchJob sends the job's current state, then every change until a
	// terminal state, then closes the channel. Cancelling ctx ends it early.
	WatchJob(ctx context.Context, id string) (<-chan Job, error)
	// CancelJob stops a job; ErrConflict if it already ended.
	CancelJob(ctx context.Context, id string) error
	// PutBlob stores r's content and returns its CID.
	PutBlob(ctx context.Context, r io.Reader) (string, error)
	// GetBlob returns a blob held locally or fetched from the network,
	// verified against its CID.
	GetBlob(ctx context.Context, cid string) ([]byte, error)
	// HasBlob reports whether the node holds the blob itself, without
	// fetching it: an upload of what the node has can be skipped.
	HasBlob(ctx context.Context, cid string) (bool, error)
	// Node describes this node.
	Node(ctx context.Context) (NodeInfo, error)
	// Peers lists the peers this node is connected to.
	Peers(ctx context.Context) ([]Peer, error)
	// Reputation lists how the peers this node asked for bids behaved, as
	// its requester remembers them, most penalised first.
	Reputation(ctx context.Context) ([]PeerReputation, error)
	// ForgivePeer clears a peer's distrust (its results that disagreed
	// with a quorum), so that this node's auctions take its bids again;
	// ErrNotFound if it was not distrusted.
	ForgivePeer(ctx context.Context, peer string) error
	// Benchmark re-runs the capability benchmark and returns the new record.
	Benchmark(ctx context.Context) (NodeInfo, error)
	StoreService
	FlowService
	BatchService
	ReceiptService
	TraceService
	ProviderService
}

// StoreService is the part of a Service that looks after the node's disk.
type StoreService interface {
	// StoreInfo describes what the node keeps on disk.
	StoreInfo(ctx context.Context) (StoreInfo, error)
	// CollectGarbage runs a collection now (blobs over the budget, records
	// past retention, badger's value log) and returns what it did.
	CollectGarbage(ctx context.Context) (Collection, error)
	// Pin keeps a blob whatever the budget, fetching it first if the node
	// does not hold it; pinning a pinned blob changes nothing.
	Pin(ctx context.Context, cid string) error
	// Unpin lets a pinned blob be collected again; ErrNotFound if it was
	// not pinned.
	Unpin(ctx context.Context, cid string) error
}

// Job is a submitted job as its requester sees it.
type Job struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	State     types.JobState `json:"state"`
	Reason    string         `json:"reason,omitempty"`
	Node      string         `json:"node,omitempty"` // PeerID of the node running it or that ran it
	Attempts  []Attempt      `json:"attempts,omitempty"`
	Result    *types.Result  `json:"result,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// Attempt is one auction of a job and, once a node confirmed, its
// allocation on that node.
type Attempt struct {
	AllocationID string `json:"allocation_id"` // "" when no node took the job
	Node         string `json:"node,omitempty"`
	State        string `json:"state"` // active, completed, failed or cancelled
	Reason       string `json:"reason,omitempty"`
	// Charge is the spec's budget a failed attempt used up: "retry" (the
	// program failed or exited non-zero, or no node bid) or "reschedule"
	// (its node or the network failed). "" for the others, and for an
	// auction cut short by a restart of the requester.
	Charge string `json:"charge,omitempty"`
	// Late marks an attempt that a node's late bid opened: it had
	// declined the job as busy and offered itself once capacity freed
	// (docs/protocol.md, late binding).
	Late bool `json:"late,omitempty"`
	// Usage is what the attempt's allocation used, as its node metered
	// it, once it ended (completed, or failed after it ran); the job's
	// Result.Usage is its last attempt's.
	Usage *types.Usage `json:"usage,omitempty"`
	// Price is the node's winning bid, credits per core-hour: what its
	// receipts bill (docs/accounting.md).
	Price types.Credits `json:"price,omitempty"`
}

// NodeInfo describes a node: its identity, addresses and capability.
type NodeInfo struct {
	ID         types.NodeID            `json:"id"`
	PeerID     string                  `json:"peer_id"`
	DID        string                  `json:"did"`
	Addrs      []string                `json:"addrs"` // full multiaddrs with /p2p/, usable as --bootstrap
	Compute    bool                    `json:"compute"`
	Capability *types.CapabilityRecord `json:"capability,omitempty"`
	Registered types.Resources         `json:"registered"`
	Available  types.Resources         `json:"available"`
	Used       types.Resources         `json:"used"` // held, locked and running: within Registered unless the offer was lowered under it
	Running    int                     `json:"running"`
	Holds      int                     `json:"holds"`             // bids held, waiting for an Accept
	Held       types.Resources         `json:"held"`              // what they hold
	Gateway    string                  `json:"gateway,omitempty"` // the gateway's URL when the node serves one
	Idle       *IdleInfo               `json:"idle,omitempty"`    // set when the node gives only idle CPU
}

// IdleInfo is an idle-only node's view of its host (docs/batches.md).
type IdleInfo struct {
	Idle      bool      `json:"idle"`             // the node bids
	Others    float64   `json:"others"`           // share of all cores the host's other processes used in the last sample, 0..1
	Threshold float64   `json:"threshold"`        // the share over which the node stops bidding and stops its units
	Since     time.Time `json:"since"`            // when Idle last changed
	Reason    string    `json:"reason,omitempty"` // why the node does not bid
	Stopped   uint64    `json:"stopped"`          // units stopped since the start because the host's owner came back
}

// Peer is a connected peer.
type Peer struct {
	ID            string   `json:"id"`
	Addrs         []string `json:"addrs"`
	LatencyMillis float64  `json:"latency_ms,omitempty"`
	// Offer is what the peer offers, from its signed capability record;
	// nil while the node has not got it (the peer did not answer within
	// a second; a later call asks again).
	Offer *PeerOffer `json:"offer,omitempty"`
}

// PeerOffer is what a peer's capability record offers.
type PeerOffer struct {
	Executors []string          `json:"executors"`
	Offered   types.Resources   `json:"offered"`
	Price     types.Credits     `json:"price"` // per core-hour
	Labels    map[string]string `json:"labels,omitempty"`
	Renewable bool              `json:"renewable"`
	IdleOnly  bool              `json:"idle_only"`
	Score     float64           `json:"score"` // the benchmark's capability score
	IssuedAt  time.Time         `json:"issued_at"`
}

// PeerReputation is a requester's standing of one peer (docs/reliability.md,
// "Reputation"): a penalty that grows with each failure and halves every 10
// minutes. A poor peer is offered jobs only after peers in good standing;
// an unheard one (silent or lost, no answer since) is not waited for.
// Batches judge its replicated results (docs/batches.md): one that
// disagreed with its unit's quorum makes it distrusted, its bids dropped
// until ForgivePeer; enough agreeing ones, none disagreeing, trusted.
type PeerReputation struct {
	ID         string         `json:"id"`
	Penalty    float64        `json:"penalty"`
	Poor       bool           `json:"poor"`
	Unheard    bool           `json:"unheard"`
	LastEvent  string         `json:"last_event"` // no_confirm, lost, silent or rejected
	LastAt     time.Time      `json:"last_at"`
	Events     map[string]int `json:"events"` // every event recorded, by kind
	Agreed     int            `json:"agreed"`
	Disagreed  int            `json:"disagreed"`
	Distrusted bool           `json:"distrusted"`
	Trusted    bool           `json:"trusted"`
}

// StoreInfo is what a node keeps on disk: its blobs (modules, inputs,
// outputs) under their budget, its records, and its home directory.
type StoreInfo struct {
	Home      string `json:"home"`
	HomeBytes int64  `json:"home_bytes"` // disk space the home directory takes
	Blobs     int    `json:"blobs"`
	BlobBytes int64  `json:"blob_bytes"`
	// MaxBytes is the blobs' budget (config store.max_bytes);
	// blobs referenced, pinned or used within MinBlobAgeMillis may take
	// the blobs over it.
	MaxBytes         int64          `json:"max_bytes"`
	MinBlobAgeMillis int64          `json:"min_blob_age_ms"`
	RetentionMillis  int64          `json:"retention_ms"` // finished records older than this are compacted
	Pins             []string       `json:"pins"`         // CIDs of the pinned blobs, sorted
	Records          map[string]int `json:"records"`      // records of each kind: job, alloc, node, pin, store
	// LastCollection is the last collection that removed blobs or
	// compacted records, or tried to; nil before the first.
	LastCollection *Collection `json:"last_collection,omitempty"`
}

// Collection is what one collection did.
type Collection struct {
	At             time.Time `json:"at"`
	DurationMillis int64     `json:"duration_ms"`
	// BlobBudget is what the blobs could take: the store's budget less
	// its records and compiled modules. BlobsRemoved blobs of FreedBytes
	// were removed, taking the blobs from BlobBytesBefore to
	// BlobBytesAfter.
	BlobBudget      int64 `json:"blob_budget"`
	BlobsRemoved    int   `json:"blobs_removed"`
	FreedBytes      int64 `json:"freed_bytes"`
	BlobBytesBefore int64 `json:"blob_bytes_before"`
	BlobBytesAfter  int64 `json:"blob_bytes_after"`
	// Referenced and Recent are the blobs the collection passed over
	// because a live job, allocation or pin references them, or because
	// they were used within the minimum age.
	Referenced int `json:"referenced"`
	Recent     int `json:"recent"`
	// RecordsCompacted finished records lost their bulky parts;
	// ValueLogRewrites is the badger value-log files rewritten after.
	RecordsCompacted int `json:"records_compacted"`
	// BidRecordsExpired bid records (GET /v1/node/bids) received more
	// than the retention ago were deleted.
	BidRecordsExpired int `json:"bid_records_expired,omitempty"`
	// CompiledFreedBytes is what removing compiled Wasm modules freed:
	// they are kept to a twentieth of the blob budget.
	CompiledFreedBytes int64  `json:"compiled_freed_bytes,omitempty"`
	ValueLogRewrites   int    `json:"value_log_rewrites"`
	Error              string `json:"error,omitempty"` // why the collection stopped short
}

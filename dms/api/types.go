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
	// Benchmark re-runs the capability benchmark and returns the new record.
	Benchmark(ctx context.Context) (NodeInfo, error)
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
	Running    int                     `json:"running"`
}

// Peer is a connected peer.
type Peer struct {
	ID            string   `json:"id"`
	Addrs         []string `json:"addrs"`
	LatencyMillis float64  `json:"latency_ms,omitempty"`
}

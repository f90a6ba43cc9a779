package api

import (
	"context"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator/quorum"
	"github.com/opendms/dms/types"
)

// BatchService runs batches of replicated units (docs/batches.md).
// *dms.DMS and *Client implement it.
type BatchService interface {
	// SubmitBatch starts a batch. Its module and units' files must be
	// CIDs (see UploadBatch).
	SubmitBatch(ctx context.Context, b *jobs.Batch) (Batch, error)
	// ListBatches returns the batches this node runs or ran, newest first.
	ListBatches(ctx context.Context) ([]Batch, error)
	// GetBatch returns one batch, or ErrNotFound.
	GetBatch(ctx context.Context, id string) (Batch, error)
	// WatchBatch sends the batch as it is, then as it changes (at most a
	// few times a second) until it ends, then closes the channel.
	WatchBatch(ctx context.Context, id string) (<-chan Batch, error)
	// CancelBatch stops a batch and its running replicas; ErrConflict if
	// it already ended.
	CancelBatch(ctx context.Context, id string) error
	// BatchUnits returns the units [from, from+limit) of a batch: each
	// one's state, canonical result or failure, and replicas.
	BatchUnits(ctx context.Context, id string, from, limit int) ([]BatchUnit, error)
}

// The states of a batch and of a unit.
const (
	BatchQueued    = "queued" // a unit not issued yet
	BatchRunning   = "running"
	BatchCompleted = "completed" // a batch whose every unit ended; a unit with a verdict
	BatchFailed    = "failed"    // a unit quarantined: no quorum within its replicas
	BatchCancelled = "cancelled"
)

// Batch is a submitted batch as its requester sees it.
type Batch struct {
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	State     string      `json:"state"`
	Reason    string      `json:"reason,omitempty"`
	Counts    BatchCounts `json:"counts"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
	Spec      *jobs.Batch `json:"spec,omitempty"`
}

// BatchCounts counts a batch's units by state, and its replicas.
type BatchCounts struct {
	Units     int `json:"units"`
	Completed int `json:"completed"` // decided by a quorum (or a trusted node alone)
	Failed    int `json:"failed"`    // quarantined
	Running   int `json:"running"`   // issued, not ended
	Queued    int `json:"queued"`    // never issued
	// Replicas counts every replica issued; Disagreed those whose result
	// differed from their unit's verdict; Late those past their deadline.
	Replicas  int `json:"replicas"`
	Disagreed int `json:"disagreed"`
	Late      int `json:"late"`
	// Rate is units ended a second since the batch started; ETA the time
	// left at that rate (0 when unknown or done).
	Rate float64       `json:"rate"`
	ETA  time.Duration `json:"eta_ns"`
}

// BatchUnit is one unit: its value ({{unit}}), state, canonical result
// (Completed) or why it failed, and its replicas.
type BatchUnit struct {
	Index    int              `json:"index"`
	Value    string           `json:"value"`
	State    string           `json:"state"`
	Result   *types.Result    `json:"result,omitempty"`
	Digest   string           `json:"digest,omitempty"` // the verdict's (quorum.Digest)
	Node     string           `json:"node,omitempty"`   // a node that returned the verdict
	Alone    bool             `json:"alone,omitempty"`  // one trusted node's result, spot checks aside
	Failure  string           `json:"failure,omitempty"`
	Replicas []quorum.Replica `json:"replicas,omitempty"`
}

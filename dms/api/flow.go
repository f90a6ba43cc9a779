package api

import (
	"context"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// FlowService runs workflows (docs/workflows.md). *dms.DMS and *Client
// implement it.
type FlowService interface {
	// SubmitFlow starts a flow. Its modules, input directories and
	// for_each directories must be CIDs (see UploadFlow).
	SubmitFlow(ctx context.Context, f *jobs.Flow) (Flow, error)
	// ListFlows returns the flows this node runs or ran, newest first,
	// without their instances.
	ListFlows(ctx context.Context) ([]Flow, error)
	// GetFlow returns one flow with every instance, or ErrNotFound.
	GetFlow(ctx context.Context, id string) (Flow, error)
	// WatchFlow sends the flow as it is, then an event per change until
	// the flow ends, then closes the channel.
	WatchFlow(ctx context.Context, id string) (<-chan FlowEvent, error)
	// CancelFlow stops a flow and its running jobs; ErrConflict if it
	// already ended.
	CancelFlow(ctx context.Context, id string) error
}

// The states of a flow, a step and an instance.
const (
	FlowPending   = "pending"
	FlowRunning   = "running"
	FlowCompleted = "completed"
	FlowFailed    = "failed"
	FlowCancelled = "cancelled"
	FlowSkipped   = "skipped" // a step or instance that never ran: the flow ended first
)

// FlowEnded reports whether a flow, step or instance state is final.
func FlowEnded(state string) bool {
	switch state {
	case FlowCompleted, FlowFailed, FlowCancelled, FlowSkipped:
		return true
	}
	return false
}

// Flow is a submitted workflow as its requester sees it.
type Flow struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	State     string     `json:"state"`
	Reason    string     `json:"reason,omitempty"`
	Steps     []FlowStep `json:"steps"` // in an order that runs every step after its needs
	Outputs   []Output   `json:"outputs,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	Spec      *jobs.Flow `json:"spec,omitempty"`
}

// Output is one blob the flow answers with.
type Output struct {
	Name string `json:"name"` // the reference that names it: reduce.stdout, count.stdout/part-0.txt
	CID  string `json:"cid"`
	Size int64  `json:"size,omitempty"`
	Node string `json:"node,omitempty"` // a node that holds it
}

// FlowStep is one step: its state and its instances' counts.
type FlowStep struct {
	Name      string         `json:"name"`
	Needs     []string       `json:"needs,omitempty"`
	Kind      string         `json:"kind"` // job or call
	FanOut    bool           `json:"fan_out,omitempty"`
	State     string         `json:"state"`
	Counts    FlowCounts     `json:"counts"`
	Instances []FlowInstance `json:"instances,omitempty"`
}

// FlowCounts counts a step's instances by state; Cached are completed
// ones served from the cache.
type FlowCounts struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Completed int `json:"completed"`
	Cached    int `json:"cached"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	Skipped   int `json:"skipped"` // queued when the flow ended, never run
}

// FlowInstance is one run of a step.
type FlowInstance struct {
	Index  int    `json:"index"`
	Key    string `json:"key,omitempty"` // its item's name in a fan-out
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	JobID  string `json:"job_id,omitempty"`
	Node   string `json:"node,omitempty"`
	Cached bool   `json:"cached,omitempty"`
	// CachedFrom is the node whose shared cache gave a cached result
	// (docs/workflows.md, The cache); "" when this node ran it.
	CachedFrom string        `json:"cached_from,omitempty"`
	Result     *types.Result `json:"result,omitempty"`
}

// FlowEvent is one change of a flow. The first event of a watch carries
// the whole Flow; later ones an instance's new state (Step, Instance) or
// the flow's (State, Reason, and Flow when it ends).
type FlowEvent struct {
	Flow     *Flow         `json:"flow,omitempty"`
	Step     string        `json:"step,omitempty"`
	Instance *FlowInstance `json:"instance,omitempty"`
	State    string        `json:"state,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	At       time.Time     `json:"at"`
}

// Add counts one instance.
func (c *FlowCounts) Add(in FlowInstance) {
	c.Total++
	switch in.State {
	case FlowPending:
		c.Pending++
	case FlowRunning:
		c.Running++
	case FlowCompleted:
		c.Completed++
		if in.Cached {
			c.Cached++
		}
	case FlowFailed:
		c.Failed++
	case FlowCancelled:
		c.Cancelled++
	case FlowSkipped:
		c.Skipped++
	}
}

// State sums up a step's instances, counted in c, as the state of the
// step in a flow whose state is flowState.
func (c FlowCounts) State(flowState string) string {
	ended := FlowEnded(flowState)
	switch {
	case c.Total == 0 && ended:
		return FlowSkipped
	case c.Total == 0:
		return FlowPending
	case c.Failed > 0:
		return FlowFailed
	case c.Completed == c.Total:
		return FlowCompleted
	case c.Running > 0 || c.Completed > 0 || c.Cancelled > 0:
		if ended {
			return FlowCancelled
		}
		return FlowRunning
	case ended:
		return FlowSkipped
	}
	return FlowPending
}

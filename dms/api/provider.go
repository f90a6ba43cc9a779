package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/opendms/dms/types"
)

// ProviderService is the part of a Service that shows a provider its own
// work, from its node's database and ledger (docs/observability.md, "A
// provider's own view"). *dms.DMS and *Client implement it.
type ProviderService interface {
	// NodeAllocations returns a page of the allocations this node runs
	// and ran, newest first; q.Filter is a state ("" for all).
	// ErrBadRequest for a state, limit or cursor that is not valid.
	NodeAllocations(ctx context.Context, q PageQuery) (AllocationPage, error)
	// NodeLocks returns the node's ledger now: its totals and each hold
	// (behind a bid) and lock (accepted or running). ErrConflict on a
	// node that offers no compute.
	NodeLocks(ctx context.Context) (Ledger, error)
	// NodeBids returns a page of the bid requests this node answered,
	// newest first; q.Filter is an outcome, "bid" or "declined" ("" for
	// both). ErrBadRequest for an outcome, limit or cursor that is not
	// valid.
	NodeBids(ctx context.Context, q PageQuery) (BidPage, error)
}

// Pages of a provider's listings: DefaultPage records when the request
// gives no limit, MaxPage at most.
const (
	DefaultPage = 50
	MaxPage     = 1000
)

// PageQuery asks for a page of a listing: at most Limit records (0:
// DefaultPage), those with Filter, after the cursor After (an earlier
// page's Next; "" from the newest).
type PageQuery struct {
	Filter string
	Limit  int
	After  string
}

// Allocation is an allocation as its provider keeps it.
type Allocation struct {
	ID        string                `json:"id"`
	JobID     string                `json:"job_id"`
	Requester string                `json:"requester"` // PeerID
	State     types.AllocationState `json:"state"`
	Reason    string                `json:"reason,omitempty"`
	Fault     types.Fault           `json:"fault,omitempty"`
	Executor  string                `json:"executor,omitempty"` // "" once compacted (store.retention)
	Resources types.Resources       `json:"resources"`
	Price     types.Credits         `json:"price"` // the bid's, per core-hour
	Epoch     uint64                `json:"epoch"`
	LockedAt  time.Time             `json:"locked_at"`
	StartedAt time.Time             `json:"started_at,omitzero"`
	EndedAt   time.Time             `json:"ended_at,omitzero"`
	// DurationMillis is how long it ran: from its start to its end, or
	// to now while it runs; 0 if it never started.
	DurationMillis int64 `json:"duration_ms"`
}

// AllocationPage is a page of allocations; Next is the cursor of the
// next page ("" after the last).
type AllocationPage struct {
	Allocations []Allocation `json:"allocations"`
	Next        string       `json:"next,omitempty"`
}

// Ledger is a node's ledger at one instant.
type Ledger struct {
	At         time.Time       `json:"at"`
	Registered types.Resources `json:"registered"`
	Available  types.Resources `json:"available"`
	Held       types.Resources `json:"held"`    // behind bids
	Locked     types.Resources `json:"locked"`  // accepted, not started
	Running    types.Resources `json:"running"` // started
	Epoch      uint64          `json:"epoch"`   // the last lock epoch issued
	Holds      []Hold          `json:"holds"`
	Locks      []Lock          `json:"locks"`
}

// Hold is the soft reservation behind a bid, until Until.
type Hold struct {
	AllocationID string          `json:"allocation_id"`
	JobID        string          `json:"job_id"`
	Requester    string          `json:"requester"`
	Resources    types.Resources `json:"resources"`
	Price        types.Credits   `json:"price"`
	Until        time.Time       `json:"until"`
}

// Lock is capability locked for an allocation under Epoch: until Expiry
// unless it starts first, then (Running) until it ends.
type Lock struct {
	AllocationID string          `json:"allocation_id"`
	JobID        string          `json:"job_id"`
	Requester    string          `json:"requester"`
	Resources    types.Resources `json:"resources"`
	Price        types.Credits   `json:"price"`
	Epoch        uint64          `json:"epoch"`
	Expiry       time.Time       `json:"expiry,omitzero"`
	Running      bool            `json:"running"`
}

// BidRecord is a bid request a node answered, and its answer.
type BidRecord struct {
	ID         string            `json:"id"`
	ReceivedAt time.Time         `json:"received_at"`
	JobID      string            `json:"job_id"`
	Requester  string            `json:"requester"`
	Executor   string            `json:"executor"`
	Resources  types.Resources   `json:"resources"`
	MaxPrice   types.Credits     `json:"max_price,omitempty"` // per core-hour; 0: no limit
	Labels     map[string]string `json:"labels,omitempty"`
	Renewable  bool              `json:"renewable_only,omitempty"`
	Network    bool              `json:"network,omitempty"`
	Outcome    string            `json:"outcome"`              // bid or declined
	Price      types.Credits     `json:"price,omitempty"`      // the bid's
	Allocation string            `json:"allocation,omitempty"` // the bid's
	Reasons    []string          `json:"reasons,omitempty"`    // the decline's
	Busy       bool              `json:"busy,omitempty"`       // the decline is only for now
}

// BidPage is a page of bid records; Next is the cursor of the next page
// ("" after the last). Lost counts the answers not recorded since the
// node started (its store fell too far behind, or failed).
type BidPage struct {
	Bids []BidRecord `json:"bids"`
	Next string      `json:"next,omitempty"`
	Lost uint64      `json:"lost,omitempty"`
}

// paging serves a page of a listing: ?<filter>=F, ?limit=N (DefaultPage
// by default, MaxPage at most) and ?after=CURSOR.
func paging[T any](h *handler, filter string, list func(context.Context, PageQuery) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, err := queryInt(q, "limit", DefaultPage, 1, MaxPage)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		v, err := list(r.Context(), PageQuery{Filter: q.Get(filter), Limit: limit, After: q.Get("after")})
		h.reply(w, r, http.StatusOK, v, err)
	}
}

// pageQuery encodes q for path, naming its filter filter.
func pageQuery(path, filter string, q PageQuery) string {
	v := url.Values{}
	if q.Filter != "" {
		v.Set(filter, q.Filter)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// NodeAllocations returns a page of the daemon's allocations.
func (c *Client) NodeAllocations(ctx context.Context, q PageQuery) (AllocationPage, error) {
	return get[AllocationPage](ctx, c, http.MethodGet, pageQuery("/v1/node/allocations", "state", q))
}

// NodeLocks returns the daemon's ledger.
func (c *Client) NodeLocks(ctx context.Context) (Ledger, error) {
	return get[Ledger](ctx, c, http.MethodGet, "/v1/node/locks")
}

// NodeBids returns a page of the daemon's bid records.
func (c *Client) NodeBids(ctx context.Context, q PageQuery) (BidPage, error) {
	return get[BidPage](ctx, c, http.MethodGet, pageQuery("/v1/node/bids", "outcome", q))
}

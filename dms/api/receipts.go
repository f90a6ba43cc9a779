package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/opendms/dms/types"
)

// ReceiptService is the part of a Service that reads the node's receipts
// (docs/accounting.md).
type ReceiptService interface {
	// JobReceipts returns the receipts this node countersigned for one
	// of its jobs, by allocation and sequence; ErrNotFound for a job it
	// does not know.
	JobReceipts(ctx context.Context, id string) ([]Receipt, error)
	// Earnings sums the receipts this node issued and their requesters
	// countersigned, per requester and account, over a period: a month
	// ("2026-12", UTC, by the receipts' ends), or "" for all of them.
	// ErrBadRequest for a period that is not a month.
	Earnings(ctx context.Context, period string) (Earnings, error)
}

// Receipt is a receipt a requester countersigned.
type Receipt struct {
	types.Receipt
	Provider string `json:"provider"` // the PeerID that signed it
	// Digest is what the countersignature names: the SHA-256 of the
	// signed receipt's body.
	Digest string `json:"digest"`
}

// Earnings is what a provider earned over a period.
type Earnings struct {
	Period   string        `json:"period,omitempty"`
	From     time.Time     `json:"from,omitzero"`
	To       time.Time     `json:"to,omitzero"`
	Lines    []EarningLine `json:"lines"`
	Receipts int           `json:"receipts"`
	Total    types.Credits `json:"total"`
}

// EarningLine is what one requester's account paid: Account "" for work
// that named none.
type EarningLine struct {
	Requester string        `json:"requester"`
	Account   string        `json:"account,omitempty"`
	Receipts  int           `json:"receipts"`
	Amount    types.Credits `json:"amount"`
}

// ParsePeriod reads a period: a month as YYYY-MM, from its first instant
// (UTC) to the next month's; "" is every time (zero bounds).
func ParsePeriod(p string) (from, to time.Time, err error) {
	if p == "" {
		return time.Time{}, time.Time{}, nil
	}
	from, err = time.Parse("2006-01", p)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: period %q is not a month such as 2026-12", ErrBadRequest, p)
	}
	return from, from.AddDate(0, 1, 0), nil
}

func (h *handler) earnings(w http.ResponseWriter, r *http.Request) {
	e, err := h.svc.Earnings(r.Context(), r.URL.Query().Get("period"))
	if e.Lines == nil {
		e.Lines = []EarningLine{}
	}
	h.reply(w, r, http.StatusOK, e, err)
}

// JobReceipts returns the receipts the daemon countersigned for a job.
func (c *Client) JobReceipts(ctx context.Context, id string) ([]Receipt, error) {
	return get[[]Receipt](ctx, c, http.MethodGet, jobPath(id)+"/receipts")
}

// Earnings returns what the daemon earned over period.
func (c *Client) Earnings(ctx context.Context, period string) (Earnings, error) {
	path := "/v1/earnings"
	if period != "" {
		path += "?period=" + url.QueryEscape(period)
	}
	return get[Earnings](ctx, c, http.MethodGet, path)
}

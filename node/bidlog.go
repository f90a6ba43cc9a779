package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/opendms/dms/types"
)

// BidPrefix keys the node's bid records: BidPrefix + the record's ID,
// which starts with the time it was received, so the keys sort oldest
// first and those past retention are one range (ExpireBids).
const BidPrefix = "bid/"

// The outcomes of a bid request.
const (
	OutcomeBid      = "bid"
	OutcomeDeclined = "declined"
)

// BidRecord is what the node keeps of a bid request it answered: who asked
// for what, and what it answered (a bid and its price, or a decline and
// why). A bid request dropped unanswered (a full mailbox, Info.Dropped) or
// that arrived after its window closed leaves none.
type BidRecord struct {
	ID         string             `json:"id"`
	ReceivedAt time.Time          `json:"received_at"`
	JobID      types.JobID        `json:"job_id"`
	Requester  string             `json:"requester"`
	Executor   string             `json:"executor"`
	Resources  types.Resources    `json:"resources"`
	MaxPrice   types.Credits      `json:"max_price,omitempty"`
	Labels     map[string]string  `json:"labels,omitempty"`
	Renewable  bool               `json:"renewable_only,omitempty"`
	Network    bool               `json:"network,omitempty"`
	Outcome    string             `json:"outcome"`              // OutcomeBid or OutcomeDeclined
	Price      types.Credits      `json:"price,omitempty"`      // the bid's, per core-hour
	Allocation types.AllocationID `json:"allocation,omitempty"` // the bid's
	Reasons    []string           `json:"reasons,omitempty"`    // the decline's
	Busy       bool               `json:"busy,omitempty"`       // the decline is only for now
}

// Key is the record's key in the node's Store.
func (r *BidRecord) Key() string { return BidPrefix + r.ID }

func (r *BidRecord) cursor() string { return inverted(r.ReceivedAt) + "/" + r.ID }

// index returns the record's index keys.
func (r *BidRecord) index() map[string]any {
	c := r.cursor()
	return map[string]any{bidTimeIndex + c: r.Key(), bidOutcomeIndex + r.Outcome + "/" + c: r.Key()}
}

// bidRecord is what a Send says of the bid request it answers, received
// at now; seq makes its ID unique among those of the same instant.
func bidRecord(s Send, now time.Time, seq uint64) (BidRecord, bool) {
	req := s.Request
	if req == nil {
		return BidRecord{}, false
	}
	r := BidRecord{
		ID: fmt.Sprintf("%020d-%08x", now.UnixNano(), seq), ReceivedAt: now,
		JobID: req.JobID, Requester: req.Requester, Executor: req.Executor, Resources: req.Resources,
		MaxPrice: req.Constraints.MaxPrice, Labels: req.Constraints.Labels, Renewable: req.Constraints.RenewableOnly, Network: req.Network,
	}
	switch m := s.Msg.(type) {
	case *types.Bid:
		r.Outcome, r.Price, r.Allocation = OutcomeBid, m.Price, m.Allocation
	case *types.Decline:
		r.Outcome, r.Reasons, r.Busy = OutcomeDeclined, m.Reasons, m.Busy
	default:
		return BidRecord{}, false
	}
	return r, true
}

// Bounds of the bid log: it writes once bidBatch records wait, or
// bidFlushEvery after the first; while bidPending wait (the store is
// slow or failing), newer ones are counted in Lost, not kept.
const (
	bidBatch      = 256
	bidFlushEvery = 200 * time.Millisecond
	bidPending    = 16384
)

// Bounds of the declines kept: anyone may publish bid requests, and most
// of a flood's are declined, so each requester's declines are kept at
// declineRate a second once it has had declineBurst at once, and all
// requesters' together at declineRateAll after declineBurstAll; the rest
// are counted in Lost. Bids are all kept: each holds capacity, which
// bounds them. declineRequesters bounds the requesters followed (past it,
// they start again from a full burst, within the bound of all).
const (
	declineRate       = 0.5
	declineBurst      = 32
	declineRateAll    = 50
	declineBurstAll   = 1024
	declineRequesters = 4096
)

// bidLog keeps the node's bid records off the auction's path: the actor
// adds each answer to memory (no I/O, no wait), and a goroutine of the
// Node writes them in batches, one write each, with their index keys.
// Flush writes what waits at once, for a listing to read its own answers.
// Safe for concurrent use.
type bidLog struct {
	store Store
	log   *slog.Logger
	kick  chan struct{}

	mu       sync.Mutex
	pending  []BidRecord
	seq      uint64
	lost     uint64                   // records not kept: too many waiting, declines over their rate, or their write failed
	declines map[string]*rate.Limiter // by requester
	all      *rate.Limiter            // every requester's declines

	writing sync.Mutex // one write at a time: a Flush returns after any in flight
}

func newBidLog(st Store, log *slog.Logger) *bidLog {
	return &bidLog{store: st, log: log, kick: make(chan struct{}, 1),
		declines: map[string]*rate.Limiter{}, all: rate.NewLimiter(declineRateAll, declineBurstAll)}
}

// keepDecline reports whether a decline for requester, at now, is within
// the rates of declines kept.
func (b *bidLog) keepDecline(requester string, now time.Time) bool {
	l, ok := b.declines[requester]
	if !ok {
		if len(b.declines) >= declineRequesters {
			clear(b.declines)
		}
		l = rate.NewLimiter(declineRate, declineBurst)
		b.declines[requester] = l
	}
	return l.AllowN(now, 1) && b.all.AllowN(now, 1)
}

// add keeps the record of the answer s gives at now.
func (b *bidLog) add(s Send, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	r, ok := bidRecord(s, now, b.seq)
	switch {
	case !ok:
		return
	case len(b.pending) >= bidPending, r.Outcome == OutcomeDeclined && !b.keepDecline(r.Requester, now):
		b.lost++
		return
	}
	b.pending = append(b.pending, r)
	if len(b.pending) == 1 || len(b.pending) >= bidBatch {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// run writes the records as they come, until ctx ends, and then those
// left: a batch once bidBatch wait, or bidFlushEvery after the first.
func (b *bidLog) run(ctx context.Context) {
	defer b.Flush()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		if !b.gather(ctx) {
			return
		}
		b.Flush()
	}
}

// gather waits until a batch is full or bidFlushEvery passed; false when
// ctx ended first.
func (b *bidLog) gather(ctx context.Context) bool {
	t := time.NewTimer(bidFlushEvery)
	defer t.Stop()
	for b.size() < bidBatch {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-b.kick:
		}
	}
	return true
}

func (b *bidLog) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// Flush writes every record waiting, bidBatch records a write.
func (b *bidLog) Flush() {
	b.writing.Lock()
	defer b.writing.Unlock()
	b.mu.Lock()
	recs := b.pending
	b.pending = nil
	b.mu.Unlock()
	for len(recs) > 0 {
		n := min(len(recs), bidBatch)
		b.write(recs[:n])
		recs = recs[n:]
	}
}

// write writes recs and their index keys in one write.
func (b *bidLog) write(recs []BidRecord) {
	put := make(map[string]any, 3*len(recs))
	for i := range recs {
		put[recs[i].Key()] = recs[i]
		for k, v := range recs[i].index() {
			put[k] = v
		}
	}
	if err := b.store.Write(put, nil); err != nil {
		b.log.Error("writing bid records", "records", len(recs), "err", err)
		b.mu.Lock()
		b.lost += uint64(len(recs))
		b.mu.Unlock()
	}
}

// Lost returns how many bid records were not kept since the start.
func (b *bidLog) Lost() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lost
}

// ListBids returns a page of the node's bid records, newest first.
// q.Filter is an outcome (OutcomeBid, OutcomeDeclined; "" for both).
func ListBids(st Ranger, q Query) ([]BidRecord, string, error) {
	base := bidTimeIndex
	switch q.Filter {
	case "":
	case OutcomeBid, OutcomeDeclined:
		base = bidOutcomeIndex + q.Filter + "/"
	default:
		return nil, "", fmt.Errorf("%w: outcome %.40q: want %s or %s", ErrBadQuery, q.Filter, OutcomeBid, OutcomeDeclined)
	}
	return page(st, base, q, func(key string) (BidRecord, bool, error) {
		var rec BidRecord
		ok, err := st.Lookup(key, &rec)
		return rec, ok, err
	})
}

// ExpireBids deletes the bid records received before cutoff, with their
// index keys, chunk records a write, and returns how many it deleted. A
// record it cannot read is deleted alone: a listing skips index keys
// whose record is gone, and RebuildIndex drops them.
func ExpireBids(st interface {
	Ranger
	Write(put map[string]any, del []string) error
}, cutoff time.Time, chunk int) (int, error) {
	n := 0
	var del []string
	flush := func() error {
		if len(del) == 0 {
			return nil
		}
		err := st.Write(nil, del)
		del = del[:0]
		return err
	}
	err := st.ScanRange(BidPrefix, fmt.Sprintf("%s%020d", BidPrefix, cutoff.UnixNano()), func(key string, v []byte) error {
		del = append(del, key)
		var r BidRecord
		if json.Unmarshal(v, &r) == nil {
			for k := range r.index() {
				del = append(del, k)
			}
		}
		n++
		if len(del) >= 3*chunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return n, err
}

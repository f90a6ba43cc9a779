package orchestrator

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

const ms = time.Millisecond

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// machine is what Auction and Job have in common, so scenarios can drive both.
type machine interface {
	Bid(types.Bid, time.Time)
	Decline(types.Decline, time.Time)
	Confirmed(types.Confirm, time.Time)
	Rejected(types.Reject, time.Time)
	Tick(time.Time)
	Actions() []Action
}

// event is one scripted input to a machine.
type event func(m machine, now time.Time)

// step feeds one event at t0+at and checks the actions it produced: each
// want line must be a prefix of the action at the same position.
type step struct {
	at    time.Duration
	ev    event
	want  []string
	state types.JobState // checked when set, for a Job
}

// run plays steps on m. Observe actions are left out of the comparison:
// the reputation tests check them.
func run(t *testing.T, m machine, steps []step) {
	t.Helper()
	for i, s := range steps {
		s.ev(m, t0.Add(s.at))
		got := actionStrings(slices.DeleteFunc(m.Actions(), func(a Action) bool { _, ok := a.(Observe); return ok }))
		if !prefixesMatch(got, s.want) {
			t.Fatalf("step %d (at %s): actions\n  %s\nwant\n  %s", i, s.at, strings.Join(got, "\n  "), strings.Join(s.want, "\n  "))
		}
		if j, ok := m.(*Job); ok && s.state != "" && j.Info().State != s.state {
			t.Fatalf("step %d (at %s): state %s (%s), want %s", i, s.at, j.Info().State, j.Info().Reason, s.state)
		}
	}
}

func actionStrings(acts []Action) []string {
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = a.String()
	}
	return out
}

func prefixesMatch(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			return false
		}
	}
	return true
}

// mkBid makes peer's bid for job at price whole credits per core-hour.
func mkBid(job types.JobID, peer string, price int64, score, load float64) types.Bid {
	return types.Bid{JobID: job, Node: types.NodeID{PeerID: peer}, Addrs: []string{"/mem/" + peer},
		Price: types.Credits(price) * types.Credit, Score: score, Load: load}
}

// bidAlloc names the allocation peer bids in the machine's current
// attempt, "j1-a<attempt>-<peer>", so that tables stay readable. (Nodes
// choose an unguessable ID.)
func bidAlloc(m machine, peer string) types.AllocationID {
	attempt := 1
	if j, ok := m.(*Job); ok {
		attempt = max(len(j.info.Attempts), 1)
	}
	return types.AllocationID(fmt.Sprintf("j1-a%d-%s", attempt, peer))
}

func bid(peer string, price int64) event {
	return bidFull(peer, price, 10, 0.5)
}

func bidFull(peer string, price int64, score, load float64) event {
	return func(m machine, now time.Time) {
		b := mkBid("j1", peer, price, score, load)
		b.Allocation = bidAlloc(m, peer)
		m.Bid(b, now)
	}
}

func decline(peer string, reasons ...string) event {
	return func(m machine, now time.Time) {
		m.Decline(types.Decline{JobID: "j1", Node: types.NodeID{PeerID: peer}, Reasons: reasons}, now)
	}
}

func confirm(alloc string, epoch uint64) event {
	return func(m machine, now time.Time) {
		m.Confirmed(types.Confirm{JobID: "j1", AllocationID: types.AllocationID(alloc), Epoch: epoch, LockExpiry: now.Add(time.Minute)}, now)
	}
}

func reject(alloc, reason string) event {
	return func(m machine, now time.Time) {
		m.Rejected(types.Reject{JobID: "j1", AllocationID: types.AllocationID(alloc), Reason: reason}, now)
	}
}

func tick(m machine, now time.Time) { m.Tick(now) }

func newTestAuction(t *testing.T, cfg AuctionConfig) *Auction {
	t.Helper()
	req := types.BidRequest{JobID: "j1", Executor: "wasm", Resources: types.Resources{CPU: 1000, Memory: 64 << 20}}
	a, err := NewAuction(req, cfg, DefaultRanking(), t0)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

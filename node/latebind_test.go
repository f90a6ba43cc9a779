package node

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// lateBids returns the bids among effects, by job.
func lateBids(effects []Effect) map[types.JobID]Send {
	out := map[types.JobID]Send{}
	for _, e := range effects {
		if s, ok := e.(Send); ok {
			if b, ok := s.Msg.(*types.Bid); ok {
				out[b.JobID] = s
			}
		}
	}
	return out
}

// A request declined as busy gets a bid, unasked, once capacity frees, and
// that bid is honoured like any other; another requester's withdrawal frees
// nothing for it, and one declined for good is not remembered.
func TestMachineLateBid(t *testing.T) {
	const other = "12D3KooWOther"
	d := newDriver(t)
	if _, ok := d.accept("a", res(2, gib)).Msg.(*types.Confirm); !ok {
		t.Fatal("a not locked")
	}
	if dec, ok := d.bid(other, "b", res(1, gib)).(*types.Decline); !ok || !dec.Busy {
		t.Fatalf("b: %#v, want a busy decline", dec)
	}
	if dec, ok := d.bid(other, "huge", res(64, gib)).(*types.Decline); !ok || dec.Busy {
		t.Fatalf("huge: %#v, want a decline for good", dec)
	}
	// a's requester cancels it: the room goes to b, late.
	rep, effects := d.reply(func(tk Ticket) { d.m.Cancel(requester, &types.Cancel{JobID: "a", AllocationID: "a"}, tk, d.now) })
	if rep.Err != nil {
		t.Fatal(rep.Err)
	}
	late := lateBids(effects)
	s, ok := late["b"]
	if len(late) != 1 || !ok || s.To != other || s.Request.JobID != "b" || !s.Deadline.Equal(d.now.Add(3*time.Second)) {
		t.Fatalf("late bids %+v, want one for b to %s, held 3s", late, other)
	}
	b := s.Msg.(*types.Bid)
	if c, ok := d.acceptFrom(other, types.Accept{JobID: "b", AllocationID: b.Allocation, Resources: res(1, gib)}).Msg.(*types.Confirm); !ok || c.AllocationID != b.Allocation {
		t.Fatalf("accepting the late bid: %#v", c)
	}
	// Nothing is remembered any more: another cancel frees room for no one.
	if _, effects := d.reply(func(tk Ticket) { d.m.Cancel(other, &types.Cancel{JobID: "b", AllocationID: b.Allocation}, tk, d.now) }); len(lateBids(effects)) != 0 {
		t.Fatalf("late bids after b was placed: %+v", lateBids(effects))
	}
}

// A remembered request is forgotten lateBindFor after its busy decline,
// and a request of the same job replaces the earlier one.
func TestMachineLateBidExpires(t *testing.T) {
	d := newDriver(t)
	d.accept("a", res(2, gib))
	if dec, ok := d.bid("12D3KooWOther", "b", res(1, gib)).(*types.Decline); !ok || !dec.Busy {
		t.Fatalf("b: %#v, want a busy decline", dec)
	}
	d.now = d.now.Add(lateBindFor)
	d.m.Tick(d.now) // a's lock (10s) is still there; b's request is too old
	if late := lateBids(d.flush()); len(late) != 0 {
		t.Fatalf("late bids %+v", late)
	}
	_, effects := d.reply(func(tk Ticket) { d.m.Cancel(requester, &types.Cancel{JobID: "a", AllocationID: "a"}, tk, d.now) })
	if late := lateBids(effects); len(late) != 0 {
		t.Fatalf("a late bid for a request %s old: %+v", lateBindFor, late)
	}
	if len(d.m.waiting) != 0 {
		t.Fatalf("still waiting: %+v", d.m.waiting)
	}
}

// One requester is remembered for at most lateBindPerRequester requests,
// every requester for lateBindSize: a flood of busy requests from one
// crowds out no one, and a freed node bids on the oldest first.
func TestMachineLateBidBounds(t *testing.T) {
	d := newDriver(t)
	d.accept("a", res(2, 4*gib))
	small := types.Resources{CPU: 10, Memory: 1 << 20}
	for i := range lateBindPerRequester + 8 {
		if dec, ok := d.bid("12D3KooWFlooder", fmt.Sprint("f", i), small).(*types.Decline); !ok || !dec.Busy {
			t.Fatalf("f%d: %#v", i, dec)
		}
	}
	if dec, ok := d.bid("12D3KooWHonest", "h", small).(*types.Decline); !ok || !dec.Busy {
		t.Fatalf("h: %#v", dec)
	}
	_, effects := d.reply(func(tk Ticket) { d.m.Cancel(requester, &types.Cancel{JobID: "a", AllocationID: "a"}, tk, d.now) })
	late := lateBids(effects)
	if len(late) != lateBindPerRequester+1 {
		t.Fatalf("%d late bids, want %d", len(late), lateBindPerRequester+1)
	}
	for i := range lateBindPerRequester {
		if _, ok := late[types.JobID(fmt.Sprint("f", i))]; !ok {
			t.Fatalf("no late bid for f%d, one of the oldest", i)
		}
	}
	if _, ok := late["h"]; !ok {
		t.Fatal("the honest requester's request was crowded out")
	}
	d.accept("full", res(2, 4*gib).Sub(types.Resources{CPU: 10 * (lateBindPerRequester + 1), Memory: (lateBindPerRequester + 1) << 20}))
	for n := range 2 * lateBindSize { // many requesters, each once, on a full node
		if dec, ok := d.bid(fmt.Sprint("12D3KooWR", n), "x", small).(*types.Decline); !ok || !dec.Busy {
			t.Fatalf("R%d: %#v", n, dec)
		}
	}
	if len(d.m.waiting) != lateBindSize {
		t.Fatalf("%d remembered, want %d", len(d.m.waiting), lateBindSize)
	}
}

// An Accept of a bid whose hold was given up for a requester within its
// share is rejected as busy: only for now, not the node's fault.
func TestMachineEvictedBidRejectedAsBusy(t *testing.T) {
	d := newDriver(t)
	if _, ok := d.bid("12D3KooWFlooder", "f", res(2, 4*gib)).(*types.Bid); !ok {
		t.Fatal("no bid for the flooder")
	}
	if _, ok := d.bid(requester, "v", res(1, gib)).(*types.Bid); !ok {
		t.Fatal("the requester within its share got no bid")
	}
	rep := d.acceptFrom("12D3KooWFlooder", types.Accept{JobID: "f", AllocationID: "f", Resources: res(2, 4*gib)})
	rej, ok := rep.Msg.(*types.Reject)
	if !ok || !rej.Busy || !strings.Contains(rej.Reason, "for a requester within its share") {
		t.Fatalf("the evicted bid's accept: %#v", rep.Msg)
	}
	rep = d.acceptFrom("12D3KooWFlooder", types.Accept{JobID: "f", AllocationID: "nope", Resources: res(2, 4*gib)})
	if rej, ok := rep.Msg.(*types.Reject); !ok || rej.Busy {
		t.Fatalf("an accept of no bid: %#v, want a reject that is not busy", rep.Msg)
	}
}

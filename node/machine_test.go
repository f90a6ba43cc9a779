package node

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/opendms/dms/types"
)

// mapHistory is a History over the records a test driver saved.
type mapHistory map[types.AllocationID]Allocation

func (h mapHistory) Lookup(id types.AllocationID) (Allocation, bool) {
	r, ok := h[id]
	return r, ok
}

// driver plays the shell around a Machine: it saves each step's records
// (failing when told to), advances, and keeps the effects.
type driver struct {
	t       *testing.T
	m       *Machine
	saved   mapHistory
	failing error // the next save fails with this, once
	now     time.Time
	ticket  Ticket
}

const prov = "12D3KooWProvider"

func newDriver(t *testing.T, stored ...Allocation) *driver {
	t.Helper()
	d := &driver{t: t, saved: mapHistory{}, now: t0}
	m, err := NewMachine(MachineConfig{
		ID:        types.NodeID{PeerID: prov},
		Record:    types.CapabilityRecord{Offered: res(2, 4*gib), Price: types.Credit, Executors: []string{"wasm"}},
		Executors: []string{"wasm"}, LockTTL: 10 * time.Second, BidHold: 3 * time.Second,
		NewID: jobNamesAlloc,
	}, d.saved, stored, 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	d.m = m
	d.flush()
	return d
}

// flush saves the records of the steps so far and returns their effects.
func (d *driver) flush() []Effect {
	var err error
	if d.failing != nil {
		err, d.failing = d.failing, nil
	} else {
		for _, r := range d.m.Ready() {
			if r.Discard() {
				delete(d.saved, r.AllocationID)
			} else {
				d.saved[r.AllocationID] = r
			}
		}
	}
	return d.m.Advance(err)
}

func (d *driver) next() Ticket { d.ticket++; return d.ticket }

// reply steps a request and returns its one Reply, and the other effects.
func (d *driver) reply(step func(t Ticket)) (Reply, []Effect) {
	d.t.Helper()
	t := d.next()
	step(t)
	var reply []Reply
	var other []Effect
	for _, e := range d.flush() {
		if r, ok := e.(Reply); ok && r.Ticket == t {
			reply = append(reply, r)
		} else {
			other = append(other, e)
		}
	}
	if len(reply) != 1 {
		d.t.Fatalf("ticket %d got %d replies, want exactly 1 (other effects %v)", t, len(reply), other)
	}
	return reply[0], other
}

// bid asks from's bid for job id (whose allocation the tests' NewID names
// id too) and returns the node's answer.
func (d *driver) bid(from, id string, r types.Resources) types.Message {
	d.t.Helper()
	d.m.BidRequest(&types.BidRequest{JobID: types.JobID(id), Requester: from, Executor: "wasm", Resources: r, Deadline: d.now.Add(time.Second)}, d.now)
	for _, e := range d.flush() {
		if s, ok := e.(Send); ok {
			return s.Msg
		}
	}
	d.t.Fatal("no answer to a bid request")
	return nil
}

// acceptFrom hands the machine from's Accept and returns its Reply.
func (d *driver) acceptFrom(from string, acc types.Accept) Reply {
	d.t.Helper()
	rep, _ := d.reply(func(t Ticket) { d.m.Accept(from, &acc, t, d.now) })
	return rep
}

// accept bids for job id and accepts the bid.
func (d *driver) accept(id string, r types.Resources) Reply {
	d.t.Helper()
	d.bid(requester, id, r)
	return d.acceptFrom(requester, types.Accept{JobID: types.JobID(id), AllocationID: types.AllocationID(id), Resources: r})
}

func (d *driver) invoke(id string, epoch uint64) (Reply, []Effect) {
	d.t.Helper()
	return d.reply(func(t Ticket) {
		d.m.Invoke(requester, &types.Invocation{JobID: "j", AllocationID: types.AllocationID(id), Epoch: epoch,
			Task: types.Task{Executor: "wasm", Module: "bafymodule", Resources: res(1, gib)}}, t, d.now)
	})
}

func confirmOf(t *testing.T, r Reply) *types.Confirm {
	t.Helper()
	c, ok := r.Msg.(*types.Confirm)
	if !ok || r.Err != nil {
		t.Fatalf("want a confirm, got %v", r)
	}
	return c
}

// The life of one allocation, effect by effect, in the order a shell must
// apply them: no effect comes out before Advance, which comes after the
// records are saved.
func TestMachineAllocationLife(t *testing.T) {
	d := newDriver(t)
	d.m.BidRequest(&types.BidRequest{JobID: "a1", Requester: requester, Executor: "wasm", Resources: res(1, gib), Deadline: t0.Add(time.Second)}, d.now)
	if recs := d.m.Ready(); len(recs) != 0 {
		t.Fatalf("a bid wrote %v", recs)
	}
	effs := d.flush()
	if len(effs) != 1 {
		t.Fatalf("bid effects %v", effs)
	}
	if s, ok := effs[0].(Send); !ok || s.To != requester || s.Msg.Kind() != types.KindBid {
		t.Fatalf("want a bid sent, got %v", effs[0])
	}

	t1 := d.next()
	d.m.Accept(requester, &types.Accept{JobID: "a1", AllocationID: "a1", Resources: res(1, gib)}, t1, d.now)
	if recs := d.m.Ready(); len(recs) != 1 || recs[0].State != types.AllocLocked || recs[0].Epoch == 0 {
		t.Fatalf("the lock's record must be written before the confirm: %+v", recs)
	}
	c := confirmOf(t, d.flush()[0].(Reply))
	if d.saved["a1"].Epoch != c.Epoch {
		t.Fatalf("confirmed epoch %d, saved %d", c.Epoch, d.saved["a1"].Epoch)
	}

	rep, effs := d.invoke("a1", c.Epoch)
	if rep.Err != nil || d.saved["a1"].State != types.AllocRunning || d.saved["a1"].Task == nil {
		t.Fatalf("invoke: %v, record %+v", rep, d.saved["a1"])
	}
	if len(effs) != 2 || effs[0].String() != "run a1" || effs[1].(Notify).Status.State != types.AllocRunning {
		t.Fatalf("invoke effects %v", effs)
	}
	stream := effs[1].(Notify).Ticket

	d.m.RunEnded(types.Status{JobID: "j", AllocationID: "a1", State: types.AllocCompleted, Result: &types.Result{Stdout: "bafyout"}}, d.now)
	effs = d.flush()
	if d.saved["a1"].State != types.AllocCompleted || d.saved["a1"].Result.Stdout != "bafyout" {
		t.Fatalf("record after the run %+v", d.saved["a1"])
	}
	if len(effs) != 1 || effs[0].(Notify).Ticket != stream || !effs[0].(Notify).Last {
		t.Fatalf("end effects %v", effs)
	}
	if in := d.m.Info(d.now); in.Available != res(2, 4*gib) || in.Running != 0 || in.Locked != 0 {
		t.Fatalf("after the end: %+v", in)
	}
	// A restarted requester invokes again: it gets the final status.
	rep, effs = d.invoke("a1", c.Epoch)
	if rep.Err != nil || len(effs) != 1 || effs[0].(Notify).Status.State != types.AllocCompleted || !effs[0].(Notify).Last {
		t.Fatalf("invoke after the end: %v %v", rep, effs)
	}
}

// A lock the node cannot write down is not promised: the accept is
// rejected with the reason, and the capability is free again.
func TestMachineUnrecordedLockIsRejected(t *testing.T) {
	d := newDriver(t)
	d.bid(requester, "a1", res(2, gib))
	d.failing = errors.New("no space left on device")
	rep := d.acceptFrom(requester, types.Accept{JobID: "a1", AllocationID: "a1", Resources: res(2, gib)})
	r, ok := rep.Msg.(*types.Reject)
	if !ok || !strings.Contains(r.Reason, "not recorded") || !strings.Contains(r.Reason, "no space left") {
		t.Fatalf("want a reject saying the lock was not recorded, got %v", rep)
	}
	if in := d.m.Info(d.now); in.Locked != 0 || in.Holds != 1 || in.Held != res(2, gib) {
		t.Fatalf("an unrecorded lock is not back to its bid's hold: %+v", in)
	}
	// The disk is back: the same accept succeeds, its bid's hold restored.
	confirmOf(t, d.acceptFrom(requester, types.Accept{JobID: "a1", AllocationID: "a1", Resources: res(2, gib)}))
}

// A lock released while the disk is full stays released and its record
// is written with the next step's: a restart from the records then never
// finds it locked beside the lock that took its room.
func TestMachineUnrecordedReleaseIsWrittenLater(t *testing.T) {
	d := newDriver(t)
	confirmOf(t, d.accept("first", res(2, gib)))
	d.failing = errors.New("no space left on device")
	if rep, _ := d.reply(func(tk Ticket) {
		d.m.Cancel(requester, &types.Cancel{JobID: "first", AllocationID: "first"}, tk, d.now)
	}); rep.Err != nil {
		t.Fatalf("cancel: %v", rep)
	}
	if r := d.saved["first"]; r.State != types.AllocLocked {
		t.Fatalf("the failed write changed the saved record: %+v", r)
	}
	confirmOf(t, d.accept("second", res(2, gib)))
	if r, kept := d.saved["first"]; kept {
		t.Fatalf("the released lock's record was not written with the next step's: %+v", r)
	}
	var stored []Allocation
	for _, r := range d.saved {
		stored = append(stored, r)
	}
	d2 := newDriver(t, stored...)
	if in := d2.m.Info(d2.now); in.Locked != 1 || !in.LockedRes.Fits(res(2, 4*gib)) {
		t.Fatalf("after a restart: %+v", in)
	}
	// A lock whose own write failed is undone: its record is not written later.
	d2.bid(requester, "third", res(1, gib))
	d2.failing = errors.New("no space left on device")
	d2.acceptFrom(requester, types.Accept{JobID: "third", AllocationID: "third", Resources: res(1, gib)})
	d2.flush()
	if r, kept := d2.saved["third"]; kept {
		t.Fatalf("an undone lock's record was written later: %+v", r)
	}
}

// Whose fault each failure the machine itself decides is: a lock that
// expired, or a node that restarted, is the node's.
func TestMachineFaults(t *testing.T) {
	d := newDriver(t)
	c := confirmOf(t, d.accept("expired", res(1, gib)))
	d.m.Tick(d.now.Add(10 * time.Second))
	d.flush()
	if r, kept := d.saved["expired"]; kept {
		t.Fatalf("an expired lock left a record: %+v", r)
	}
	rep, effs := d.invoke("expired", c.Epoch)
	if st := effs[0].(Notify).Status; rep.Err != nil || st.State != types.AllocFailed || st.Fault != types.FaultNode || !strings.Contains(st.Reason, "lock expired") {
		t.Fatalf("invoking an expired lock after the tick gives its end: %v %v", rep, effs)
	}

	c = confirmOf(t, d.accept("running", res(1, gib)))
	d.invoke("running", c.Epoch)
	locked := d.saved["running"]
	locked.AllocationID, locked.State, locked.Task, locked.StartedAt = "locked", types.AllocLocked, nil, time.Time{}
	locked.LockExpiry = d.now.Add(-time.Second)
	d2 := newDriver(t, d.saved["running"], locked)
	if r := d2.saved["running"]; r.State != types.AllocFailed || r.Fault != types.FaultNode || !strings.Contains(r.Reason, "restarted") {
		t.Fatalf("running after a restart: %+v", r)
	}
	if r, kept := d2.saved["locked"]; kept {
		t.Fatalf("a lock found expired at the restart kept its record: %+v", r)
	}
	if next := confirmOf(t, d2.accept("new", res(1, gib))); next.Epoch <= c.Epoch {
		t.Fatalf("epoch %d issued again after the restart (had %d)", next.Epoch, c.Epoch)
	}
}

// jobs.Transition judges every change: an end reported for an allocation
// that is not running, or a non-terminal "end", changes nothing.
func TestMachineIgnoresImpossibleEnds(t *testing.T) {
	d := newDriver(t)
	confirmOf(t, d.accept("a1", res(1, gib)))
	d.m.RunEnded(types.Status{AllocationID: "a1", State: types.AllocCompleted}, d.now)
	d.m.RunEnded(types.Status{AllocationID: "nope", State: types.AllocCompleted}, d.now)
	if effs := d.flush(); len(effs) != 0 || d.saved["a1"].State != types.AllocLocked {
		t.Fatalf("an end for a locked allocation: %v, %+v", effs, d.saved["a1"])
	}
	c := confirmOf(t, d.accept("a2", res(1, gib)))
	d.invoke("a2", c.Epoch)
	d.m.RunEnded(types.Status{AllocationID: "a2", State: types.AllocRunning}, d.now)
	if effs := d.flush(); len(effs) != 0 || d.saved["a2"].State != types.AllocRunning {
		t.Fatalf("a running 'end': %v", effs)
	}
}

// Random requests of several requesters against one machine, with a disk
// that fails now and then: every request gets exactly one Reply, in its own
// step; nothing is confirmed that is not saved, nor but a bid to the same
// requester for the same job; a refused accept writes nothing; the ledger
// never exceeds the offer; the saved record of every live allocation
// agrees with it, unless its last write failed; epochs only grow; a bid
// not asked for in its step (late binding) goes only to a requester whose
// request for that job was declined as busy within lateBindFor, once.
func TestMachineProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		d := newDriver(t)
		n := 0
		d.m.cfg.NewID = func(job types.JobID) types.AllocationID { n++; return types.AllocationID(fmt.Sprint(job, "-", n)) }
		peers := []string{requester, "12D3KooWOther"}
		unsaved := map[types.AllocationID]bool{} // the last write of these failed
		var lastEpoch uint64
		epochs := map[types.AllocationID]uint64{} // the epoch each allocation was confirmed under
		bids := map[types.AllocationID]*types.BidRequest{}
		var bidIDs []types.AllocationID
		type key struct {
			requester string
			job       types.JobID
		}
		busy := map[key]time.Time{} // busy declines, while late binding may answer them
		for range rapid.IntRange(1, 200).Draw(rt, "steps") {
			d.now = d.now.Add(time.Duration(rapid.IntRange(0, 3000).Draw(rt, "ms")) * time.Millisecond)
			from := rapid.SampledFrom(peers).Draw(rt, "from")
			job := types.JobID(fmt.Sprint("j", rapid.IntRange(0, 3).Draw(rt, "job")))
			id := types.AllocationID(fmt.Sprint(job, "-", rapid.IntRange(0, 5).Draw(rt, "guess")))
			if len(bidIDs) > 0 && rapid.IntRange(0, 3).Draw(rt, "bid") > 0 {
				id = rapid.SampledFrom(bidIDs).Draw(rt, "alloc")
				job = bids[id].JobID
			}
			t := d.next()
			var req *types.BidRequest
			accept := false
			left := len(d.m.Ready()) // records an earlier failed write left
			switch rapid.IntRange(0, 6).Draw(rt, "event") {
			case 0:
				req = &types.BidRequest{JobID: job, Requester: from, Executor: "wasm",
					Resources: res(float64(rapid.IntRange(1, 2).Draw(rt, "cpu")), gib), Deadline: d.now.Add(time.Second)}
				d.m.BidRequest(req, d.now)
				t = 0
			case 1:
				accept = true
				d.m.Accept(from, &types.Accept{JobID: job, AllocationID: id, Resources: res(float64(rapid.IntRange(1, 2).Draw(rt, "cpu")), gib)}, t, d.now)
			case 2:
				epoch := uint64(rapid.IntRange(0, 8).Draw(rt, "epoch"))
				d.m.Invoke(from, &types.Invocation{JobID: types.JobID(id), AllocationID: id, Epoch: epoch,
					Task: types.Task{Executor: "wasm", Resources: res(1, gib)}}, t, d.now)
			case 3:
				d.m.Cancel(from, &types.Cancel{JobID: types.JobID(id), AllocationID: id}, t, d.now)
			case 4:
				d.m.Query(from, &types.StatusQuery{AllocationID: id}, t)
			case 5:
				end := rapid.SampledFrom([]types.AllocationState{types.AllocCompleted, types.AllocFailed, types.AllocCancelled}).Draw(rt, "end")
				d.m.RunEnded(types.Status{AllocationID: id, State: end}, d.now)
				t = 0
			case 6:
				d.m.Tick(d.now)
				t = 0
			}
			failed := rapid.IntRange(0, 9).Draw(rt, "disk full") == 0
			written := len(d.m.Ready()) - left
			for _, r := range d.m.Ready() {
				unsaved[r.AllocationID] = failed
			}
			if failed {
				d.failing = errors.New("disk full")
			}
			replies := 0
			for _, e := range d.flush() {
				if s, ok := e.(Send); ok {
					k := key{s.To, s.Request.JobID}
					switch m := s.Msg.(type) {
					case *types.Bid:
						if s.Request != req {
							if at, ok := busy[k]; !ok || !d.now.Before(at.Add(lateBindFor)) {
								rt.Fatalf("a late bid for %s to %s, declined as busy: %v (%s)", k.job, k.requester, ok, at)
							}
						}
						delete(busy, k)
						bids[m.Allocation] = s.Request
						bidIDs = append(bidIDs, m.Allocation)
					case *types.Decline:
						delete(busy, k)
						if m.Busy {
							busy[k] = d.now
						}
					}
				}
				r, ok := e.(Reply)
				if !ok {
					continue
				}
				if _, rejected := r.Msg.(*types.Reject); rejected && accept && written > 0 && !failed {
					rt.Fatalf("a refused accept wrote %d records", written)
				}
				if r.Ticket != t {
					rt.Fatalf("a reply to ticket %d during the step of %d", r.Ticket, t)
				}
				replies++
				if c, ok := r.Msg.(*types.Confirm); ok {
					if b := bids[c.AllocationID]; b == nil || b.Requester != from || b.JobID != c.JobID {
						rt.Fatalf("confirmed %s to %s for job %s, bid %+v", c.AllocationID, from, c.JobID, b)
					}
					if s := d.saved[c.AllocationID]; s.Epoch != c.Epoch || unsaved[c.AllocationID] {
						rt.Fatalf("confirmed %s under epoch %d, saved %+v", c.AllocationID, c.Epoch, s)
					}
					if prev, again := epochs[c.AllocationID]; again && prev != c.Epoch || !again && c.Epoch <= lastEpoch {
						rt.Fatalf("%s confirmed under epoch %d (before: %d, %v; last issued %d)", c.AllocationID, c.Epoch, prev, again, lastEpoch)
					}
					epochs[c.AllocationID], lastEpoch = c.Epoch, max(lastEpoch, c.Epoch)
				}
			}
			if t != 0 && replies != 1 || t == 0 && replies != 0 {
				rt.Fatalf("ticket %d got %d replies", t, replies)
			}
			if used := d.m.Ledger().Used(d.now); !used.Fits(d.m.Ledger().Registered()) {
				rt.Fatalf("the ledger uses %s of %s", used, d.m.Ledger().Registered())
			}
			for _, l := range d.m.Live() {
				if s, ok := d.saved[l.AllocationID]; !unsaved[l.AllocationID] && (!ok || s.State != l.State || s.Epoch != l.Epoch) {
					rt.Fatalf("live %s is %s (epoch %d), saved %+v", l.AllocationID, l.State, l.Epoch, s)
				}
			}
			restarted, err := NewMachine(d.m.cfg, d.saved, slices.Collect(maps.Values(d.saved)), 0, d.now)
			if err != nil {
				rt.Fatal(err)
			}
			if used := restarted.Ledger().Used(d.now); !used.Fits(restarted.Ledger().Registered()) {
				rt.Fatalf("restarted from its records, the node uses %s of %s", used, restarted.Ledger().Registered())
			}
		}
	})
}

// Every Accept that is not the acceptance of a bid of this node, to its
// sender, for its job, within its hold, for the resources bid, is refused
// saying why, and writes nothing: no record, no lock.
func TestMachineAcceptHonoursOnlyABid(t *testing.T) {
	const attacker = "12D3KooWAttacker"
	r := res(1, gib)
	d := newDriver(t)
	d.m.cfg.NewID = func(job types.JobID) types.AllocationID { return types.AllocationID(job + "-unguessable") }
	if _, ok := d.bid(requester, "v", r).(*types.Bid); !ok {
		t.Fatal("no bid for the victim")
	}
	if _, ok := d.bid(attacker, "own", r).(*types.Bid); !ok {
		t.Fatal("no bid for the attacker")
	}
	cases := []struct {
		name, from, reason string
		acc                types.Accept
	}{
		{"no bid at all", attacker, "no bid of this node for allocation x to you",
			types.Accept{JobID: "x", AllocationID: "x", Resources: r}},
		{"another requester's bid", attacker, "no bid of this node for allocation v-unguessable to you",
			types.Accept{JobID: "v", AllocationID: "v-unguessable", Resources: r}},
		{"a predicted ID", attacker, "no bid of this node for allocation v-a1-c0 to you",
			types.Accept{JobID: "v", AllocationID: "v-a1-c0", Resources: r}},
		{"another job", requester, "the bid for allocation v-unguessable was for job v, not w",
			types.Accept{JobID: "w", AllocationID: "v-unguessable", Resources: r}},
		{"other resources", requester, "resources differ from the bid: the accept asks for cpu 2 cores, memory 1 GiB, disk 0 B, the bid held cpu 1 core, memory 1 GiB, disk 0 B",
			types.Accept{JobID: "v", AllocationID: "v-unguessable", Resources: res(2, gib)}},
		{"zero resources", attacker, "resources differ from the bid",
			types.Accept{JobID: "own", AllocationID: "own-unguessable"}},
	}
	for _, c := range cases {
		rep := d.acceptFrom(c.from, c.acc)
		rej, ok := rep.Msg.(*types.Reject)
		if !ok || !strings.HasPrefix(rej.Reason, c.reason) {
			t.Errorf("%s: %v, want a reject saying %q", c.name, rep.Msg, c.reason)
		}
	}
	if len(d.saved) != 0 || len(d.m.Live()) != 0 || len(d.m.Ledger().Locks()) != 0 {
		t.Fatalf("refused accepts left records %v, live %v", d.saved, d.m.Live())
	}
	// After the hold's end, and after its requester released it.
	d.now = d.now.Add(4 * time.Second)
	rep := d.acceptFrom(requester, types.Accept{JobID: "v", AllocationID: "v-unguessable", Resources: r})
	if rej, ok := rep.Msg.(*types.Reject); !ok || !strings.HasPrefix(rej.Reason, "the bid's hold expired at ") {
		t.Fatalf("after the hold's end: %v", rep.Msg)
	}
	d.bid(requester, "v2", r)
	if rep, _ := d.reply(func(t Ticket) { d.m.Cancel(requester, &types.Cancel{JobID: "v2"}, t, d.now) }); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	rep = d.acceptFrom(requester, types.Accept{JobID: "v2", AllocationID: "v2-unguessable", Resources: r})
	if rej, ok := rep.Msg.(*types.Reject); !ok || !strings.HasPrefix(rej.Reason, "no bid of this node") {
		t.Fatalf("after the hold was released: %v", rep.Msg)
	}
	// The real bid is accepted, once; a retry gets the same confirm.
	d.bid(requester, "v3", r)
	acc := types.Accept{JobID: "v3", AllocationID: "v3-unguessable", Resources: r}
	c1 := confirmOf(t, d.acceptFrom(requester, acc))
	if c2 := confirmOf(t, d.acceptFrom(requester, acc)); *c2 != *c1 {
		t.Fatalf("a retry got %+v, first %+v", c2, c1)
	}
	if rej, ok := d.acceptFrom(attacker, acc).Msg.(*types.Reject); !ok || !strings.HasPrefix(rej.Reason, "no bid of this node") {
		t.Fatalf("the attacker accepting a live lock: %v", rej)
	}
}

// A second requester's bid request naming the same job ID does not touch
// the first requester's hold, nor can it cancel it.
func TestMachineSameJobIDOtherRequester(t *testing.T) {
	const attacker = "12D3KooWAttacker"
	d := newDriver(t)
	n := 0
	d.m.cfg.NewID = func(job types.JobID) types.AllocationID { n++; return types.AllocationID(fmt.Sprint(job, "-", n)) }
	b := d.bid(requester, "j", res(1, gib)).(*types.Bid)
	d.bid(attacker, "j", res(1, gib))
	d.reply(func(t Ticket) { d.m.Cancel(attacker, &types.Cancel{JobID: "j"}, t, d.now) })
	d.reply(func(t Ticket) { d.m.Cancel(attacker, &types.Cancel{JobID: "j", AllocationID: b.Allocation}, t, d.now) })
	confirmOf(t, d.acceptFrom(requester, types.Accept{JobID: "j", AllocationID: b.Allocation, Resources: res(1, gib)}))
}

// A bid request for no cpu or no memory is declined, not held.
func TestMachineDeclinesZeroResources(t *testing.T) {
	d := newDriver(t)
	for _, r := range []types.Resources{{}, res(1, 0), res(0, gib)} {
		dec, ok := d.bid(requester, "z", r).(*types.Decline)
		if !ok || dec.Busy || !strings.Contains(dec.Reasons[0], "some cpu and some memory") {
			t.Fatalf("a request for %s: %#v", r, dec)
		}
	}
	if n, _ := d.m.Ledger().Held(d.now); n != 0 {
		t.Fatalf("%d holds of nothing", n)
	}
}

// Under a flood of bid requests from one requester, another still gets
// bids within its share; the flooder's evicted bids are refused, saying why.
func TestMachineFairShareUnderFlood(t *testing.T) {
	const flooder = "12D3KooWFlooder"
	d := newDriver(t) // 2 cores, 4 GiB: a share of 1 core, 2 GiB
	n := 0
	d.m.cfg.NewID = func(job types.JobID) types.AllocationID { n++; return types.AllocationID(fmt.Sprint(job, "-", n)) }
	var flood []*types.Bid
	for i := range 200 {
		if b, ok := d.bid(flooder, fmt.Sprint("f", i), res(0.25, 256<<20)).(*types.Bid); ok {
			flood = append(flood, b)
		}
	}
	var got int
	for i := range 6 {
		if _, ok := d.bid(requester, fmt.Sprint("v", i), res(0.25, 256<<20)).(*types.Bid); ok {
			got++
		}
	}
	held, _ := d.m.Ledger().Held(d.now)
	t.Logf("flood: %d of 200 bid requests got a bid; victim: %d of 6 (its share is 4); %d holds", len(flood), got, held)
	if len(flood) != 8 || got != 4 {
		t.Fatalf("flooder %d bids, victim %d: want the idle node filled, then the victim's share", len(flood), got)
	}
	last := flood[len(flood)-1]
	rej, ok := d.acceptFrom(flooder, types.Accept{JobID: last.JobID, AllocationID: last.Allocation, Resources: res(0.25, 256<<20)}).Msg.(*types.Reject)
	if !ok || !strings.Contains(rej.Reason, "given up") {
		t.Fatalf("the flooder's evicted bid: %v", rej)
	}
	if len(d.saved) != 0 {
		t.Fatal("the flood left records")
	}
}

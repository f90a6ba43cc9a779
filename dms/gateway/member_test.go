package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/group"
	"github.com/opendms/dms/dms/gateway/group/grouptest"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/types"
)

// A group of gateways in one process: each has its own database and group
// member over loopback TCP (grouptest), they share a fakeRunner (the
// providers, and the network's blobs), and forward calls to each other
// through a table (team). A member is killed by cutting it off and
// closing it; a partition cuts one off.

// team is a group of in-process gateways.
type team struct {
	t    *testing.T
	net  *grouptest.Net
	f    *fakeRunner
	ids  []string
	mu   sync.Mutex
	gws  map[string]*Gateway
	grps map[string]*group.Group
	dbs  map[string]*store.DB
	// gates hold back a member's applies (holdApply); forwarded hears of
	// each forward answered.
	gates     map[string]func(cmd []byte)
	forwarded func(from, to string, reply *types.CallReply)
}

// newTeam founds a group of n gateways.
func newTeam(t *testing.T, n int) *team {
	t.Helper()
	tm := &team{t: t, net: grouptest.NewNet(), f: newFakeRunner(), gws: map[string]*Gateway{}, grps: map[string]*group.Group{}, dbs: map[string]*store.DB{}}
	for i := range n {
		tm.ids = append(tm.ids, fmt.Sprintf("gw%d", i))
	}
	for _, id := range tm.ids {
		db, err := store.OpenInMemory(store.Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		tm.dbs[id] = db
		tm.start(id, false)
	}
	tm.eventually("a raft leader", func() bool { return tm.grps[tm.ids[0]].Leader() != "" })
	return tm
}

// start opens (or reopens) member id over its database.
func (tm *team) start(id string, join bool) *Gateway {
	t := tm.t
	t.Helper()
	g, err := New(Config{DB: tm.dbs[id], Runner: tm.f, Caller: tm.f})
	if err != nil {
		t.Fatal(err)
	}
	grp, err := group.Open(group.Config{
		Name: "test", Self: id, Dir: t.TempDir(), DB: tm.dbs[id], Transport: tm.net.Transport(id),
		FSM: gatedFSM{FSM: g.StateMachine(), gate: func(cmd []byte) { tm.gate(id, cmd) }}, Peers: tm.ids, Join: join,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Join(grp, "test", id, teamForwarder{tm: tm, self: id}); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	tm.mu.Lock()
	tm.gws[id], tm.grps[id] = g, grp
	tm.mu.Unlock()
	t.Cleanup(func() { tm.stop(id) })
	return g
}

// stop closes member id, as a kill would: its connections drop at once.
func (tm *team) stop(id string) {
	tm.mu.Lock()
	g, grp := tm.gws[id], tm.grps[id]
	delete(tm.gws, id)
	delete(tm.grps, id)
	tm.mu.Unlock()
	if g == nil {
		return
	}
	tm.net.Partition(id)
	g.Close()
	grp.Close()
	tm.net.Heal(id)
}

// gatedFSM is a member's state machine, each of whose applies first
// passes its gate.
type gatedFSM struct {
	group.FSM
	gate func(cmd []byte)
}

func (f gatedFSM) Apply(index uint64, cmd []byte) []byte {
	f.gate(cmd)
	return f.FSM.Apply(index, cmd)
}

// gate waits at member id's gate, if it has one, before an apply of cmd.
func (tm *team) gate(id string, cmd []byte) {
	tm.mu.Lock()
	gate := tm.gates[id]
	tm.mu.Unlock()
	if gate != nil {
		gate(cmd)
	}
}

// holdApply makes member id hold back its apply of the first entry that
// writes key, and with it every later one, until release is called (at
// the latest when the test ends). The other members apply it meanwhile.
func (tm *team) holdApply(id, key string) (release func()) {
	var once, held sync.Once
	released := make(chan struct{})
	release = func() { once.Do(func() { close(released) }) }
	tm.t.Cleanup(release)
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.gates == nil {
		tm.gates = map[string]func([]byte){}
	}
	tm.gates[id] = func(cmd []byte) {
		if bytes.Contains(cmd, []byte(strconv.Quote(key))) {
			held.Do(func() { <-released })
		}
	}
	return release
}

func (tm *team) gw(id string) *Gateway {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.gws[id]
}

func (tm *team) eventually(what string, cond func() bool) {
	tm.t.Helper()
	eventually(tm.t, what, cond)
}

// alice makes the account alice through member on, and returns her
// service there.
func (tm *team) alice(on string) Service {
	tm.t.Helper()
	g := tm.gw(on)
	if _, _, err := g.CreateAccount(tm.t.Context(), "alice"); err != nil {
		tm.t.Fatal(err)
	}
	svc, err := g.As(tm.t.Context(), "alice")
	if err != nil {
		tm.t.Fatal(err)
	}
	return svc
}

// deploy deploys fn of svc from a module of the runner's.
func (tm *team) deploy(svc Service, fn string, sc *Scaling) {
	tm.t.Helper()
	if _, err := svc.Deploy(tm.t.Context(), Deploy{Name: fn, Module: tm.f.put([]byte("\x00asm " + fn)), Scaling: sc}); err != nil {
		tm.t.Fatal(err)
	}
}

// teamForwarder forwards calls between the team's members.
type teamForwarder struct {
	tm   *team
	self string
}

func (f teamForwarder) Forward(ctx context.Context, to string, req *types.CallRequest) (*types.CallReply, error) {
	g := f.tm.gw(to)
	if g == nil || f.tm.net.IsCut(f.self, to) {
		return nil, fmt.Errorf("test forward: %s is gone", to)
	}
	reply := g.ServeForward(ctx, f.self, req)
	f.tm.mu.Lock()
	heard := f.tm.forwarded
	f.tm.mu.Unlock()
	if heard != nil {
		heard(f.self, to, reply)
	}
	return reply, nil
}

func (f teamForwarder) AddPeerAddr(addr string) (string, error) { return addr, nil }

// Fetch has nothing to do: the team's members share their runner's blobs.
func (f teamForwarder) Fetch(context.Context, string, []string) error { return nil }

// queueLeaderOf waits until a function's queue has a leader, and returns it.
func (tm *team) queueLeaderOf(on, acct, fn string) string {
	tm.t.Helper()
	var leader string
	tm.eventually("a leader of the queue of "+fn, func() bool {
		q, ok := tm.gw(on).queue(acct, fn)
		leader = q.Leader
		return ok
	})
	return leader
}

func TestGroupSharesStateAndForwardsCalls(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	g0, g1, g2 := tm.gw("gw0"), tm.gw("gw1"), tm.gw("gw2")
	if _, _, err := g0.CreateAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// A write on one member is read at once on another (a read that
	// misses catches up with the leader first).
	alice1, err := g1.As(ctx, "alice")
	if err != nil {
		t.Fatalf("an account made on gw0, read at once on gw1: %v", err)
	}
	// Credits given on one member are the account's on every member, once
	// the entry is applied there (in log order).
	if _, err := g1.Credit(ctx, "alice", 3*types.Credit, ""); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Gateway{g0, g1, g2} {
		eventually(t, "alice's credits on "+g.self, func() bool {
			a, err := g.GetAccount(ctx, "alice")
			return err == nil && a.Credits.Balance == 3*types.Credit
		})
	}
	mod := tm.f.put([]byte("\x00asm echo"))
	if _, err := alice1.Deploy(ctx, Deploy{Name: "echo", Module: mod}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Gateway{g0, g1, g2} {
		alice, err := g.As(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		res, err := alice.Invoke(ctx, "echo", Call{})
		if err != nil || string(res.Body) != "ok" {
			t.Fatalf("a call on %s: %+v %v", g.self, res, err)
		}
	}
	leader := tm.queueLeaderOf("gw2", "alice", "echo")
	submitted := tm.f.submissions()
	if submitted != 1 {
		t.Errorf("%d instances started, want 1: the queue's leader holds them all", submitted)
	}
	t.Logf("the queue of echo is led by %s", leader)
	// The same Idempotency-Key on two members is one task.
	alice0, _ := g0.As(ctx, "alice")
	a, err := alice0.InvokeAsync(ctx, "echo", Call{IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := alice1.InvokeAsync(ctx, "echo", Call{IdempotencyKey: "k1"})
	if err != nil || a.ID != b.ID {
		t.Fatalf("the key's second call: task %s (%v), want %s", b.ID, err, a.ID)
	}
	taskIn(t, alice1, a.ID, TaskCompleted)
	if res, err := alice0.TaskResult(ctx, a.ID); err != nil || string(res.Body) != "ok" {
		t.Fatalf("the result of a kept task on another member: %+v %v", res, err)
	}
}

func TestGroupQuotaIsExact(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	alice := tm.alice("gw0")
	tm.deploy(alice, "echo", nil)
	if _, err := alice.CreateEndpoint(ctx, EndpointSpec{Name: "pub", Function: "echo", DailyQuota: 20}); err != nil {
		t.Fatal(err)
	}
	var ok, over atomic.Int64
	var wg sync.WaitGroup
	for i := range 90 {
		g := tm.gw(tm.ids[i%3])
		wg.Go(func() {
			_, err := g.CallEndpoint(ctx, "pub", Call{ClientIP: "192.0.2.1"}, "")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, api.ErrTooManyRequests):
				over.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 20 || over.Load() != 70 {
		t.Fatalf("%d calls passed, %d refused; want exactly 20 and 70", ok.Load(), over.Load())
	}
	for _, id := range tm.ids {
		ep, err := tm.gw(id).endpoint("alice", "pub")
		if err == nil {
			ep, err = tm.gw(id).withQuota(ep)
		}
		if err != nil || ep.Today != 20 {
			t.Errorf("%s counts %d calls today (%v), want 20", id, ep.Today, err)
		}
	}
}

// TestGroupLeaderBehindItsRecord: a follower may apply an entry before
// the raft leader's state machine does. When that entry makes the raft
// leader the leader of a queue, a call the follower forwards to it
// meanwhile is refused (it does not lead the queue as far as it has
// applied, and its own Sync does not wait). The call goes to it again
// once it caught up: it must not wait for the queue to move, as from a
// lost leader, for the queue will not move.
func TestGroupLeaderBehindItsRecord(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	tm.deploy(tm.alice("gw0"), "echo", nil)
	leader := tm.grps[tm.ids[0]].Leader()
	var others []string
	for _, id := range tm.ids {
		if id != leader {
			others = append(others, id)
		}
	}
	from := others[0]
	key := queueKey("alice", "echo")
	release := tm.holdApply(leader, key)
	var refused atomic.Int64
	tm.mu.Lock()
	tm.forwarded = func(_, to string, reply *types.CallReply) {
		if to == leader && reply.Status == types.CallUnknown {
			refused.Add(1)
			release() // the leader applies its record once it has refused a call
		}
	}
	tm.mu.Unlock()
	written := make(chan error, 1)
	go func() { // it is acknowledged once the leader applied it
		written <- tm.gw(from).update(ctx, func(t *tx) error {
			t.set(key, Queue{Leader: leader, Followers: others, Epoch: 1})
			return nil
		})
	}()
	tm.eventually(from+" to apply the record naming "+leader, func() bool {
		_, ok := tm.gw(from).queue("alice", "echo")
		return ok
	})
	alice, err := tm.gw(from).As(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	res, err := alice.Invoke(ctx, "echo", Call{})
	if err != nil || string(res.Body) != "ok" {
		t.Fatalf("a call forwarded to the leader of its queue before it applied the record: %+v %v", res, err)
	}
	took := time.Since(began)
	if took >= failoverWait {
		t.Errorf("the call took %s: it waited for the queue to move from a live leader", took)
	}
	if refused.Load() == 0 {
		t.Fatal("the leader served the call it had not applied the record for: the test no longer tests the race")
	}
	t.Logf("the call was refused %d times by %s, served after %s", refused.Load(), leader, took.Round(time.Millisecond))
	if err := <-written; err != nil {
		t.Fatal(err)
	}
}

func TestGroupFailover(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	alice0 := tm.alice("gw0")
	tm.deploy(alice0, "echo", nil)
	if _, err := alice0.Invoke(ctx, "echo", Call{}); err != nil {
		t.Fatal(err)
	}
	leader := tm.queueLeaderOf("gw0", "alice", "echo")
	var others []string
	for _, id := range tm.ids {
		if id != leader {
			others = append(others, id)
		}
	}
	// Async calls accepted before the kill, held on their instance.
	release := tm.f.hold()
	survivor, _ := tm.gw(others[0]).As(ctx, "alice")
	var accepted []string
	for range 5 {
		task, err := survivor.InvokeAsync(ctx, "echo", Call{})
		if err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, task.ID)
	}
	killed := time.Now()
	tm.stop(leader)
	release()
	var moved string
	tm.eventually("the queue to move", func() bool {
		q, ok := tm.gw(others[0]).queue("alice", "echo")
		moved = q.Leader
		return ok && q.Leader != leader
	})
	t.Logf("the queue moved from %s to %s %s after the kill", leader, moved, time.Since(killed).Round(time.Millisecond))
	for _, id := range others {
		alice, _ := tm.gw(id).As(ctx, "alice")
		if _, err := alice.Invoke(ctx, "echo", Call{}); err != nil {
			t.Errorf("a call on %s after the failover: %v", id, err)
		}
	}
	for _, id := range accepted {
		taskIn(t, survivor, id, TaskCompleted)
	}
	// The killed member comes back and catches up.
	alice1, _ := tm.gw(others[1]).As(ctx, "alice")
	tm.deploy(alice1, "later", nil)
	back := tm.start(leader, false)
	tm.eventually("the restarted member to catch up", func() bool {
		_, err := back.function("alice", "later")
		return err == nil
	})
}

func TestGroupMinorityRefusesWrites(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	gw0alice := tm.alice("gw0")
	tm.deploy(gw0alice, "mine", nil)
	tm.deploy(gw0alice, "theirs", nil)
	cut := tm.ids[2]
	// The cut member leads the queue of "mine", another that of "theirs".
	for fn, leader := range map[string]string{"mine": cut, "theirs": tm.ids[0]} {
		if err := tm.gw(cut).update(ctx, func(t *tx) error {
			t.set(queueKey("alice", fn), Queue{Leader: leader, Epoch: 1})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	alice, err := tm.gw(cut).As(ctx, "alice") // caught up before the cut
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"mine", "theirs"} {
		if _, err := alice.Invoke(ctx, fn, Call{}); err != nil {
			t.Fatal(err)
		}
	}
	tm.net.Partition(cut)
	began := time.Now()
	// Plain calls write nothing of the group's: the queue it leads goes
	// on serving; one it must forward is refused, quickly.
	if _, err := alice.Invoke(ctx, "mine", Call{}); err != nil {
		t.Errorf("a plain call of the queue the cut member leads: %v", err)
	}
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := alice.Invoke(callCtx, "theirs", Call{}); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("a plain call the cut member would forward: %v, want 503", err)
	}
	t.Logf("the member cut off refused a call to forward after %s", time.Since(began).Round(time.Millisecond))
	began = time.Now()
	_, err = alice.Deploy(ctx, Deploy{Name: "echo", Module: tm.f.put([]byte("\x00asm echo"))})
	if !errors.Is(err, api.ErrUnavailable) || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("a deploy on a member cut off: %v, want 503 for want of a quorum", err)
	}
	t.Logf("the member cut off refused a deploy after %s: %v", time.Since(began).Round(time.Millisecond), err)
	majority, _ := tm.gw(tm.ids[0]).As(ctx, "alice")
	if _, err := majority.Deploy(ctx, Deploy{Name: "echo", Module: tm.f.put([]byte("\x00asm echo"))}); err != nil {
		t.Fatalf("a deploy on the majority: %v", err)
	}
	tm.net.Heal(cut)
	tm.eventually("the healed member to have the majority's deploy", func() bool {
		_, err := tm.gw(cut).function("alice", "echo")
		return err == nil
	})
}

// TestGroupSpreadsQueues: each new queue goes to the member that leads
// the fewest, with the next two as its followers.
func TestGroupSpreadsQueues(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	g := tm.gw("gw1")
	alice := tm.alice("gw1")
	led := map[string]int{}
	for _, fn := range []string{"a", "b", "c", "d", "e", "f"} {
		tm.deploy(alice, fn, nil)
		if _, err := alice.Invoke(ctx, fn, Call{}); err != nil {
			t.Fatal(err)
		}
		q, ok := g.queue("alice", fn)
		if !ok || len(q.Followers) != 2 || slices.Contains(q.Followers, q.Leader) {
			t.Fatalf("queue of %s: %+v", fn, q)
		}
		led[q.Leader]++
	}
	for _, id := range tm.ids {
		if led[id] != 2 {
			t.Errorf("queues led: %v, want 2 each", led)
		}
	}
}

// TestGroupFirstCallKeyed: a function whose first call is async or keyed
// (so no member leads its queue yet) gets a leader, which runs it.
func TestGroupFirstCallKeyed(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	alice := tm.alice("gw2")
	tm.deploy(alice, "sync", nil)
	tm.deploy(alice, "async", nil)
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if res, err := alice.Invoke(callCtx, "sync", Call{IdempotencyKey: "first"}); err != nil || string(res.Body) != "ok" {
		t.Fatalf("a keyed first call: %+v %v", res, err)
	}
	task, err := alice.InvokeAsync(ctx, "async", Call{})
	if err != nil {
		t.Fatal(err)
	}
	taskIn(t, alice, task.ID, TaskCompleted)
}

// TestGroupKeepsMinimumWarm: a function that keeps an instance warm gets
// one, on the member that leads its queue only, before any call; when
// that member is lost, its successor starts one.
func TestGroupKeepsMinimumWarm(t *testing.T) {
	tm := newTeam(t, 3)
	tm.deploy(tm.alice("gw1"), "warm", &Scaling{MinInstances: 1})
	tm.eventually("one instance started", func() bool { return tm.f.submissions() == 1 })
	leader := tm.queueLeaderOf("gw1", "alice", "warm")
	held := func() string { // "" when the leader alone holds the instance
		for _, id := range tm.ids {
			if n := len(tm.gw(id).pools.instances("alice", "warm")); (id == leader) != (n > 0) {
				return fmt.Sprintf("%s holds %d instances; the queue's leader is %s", id, n, leader)
			}
		}
		return ""
	}
	// The submission is counted as it is made, the instance joins its
	// pool once it returns.
	tm.eventually("the leader holding the instance", func() bool { return held() == "" })
	tm.stop(leader)
	tm.eventually("the successor to start one", func() bool { return tm.f.submissions() == 2 })
}

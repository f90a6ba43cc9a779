package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway/group"
	"github.com/opendms/dms/dms/internal/store"
	"github.com/opendms/dms/types"
)

// A group of gateways in one process: each has its own database and group
// member over loopback TCP (tcpNet), they share a fakeRunner (the
// providers, and the network's blobs), and forward calls to each other
// through a table (team). A member is killed by closing it and cutting it
// off; cut and heal partition one.

// tcpNet is a group.Transport over loopback TCP: a dialer sends its ID
// and the channel on a line, the listener of that channel accepts it.
type tcpNet struct {
	mu    sync.Mutex
	addrs map[string]string  // member -> listening address
	lns   map[string]*tcpMux // member -> its listener
	conns map[string][]net.Conn
	cut   map[string]bool
}

func newTCPNet() *tcpNet {
	return &tcpNet{addrs: map[string]string{}, lns: map[string]*tcpMux{}, conns: map[string][]net.Conn{}, cut: map[string]bool{}}
}

// tcpMux is a member's one TCP listener, split by channel.
type tcpMux struct {
	ln    net.Listener
	mu    sync.Mutex
	chans map[string]*chanListener
}

type chanListener struct {
	self   string
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { l.closed.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return idAddr(l.self) }

// idAddr is a member ID as a net.Addr.
type idAddr string

func (a idAddr) Network() string { return "test" }
func (a idAddr) String() string  { return string(a) }

// idConn is a connection whose ends are named by member ID.
type idConn struct {
	net.Conn
	local, remote string
}

func (c idConn) LocalAddr() net.Addr  { return idAddr(c.local) }
func (c idConn) RemoteAddr() net.Addr { return idAddr(c.remote) }

func (n *tcpNet) transport(t *testing.T, self string) group.Transport {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if m := n.lns[self]; m != nil {
		return memberTransport{n: n, self: self}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &tcpMux{ln: ln, chans: map[string]*chanListener{}}
	n.lns[self], n.addrs[self] = m, ln.Addr().String()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go n.admit(self, m, c)
		}
	}()
	return memberTransport{n: n, self: self}
}

// admit reads a dialer's hello and hands the connection to its channel.
func (n *tcpNet) admit(self string, m *tcpMux, c net.Conn) {
	var line [256]byte
	i := 0
	for i < len(line) {
		if _, err := c.Read(line[i : i+1]); err != nil {
			c.Close()
			return
		}
		if line[i] == '\n' {
			break
		}
		i++
	}
	from, channel, _ := strings.Cut(string(line[:i]), " ")
	n.mu.Lock()
	if n.cut[self] || n.cut[from] {
		n.mu.Unlock()
		c.Close()
		return
	}
	n.conns[self] = append(n.conns[self], c)
	n.conns[from] = append(n.conns[from], c)
	n.mu.Unlock()
	m.mu.Lock()
	l := m.chans[channel]
	m.mu.Unlock()
	if l == nil {
		c.Close()
		return
	}
	select {
	case l.ch <- idConn{Conn: c, local: self, remote: from}:
	case <-l.done:
		c.Close()
	}
}

// cutOff closes a member's connections and refuses new ones, until heal.
func (n *tcpNet) cutOff(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[id] = true
	for _, c := range n.conns[id] {
		c.Close()
	}
	n.conns[id] = nil
}

func (n *tcpNet) heal(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, id)
}

func (n *tcpNet) isCut(a, b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[a] || n.cut[b]
}

type memberTransport struct {
	n    *tcpNet
	self string
}

func (tr memberTransport) Listen(channel string) (net.Listener, error) {
	tr.n.mu.Lock()
	m := tr.n.lns[tr.self]
	tr.n.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	l := &chanListener{self: tr.self, ch: make(chan net.Conn), done: make(chan struct{})}
	m.chans[channel] = l
	return l, nil
}

func (tr memberTransport) Dial(ctx context.Context, member, channel string) (net.Conn, error) {
	tr.n.mu.Lock()
	addr, cut := tr.n.addrs[member], tr.n.cut[tr.self] || tr.n.cut[member]
	tr.n.mu.Unlock()
	if cut || addr == "" {
		return nil, fmt.Errorf("test net: %s cannot reach %s", tr.self, member)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(c, "%s %s\n", tr.self, channel); err != nil {
		c.Close()
		return nil, err
	}
	tr.n.mu.Lock()
	tr.n.conns[tr.self] = append(tr.n.conns[tr.self], c)
	tr.n.mu.Unlock()
	return idConn{Conn: c, local: tr.self, remote: member}, nil
}

// team is a group of in-process gateways.
type team struct {
	t    *testing.T
	net  *tcpNet
	f    *fakeRunner
	ids  []string
	mu   sync.Mutex
	gws  map[string]*Gateway
	grps map[string]*group.Group
	dbs  map[string]*store.DB
}

// newTeam founds a group of n gateways.
func newTeam(t *testing.T, n int) *team {
	t.Helper()
	tm := &team{t: t, net: newTCPNet(), f: newFakeRunner(), gws: map[string]*Gateway{}, grps: map[string]*group.Group{}, dbs: map[string]*store.DB{}}
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
		Name: "test", Self: id, Dir: t.TempDir(), DB: tm.dbs[id], Transport: tm.net.transport(t, id),
		FSM: g.StateMachine(), Peers: tm.ids, Join: join,
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
	tm.net.cutOff(id)
	g.Close()
	grp.Close()
	tm.net.heal(id)
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

// teamForwarder forwards calls between the team's members.
type teamForwarder struct {
	tm   *team
	self string
}

func (f teamForwarder) Forward(ctx context.Context, to string, req *types.CallRequest) (*types.CallReply, error) {
	g := f.tm.gw(to)
	if g == nil || f.tm.net.isCut(f.self, to) {
		return nil, fmt.Errorf("test forward: %s is gone", to)
	}
	return g.ServeForward(ctx, f.self, req), nil
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
	// A write returns once the member that took it applied it.
	alice1, err := g1.As(ctx, "alice")
	if err != nil {
		t.Fatalf("an account made on gw0, read at once on gw1: %v", err)
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
	g0 := tm.gw("gw0")
	if _, _, err := g0.CreateAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	alice, _ := g0.As(ctx, "alice")
	mod := tm.f.put([]byte("\x00asm echo"))
	if _, err := alice.Deploy(ctx, Deploy{Name: "echo", Module: mod}); err != nil {
		t.Fatal(err)
	}
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

func TestGroupFailover(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	if _, _, err := tm.gw("gw0").CreateAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	alice0, _ := tm.gw("gw0").As(ctx, "alice")
	mod := tm.f.put([]byte("\x00asm echo"))
	if _, err := alice0.Deploy(ctx, Deploy{Name: "echo", Module: mod}); err != nil {
		t.Fatal(err)
	}
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
	if _, err := alice1.Deploy(ctx, Deploy{Name: "later", Module: mod}); err != nil {
		t.Fatal(err)
	}
	back := tm.start(leader, false)
	tm.eventually("the restarted member to catch up", func() bool {
		_, err := back.function("alice", "later")
		return err == nil
	})
}

func TestGroupMinorityRefusesWrites(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	if _, _, err := tm.gw("gw0").CreateAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	gw0alice, _ := tm.gw("gw0").As(ctx, "alice")
	for _, fn := range []string{"mine", "theirs"} {
		if _, err := gw0alice.Deploy(ctx, Deploy{Name: fn, Module: tm.f.put([]byte("\x00asm " + fn))}); err != nil {
			t.Fatal(err)
		}
	}
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
	tm.net.cutOff(cut)
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
	tm.net.heal(cut)
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
	if _, _, err := g.CreateAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	alice, _ := g.As(ctx, "alice")
	led := map[string]int{}
	for _, fn := range []string{"a", "b", "c", "d", "e", "f"} {
		if _, err := alice.Deploy(ctx, Deploy{Name: fn, Module: tm.f.put([]byte("\x00asm " + fn))}); err != nil {
			t.Fatal(err)
		}
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
	g := tm.gw("gw2")
	if _, _, err := g.CreateAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	alice, _ := g.As(ctx, "alice")
	for _, fn := range []string{"sync", "async"} {
		if _, err := alice.Deploy(ctx, Deploy{Name: fn, Module: tm.f.put([]byte("\x00asm " + fn))}); err != nil {
			t.Fatal(err)
		}
	}
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
	ctx := t.Context()
	g := tm.gw("gw1")
	if _, _, err := g.CreateAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	alice, _ := g.As(ctx, "alice")
	if _, err := alice.Deploy(ctx, Deploy{Name: "warm", Module: tm.f.put([]byte("\x00asm warm")), Scaling: &Scaling{MinInstances: 1}}); err != nil {
		t.Fatal(err)
	}
	tm.eventually("one instance started", func() bool { return tm.f.submissions() == 1 })
	leader := tm.queueLeaderOf("gw1", "alice", "warm")
	for _, id := range tm.ids {
		if n := len(tm.gw(id).pools.instances("alice", "warm")); (id == leader) != (n > 0) {
			t.Errorf("%s holds %d instances; the queue's leader is %s", id, n, leader)
		}
	}
	tm.stop(leader)
	tm.eventually("the successor to start one", func() bool { return tm.f.submissions() == 2 })
}

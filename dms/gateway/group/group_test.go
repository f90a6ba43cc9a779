package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/gateway/group/grouptest"
	"github.com/opendms/dms/dms/internal/store"
)

const waitLong = 10 * time.Second

// cluster is a group of test members on one testNet.
type cluster struct {
	t       *testing.T
	net     *grouptest.Net
	members map[string]*member
	snapAt  uint64 // SnapshotThreshold for members opened from now on
	base    string // members' directories: removed after the cleanup that closes them
}

type member struct {
	id    string
	dir   string
	db    *store.DB
	fsm   *kv
	g     *Group
	peers []string
	join  bool
}

func newCluster(t *testing.T, ids ...string) *cluster {
	c := &cluster{t: t, net: grouptest.NewNet(), members: map[string]*member{}, base: t.TempDir()}
	for _, id := range ids {
		c.open(id, ids, false)
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			if m.g != nil {
				m.g.Close()
			}
			m.db.Close()
		}
	})
	return c
}

// open opens a new member (a database and directory of its own).
func (c *cluster) open(id string, peers []string, join bool) *member {
	dir := filepath.Join(c.base, id)
	db, err := store.Open(store.Options{Dir: filepath.Join(dir, "db"), BlobDir: filepath.Join(dir, "blobs")})
	if err != nil {
		c.t.Fatal(err)
	}
	m := &member{id: id, dir: filepath.Join(dir, "raft"), db: db, peers: peers, join: join}
	c.members[id] = m
	c.start(m)
	return m
}

// start opens m's group, with a new FSM, on its database and directory.
func (c *cluster) start(m *member) {
	m.fsm = newKV()
	var logger *slog.Logger
	if os.Getenv("GROUP_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("member", m.id)
	}
	g, err := Open(Config{
		Name: "gw", Self: m.id, Dir: m.dir, DB: m.db, Transport: c.net.Transport(m.id), FSM: m.fsm,
		Peers: m.peers, Join: m.join, Logger: logger,
		// The defaults' timing: shorter ones lose leaders to a loaded
		// machine's pauses (a test of 1,000 applies at once did, under
		// -race beside the rest of the suite).
		SnapshotThreshold: c.snapAt,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	m.g = g
}

func (c *cluster) stop(id string) {
	m := c.members[id]
	if err := m.g.Close(); err != nil {
		c.t.Fatal(err)
	}
	m.g = nil
}

// running lists the members open, in ID order.
func (c *cluster) running() []*member {
	var out []*member
	for _, id := range slices.Sorted(maps.Keys(c.members)) {
		if m := c.members[id]; m.g != nil {
			out = append(out, m)
		}
	}
	return out
}

// leader waits until every member of among agrees on one leader among
// them, and returns it.
func (c *cluster) leader(among ...*member) *member {
	c.t.Helper()
	var found *member
	waitFor(c.t, "a leader agreed on", func() bool {
		found = nil
		for _, m := range among {
			if m.g.IsLeader() {
				found = m
			}
		}
		if found == nil {
			return false
		}
		for _, m := range among {
			if m.g.Leader() != found.id {
				return false
			}
		}
		return true
	})
	return found
}

func (c *cluster) follower(among []*member, leader *member) *member {
	for _, m := range among {
		if m != leader {
			return m
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// waitFor polls cond until it holds, failing the test after waitLong.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > waitLong {
			t.Fatalf("waited %s for %s", waitLong, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func apply(t *testing.T, g *Group, cmd string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	res, err := g.Apply(ctx, []byte(cmd))
	if err != nil {
		t.Fatalf("Apply(%q): %v", cmd, err)
	}
	return res
}

// caughtUp waits until m's state equals want.
func caughtUp(t *testing.T, m *member, want map[string]int64) {
	t.Helper()
	waitFor(t, m.id+" catching up", func() bool { return maps.Equal(m.fsm.copy(), want) })
}

// TestApplyOnFollower: three founders elect a leader; an Apply on a
// follower returns after the follower's own FSM applied it; many Applies
// at once share one connection to the leader.
func TestApplyOnFollower(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	all := c.running()
	start := time.Now()
	leader := c.leader(all...)
	t.Logf("elected %s in %s", leader.id, time.Since(start))
	f := c.follower(all, leader)

	res := apply(t, f.g, "set x 41")
	if v, _ := f.fsm.get("x"); v != 41 || string(res.Data) != "41" {
		t.Fatalf("right after Apply on the follower: x=%d, result %q; want 41", v, res.Data)
	}
	if f.g.AppliedIndex() < res.Index {
		t.Fatalf("applied %d < result's index %d", f.g.AppliedIndex(), res.Index)
	}

	const n = 200
	start = time.Now()
	for i := range n {
		res = apply(t, f.g, "add x 1")
		if v, _ := f.fsm.get("x"); v != int64(42+i) {
			t.Fatalf("after add %d: x=%d", i, v)
		}
	}
	t.Logf("follower Apply: %s each (%d in sequence)", time.Since(start)/n, n)
	start = time.Now()
	for range n {
		apply(t, leader.g, "add y 1")
	}
	t.Logf("leader Apply: %s each (%d in sequence)", time.Since(start)/n, n)

	dialsBefore := c.net.DialCount(f.id, channelRPC)
	const concurrent = 1000
	var wg sync.WaitGroup
	errs := make(chan error, concurrent)
	start = time.Now()
	for range concurrent {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			if _, err := f.g.Apply(ctx, []byte("add z 1")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d concurrent Applies on a follower: %s", concurrent, time.Since(start))
	if v, _ := f.fsm.get("z"); v != concurrent {
		t.Fatalf("z=%d after %d adds", v, concurrent)
	}
	if d := c.net.DialCount(f.id, channelRPC) - dialsBefore; d > 1 {
		t.Fatalf("%d concurrent Applies dialled %d rpc connections; want at most 1", concurrent, d)
	}
	for _, m := range all {
		caughtUp(t, m, leader.fsm.copy())
	}
}

// TestLeaderLost: the leader closes; the others elect a new one, which
// soon sees the old one not alive, and Applies on both survivors succeed.
func TestLeaderLost(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	old := c.leader(c.running()...)
	apply(t, old.g, "set k 1")
	survivors := slices.DeleteFunc(c.running(), func(m *member) bool { return m == old })
	watch := survivors[0].g.Watch()

	c.stop(old.id)
	lost := time.Now()
	leader := c.leader(survivors...)
	elected := time.Since(lost)
	t.Logf("new leader %s %s after the old one closed", leader.id, elected)
	select {
	case <-watch:
	case <-time.After(waitLong):
		t.Fatal("Watch got nothing when the leader changed")
	}
	down := waitFor(t, "the old leader seen down", func() bool {
		for _, mb := range leader.g.Members() {
			if mb.ID == old.id {
				return !mb.Alive
			}
		}
		return false
	})
	t.Logf("the new leader saw the old one down %s after its election (DownAfter %s)", down, leader.g.cfg.DownAfter)
	for _, mb := range leader.g.Members() {
		if mb.ID != old.id && !mb.Alive {
			t.Fatalf("%s is not alive", mb.ID)
		}
	}
	for i, m := range survivors {
		apply(t, m.g, "add k "+strconv.Itoa(i+1))
	}
	if !leader.g.Healthy() || !c.follower(survivors, leader).g.Healthy() {
		t.Fatal("a survivor is not healthy")
	}
	for _, m := range survivors {
		caughtUp(t, m, map[string]int64{"k": 4})
	}
}

// TestPartitionedMinority: a member cut off from the others cannot apply
// (ErrNoQuorum within its deadline), stops being healthy, and has every
// committed entry once healed.
func TestPartitionedMinority(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	all := c.running()
	leader := c.leader(all...)
	cut := c.follower(all, leader)
	apply(t, cut.g, "set k 1")

	c.net.Partition(cut.id)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	start := time.Now()
	_, err := cut.g.Apply(ctx, []byte("set k 99"))
	cancel()
	took := time.Since(start)
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("Apply on a partitioned member: %v; want ErrNoQuorum", err)
	}
	t.Logf("partitioned Apply failed after %s (deadline 500ms): %v", took, err)
	if took > 500*time.Millisecond+time.Second {
		t.Fatalf("partitioned Apply took %s, deadline was 500ms", took)
	}
	waitFor(t, "the partitioned member unhealthy", func() bool { return !cut.g.Healthy() })

	rest := slices.DeleteFunc(slices.Clone(all), func(m *member) bool { return m == cut })
	majority := c.leader(rest...)
	for i := range 20 {
		apply(t, rest[i%2].g, "add k 1")
	}
	if !majority.g.Healthy() {
		t.Fatal("the majority's leader is not healthy")
	}

	c.net.Heal(cut.id)
	healed := time.Now()
	caughtUp(t, cut, map[string]int64{"k": 21})
	t.Logf("healed member caught up in %s", time.Since(healed))
	apply(t, cut.g, "add k 1")
	for _, m := range all {
		caughtUp(t, m, map[string]int64{"k": 22})
	}
}

// TestRestartCatchesUp: a member closed and opened again on the same
// database and directory restores its own snapshot, replays its log, and
// catches up, from the leader's snapshot when the leader's log no longer
// reaches back far enough.
func TestRestartCatchesUp(t *testing.T) {
	c := newCluster(t)
	c.snapAt = 8
	for _, id := range []string{"a", "b", "c"} {
		c.open(id, []string{"a", "b", "c"}, false)
	}
	all := c.running()
	leader := c.leader(all...)
	back := c.follower(all, leader)
	for i := range 20 {
		apply(t, back.g, fmt.Sprintf("set k%d %d", i, i))
	}
	if err := back.g.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	apply(t, back.g, "set after 1") // in the log after the snapshot
	c.stop(back.id)

	c.start(back)
	caughtUp(t, back, leader.fsm.copy()) // its own snapshot, then its log
	own := snapshotIndex(t, back)
	c.stop(back.id)

	for i := range 50 {
		apply(t, leader.g, fmt.Sprintf("add n %d", i))
	}
	// Both survivors snapshot and compact their logs, so whichever leads
	// when back returns (leadership may move on a loaded machine) no longer
	// holds the entries back lacks and must send its snapshot.
	var floor uint64
	for _, m := range c.running() {
		if err := m.g.raft.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
		if i := snapshotIndex(t, m); floor == 0 || i < floor {
			floor = i
		}
	}
	t.Logf("survivors' snapshots at >= %d, back's own at %d", floor, own)
	start := time.Now()
	c.start(back)
	caughtUp(t, back, leader.fsm.copy())
	t.Logf("restarted member caught up in %s", time.Since(start))
	// raft records the installed snapshot's index only after the FSM
	// restored it, so the state can be seen a moment before the index.
	waitFor(t, "the installed snapshot's index", func() bool { return snapshotIndex(t, back) >= floor })
	if back.g.AppliedIndex() == 0 {
		t.Fatal("applied index 0 after catching up")
	}
}

func snapshotIndex(t *testing.T, m *member) uint64 {
	t.Helper()
	i, err := strconv.ParseUint(m.g.raft.Stats()["last_snapshot_index"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestAddAndRemove: a fourth member joins and receives the state; a member
// is removed; removing the leader moves leadership; removing a stranger
// fails with ErrNotMember.
func TestAddAndRemove(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	all := c.running()
	leader := c.leader(all...)
	for i := range 10 {
		apply(t, leader.g, fmt.Sprintf("set k%d %d", i, i))
	}
	d := c.open("d", []string{"a", "b", "c"}, true)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := c.follower(all, leader).g.Add(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := leader.g.Add(ctx, "d"); err != nil { // idempotent
		t.Fatal(err)
	}
	caughtUp(t, d, leader.fsm.copy())
	if n := len(d.g.Members()); n != 4 {
		t.Fatalf("d sees %d members, want 4", n)
	}
	apply(t, d.g, "set fromd 1")

	if err := d.g.Remove(ctx, "nobody"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("Remove of a stranger: %v, want ErrNotMember", err)
	}
	gone := c.follower(all, leader)
	if err := d.g.Remove(ctx, gone.id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed member out of the configuration", func() bool {
		return !slices.ContainsFunc(leader.g.Members(), func(m Member) bool { return m.ID == gone.id })
	})
	c.stop(gone.id)

	if err := d.g.Remove(ctx, leader.id); err != nil {
		t.Fatal(err)
	}
	rest := slices.DeleteFunc(c.running(), func(m *member) bool { return m == leader || m == gone })
	next := c.leader(rest...)
	t.Logf("leader %s removed itself; %s leads", leader.id, next.id)
	apply(t, rest[0].g, "set last 1")
	apply(t, rest[1].g, "add last 1")
	if ms := next.g.Members(); len(ms) != 2 {
		t.Fatalf("members after two removals: %+v", ms)
	}
}

// TestNonMemberRefused: a connection from an ID outside the configuration
// is closed at once, on both channels, and what it sent is not applied.
func TestNonMemberRefused(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	leader := c.leader(c.running()...)
	apply(t, leader.g, "set k 1")
	applied := leader.g.AppliedIndex()
	intruder := c.net.Transport("mallory")
	for _, channel := range []string{channelRaft, channelRPC} {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		conn, err := intruder.Dial(ctx, leader.id, channel)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		body := append([]byte{1, 0, 0, 0, 0, 0, 0, 0, byte(opApply), 0, 0, 0x27, 0x10}, "set k 666"...)
		writeFrame(conn, body) // may fail: the leader may close first
		conn.SetReadDeadline(time.Now().Add(waitLong))
		var b [1]byte
		if _, err := conn.Read(b[:]); err == nil {
			t.Fatalf("%s channel: a non-member read a reply", channel)
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s channel: the connection of a non-member stayed open", channel)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal(err)
		}
		conn.Close()
	}
	if v, _ := leader.fsm.get("k"); v != 1 || leader.g.AppliedIndex() != applied {
		t.Fatalf("a non-member's command was applied: k=%d", v)
	}
}

func TestConfigValidate(t *testing.T) {
	db, err := store.OpenInMemory(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	good := Config{Name: "gw-1", Self: "a", Dir: t.TempDir(), DB: db, Transport: grouptest.NewNet().Transport("a"), FSM: newKV()}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"bad name":   func(c *Config) { c.Name = "Gw" },
		"no self":    func(c *Config) { c.Self = "" },
		"no db":      func(c *Config) { c.DB = nil },
		"lease > hb": func(c *Config) { c.HeartbeatTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, time.Second },
	} {
		c := good
		mod(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
}

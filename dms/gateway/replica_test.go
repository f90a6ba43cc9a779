package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opendms/dms/types"
)

// TestSnapshotRestoresSharedRecordsOnly: a machine's snapshot holds the
// group's records and no gateway's own (call counts, the tasks of plain
// calls); restoring it on another gateway replaces that one's shared
// records, keeps its own, counts its open kept tasks again, and runs them.
func TestSnapshotRestoresSharedRecordsOnly(t *testing.T) {
	src := newRig(t)
	ctx := t.Context()
	src.deploy(t, src.alice, Deploy{Name: "echo"})
	if _, err := src.alice.Invoke(ctx, "echo", Call{}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.g.Credit(ctx, "alice", 2*types.Credit, ""); err != nil {
		t.Fatal(err)
	}
	release := src.f.hold()
	kept, err := src.alice.InvokeAsync(ctx, "echo", Call{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.g.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	release()

	dst := newRig(t) // has its own alice (another key), and its own plain task
	dst.deploy(t, dst.alice, Deploy{Name: "other"})
	res, err := dst.alice.Invoke(ctx, "other", Call{})
	if err != nil {
		t.Fatal(err)
	}
	own := res.Task
	hold := dst.f.hold() // the kept task, resumed on dst, stays open until released
	defer hold()
	if err := dst.g.m.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.g.function("alice", "echo"); err != nil {
		t.Errorf("the snapshot's function: %v", err)
	}
	if _, err := dst.g.function("alice", "other"); err == nil {
		t.Error("a function the snapshot lacks survived its restore")
	}
	if _, err := dst.g.task("alice", own); err != nil {
		t.Errorf("this gateway's own task of a plain call: %v", err)
	}
	if got, err := dst.g.task("alice", kept.ID); err != nil || !got.shared() {
		t.Errorf("the snapshot's kept task: %+v %v", got, err)
	}
	if n, _ := dst.g.m.opened("alice"); n != 1 {
		t.Errorf("%d open kept tasks counted after the restore, want 1", n)
	}
	hold()
	taskIn(t, dst.alice, kept.ID, TaskCompleted)
	if a, err := dst.g.GetAccount(ctx, "alice"); err != nil || a.Credits.Balance != 2*types.Credit {
		t.Errorf("the snapshot's credits: %+v, %v", a.Credits, err)
	}
	if _, err := dst.g.Authenticate(ctx, src.key); err != nil {
		t.Errorf("the snapshot's key: %v", err)
	}
	if _, err := dst.g.Authenticate(ctx, dst.key); err == nil {
		t.Error("a key the snapshot lacks still authenticates after its restore")
	}
}

// TestMachineRefusesBadInput: a command or snapshot that does not decode
// changes nothing and says why; a command replayed (at or below the
// index written last) is passed over.
func TestMachineRefusesBadInput(t *testing.T) {
	r := newRig(t)
	m := r.g.m
	for _, cmd := range []string{"", "{", `{"change":{"put":{"gw/acct/x":`, `{}`, `{"admit":{"task":{"id":1}}}`} {
		var o outcome
		if err := json.Unmarshal(m.applyNext([]byte(cmd)), &o); err != nil || o.Error == "" {
			t.Errorf("command %q: outcome %+v (%v), want an error", cmd, o, err)
		}
	}
	// Each is cut short or announces too much: none replaces anything (an
	// empty snapshot, "\x01" alone, would: it is a group with no records).
	for _, snap := range []string{"", "\x01\x05ab", "\x01\x02ab\x05x", "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"} {
		if err := m.Restore(strings.NewReader(snap)); err == nil {
			t.Errorf("snapshot %q restored", snap)
		}
	}
	if _, err := r.g.GetAccount(t.Context(), "alice"); err != nil {
		t.Fatalf("alice after bad snapshots: %v", err)
	}
	put := mustJSON(command{Change: &change{Put: map[string]json.RawMessage{accountKey("replayed"): mustJSON(Account{Name: "replayed"})}}})
	m.Apply(m.written, put)
	if _, err := r.g.GetAccount(t.Context(), "replayed"); err == nil {
		t.Error("a command at the index written last was applied again")
	}
}

// TestForwardsFromStrangersAreRefused: ServeForward answers "unknown" to
// a gateway alone, to a peer that is not a member, and to a queue it
// does not lead or cannot parse.
func TestForwardsFromStrangersAreRefused(t *testing.T) {
	tm := newTeam(t, 3)
	ctx := t.Context()
	alice := tm.alice("gw0")
	tm.deploy(alice, "echo", nil)
	if _, err := alice.Invoke(ctx, "echo", Call{}); err != nil {
		t.Fatal(err)
	}
	leader := tm.gw(tm.queueLeaderOf("gw0", "alice", "echo"))
	lone := newRig(t)
	for name, c := range map[string]struct {
		g    *Gateway
		from string
		ref  types.AllocationID
	}{
		"alone":          {lone.g, "gw1", forwardRef("alice", "echo", 1)},
		"a stranger":     {leader, "12D3KooWstranger", forwardRef("alice", "echo", 1)},
		"no such queue":  {leader, "gw1", forwardRef("alice", "nothing", 1)},
		"malformed":      {leader, "gw1", "alice/echo"},
		"not a revision": {leader, "gw1", "alice/echo/one"},
	} {
		ctx, cancel := context.WithTimeout(ctx, 2*syncTimeout)
		reply := c.g.ServeForward(ctx, c.from, &types.CallRequest{Allocation: c.ref})
		cancel()
		if reply.Status != types.CallUnknown {
			t.Errorf("%s: %+v, want unknown", name, reply)
		}
	}
	if n := len(tm.f.callsMade()); n != 1 {
		t.Errorf("%d calls reached an instance, want the one made", n)
	}
}

package quorum

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/opendms/dms/types"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func batch(t *testing.T, p Policy, n int) *Batch {
	t.Helper()
	b, err := New(p, n)
	must(t, err)
	return b
}

// run places and returns replica r of unit u on node with digest.
func run(t *testing.T, b *Batch, u, r int, node, digest string) Judgement {
	t.Helper()
	must(t, b.Placed(u, r, node))
	j, err := b.Return(u, r, digest, false, false)
	must(t, err)
	return j
}

func TestPolicyCheck(t *testing.T) {
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{Replication: 3, Quorum: 2, MaxReplicas: 6}, ""},
		{Policy{Replication: 0, Quorum: 0, MaxReplicas: 0}, "replication: 0 is outside 1 to 16"},
		{Policy{Replication: 2, Quorum: 3, MaxReplicas: 4}, "quorum: 3 is outside 1 to the replication (2)"},
		{Policy{Replication: 3, Quorum: 2, MaxReplicas: 2}, "max_replicas: 2 is outside the replication (3) to 64"},
		{Policy{Replication: 17, Quorum: 1, MaxReplicas: 65}, "replication: 17"},
	} {
		err := c.p.Check()
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.want)
		}
	}
	if _, err := New(Policy{Replication: 1, Quorum: 1, MaxReplicas: 1}, -1); err == nil {
		t.Error("New took -1 units")
	}
}

// TestDigest: stderr and durations do not matter, exit code, stdout and
// files do.
func TestDigest(t *testing.T) {
	a := &types.Result{Stdout: "s", Stderr: "e1", Files: map[string]string{"a": "1", "b": "2"}, DurationMillis: 5}
	same := &types.Result{Stdout: "s", Stderr: "e2", Files: map[string]string{"b": "2", "a": "1"}, DurationMillis: 9}
	if Digest(a) != Digest(same) {
		t.Error("stderr or duration changed the digest")
	}
	for _, other := range []*types.Result{
		{Stdout: "s", ExitCode: 1, Files: a.Files},
		{Stdout: "t", Files: a.Files},
		{Stdout: "s", Files: map[string]string{"a": "1"}},
		{Stdout: "s", Files: map[string]string{"a": "1", "b": "3"}},
		{Stdout: "s", Files: map[string]string{"a": "2", "b": "1"}},
	} {
		if Digest(other) == Digest(a) {
			t.Errorf("%+v has a's digest", other)
		}
	}
}

// TestLiarOutvoted: replication 3, quorum 2, the liar's result differs:
// the verdict is the honest one, reached at the second matching return,
// and the liar is judged to disagree.
func TestLiarOutvoted(t *testing.T) {
	b := batch(t, Policy{Replication: 3, Quorum: 2, MaxReplicas: 6}, 1)
	tk := b.Next(10, t0.Add(time.Minute))
	if len(tk) != 3 {
		t.Fatalf("issued %d replicas, want 3", len(tk))
	}
	if j := run(t, b, 0, 0, "A", "x"); j.Agreed != nil || j.Disagreed != nil {
		t.Fatalf("judged before a verdict: %+v", j)
	}
	run(t, b, 0, 1, "L", "lie")
	j := run(t, b, 0, 2, "B", "x")
	if v := b.Unit(0).Verdict; v == nil || v.Digest != "x" || v.Replica != 2 {
		t.Fatalf("verdict %+v", v)
	}
	if !reflect.DeepEqual(j, Judgement{Unit: 0, Agreed: []string{"A", "B"}, Disagreed: []string{"L"}}) {
		t.Fatalf("judgement %+v", j)
	}
	if !b.Done() || len(b.Next(10, t0)) != 0 {
		t.Fatal("a decided batch is not done")
	}
}

// TestDisagreementReissues: quorum 2 of 2 that disagree issues a third
// replica, avoiding both nodes; a late agreeing return after the verdict
// is judged on its own.
func TestDisagreementReissues(t *testing.T) {
	b := batch(t, Policy{Replication: 2, Quorum: 2, MaxReplicas: 4}, 1)
	b.Next(10, t0)
	run(t, b, 0, 0, "A", "x")
	run(t, b, 0, 1, "B", "y")
	tk := b.Next(10, t0)
	if len(tk) != 1 || !reflect.DeepEqual(tk[0].Avoid, []string{"A", "B"}) {
		t.Fatalf("after a disagreement: %+v", tk)
	}
	if err := b.Placed(0, 2, "A"); err == nil {
		t.Fatal("a second replica was placed on A")
	}
	j := run(t, b, 0, 2, "C", "y")
	if !reflect.DeepEqual(j, Judgement{Unit: 0, Agreed: []string{"B", "C"}, Disagreed: []string{"A"}}) {
		t.Fatalf("judgement %+v", j)
	}
	if _, err := b.Return(0, 2, "y", false, false); err == nil {
		t.Fatal("a replica returned twice")
	}
}

// TestQuarantine: a unit whose every replica fails ends failed after
// MaxReplicas, saying why; the batch goes on with the next unit.
func TestQuarantine(t *testing.T) {
	b := batch(t, Policy{Replication: 2, Quorum: 2, MaxReplicas: 4}, 2)
	nodes := []string{"A", "B", "C", "D"}
	for n := 0; n < 4; {
		for _, tk := range b.Next(10, t0) {
			if tk.Unit == 1 {
				continue
			}
			must(t, b.Placed(0, tk.Replica, nodes[tk.Replica]))
			must(t, b.Fail(0, tk.Replica, fmt.Sprintf("exit code 3 (%d)", tk.Replica)))
			n++
		}
	}
	u := b.Unit(0)
	if len(u.Replicas) != 4 || u.Failure != "no quorum of 2 after 4 replicas: 4 failed (last: exit code 3 (3))" {
		t.Fatalf("unit 0: %d replicas, failure %q", len(u.Replicas), u.Failure)
	}
	if b.Done() || b.Ended() != 1 {
		t.Fatalf("ended %d", b.Ended())
	}
	if tk := b.Next(10, t0); len(tk) != 0 {
		t.Fatalf("a quarantined unit issued %+v", tk)
	}
	if err := b.Fail(0, 9, "x"); err == nil {
		t.Fatal("a missing replica failed")
	}
}

// TestSplitVote: results that never reach a quorum fail the unit with the
// votes counted.
func TestSplitVote(t *testing.T) {
	b := batch(t, Policy{Replication: 2, Quorum: 2, MaxReplicas: 3}, 1)
	b.Next(10, t0)
	run(t, b, 0, 0, "A", "aaaaaaaaaa")
	run(t, b, 0, 1, "B", "bbbbbbbbbb")
	b.Next(10, t0)
	run(t, b, 0, 2, "C", "cccccccccc")
	if f := b.Unit(0).Failure; f != "no quorum of 2 after 3 replicas: 3 results that disagree (1×aaaaaaaa, 1×bbbbbbbb, 1×cccccccc)" || !b.Done() {
		t.Fatalf("failure %q", f)
	}
}

// TestDeadline: a replica past its deadline is replaced; its late result
// still counts toward the quorum.
func TestDeadline(t *testing.T) {
	b := batch(t, Policy{Replication: 2, Quorum: 2, MaxReplicas: 4}, 1)
	b.Next(10, t0.Add(time.Minute))
	must(t, b.Placed(0, 0, "A"))
	must(t, b.Placed(0, 1, "B"))
	if _, err := b.Return(0, 0, "x", false, false); err != nil {
		t.Fatal(err)
	}
	if n := b.Expire(t0.Add(59 * time.Second)); n != 0 {
		t.Fatalf("expired %d early", n)
	}
	if n := b.Expire(t0.Add(time.Minute)); n != 1 {
		t.Fatalf("expired %d, want B's", n)
	}
	tk := b.Next(10, t0.Add(2*time.Minute))
	if len(tk) != 1 || !reflect.DeepEqual(tk[0].Avoid, []string{"A", "B"}) {
		t.Fatalf("after B's deadline: %+v", tk)
	}
	must(t, b.Placed(0, 2, "C"))
	j, err := b.Return(0, 1, "x", false, false) // B, late
	must(t, err)
	if b.Unit(0).Verdict == nil || !reflect.DeepEqual(j.Agreed, []string{"A", "B"}) {
		t.Fatalf("the late return did not count: %+v", j)
	}
	if j, _ := b.Return(0, 2, "z", false, false); !reflect.DeepEqual(j.Disagreed, []string{"C"}) {
		t.Fatalf("C after the verdict: %+v", j)
	}
}

// TestAdaptive: a unit starts with one replica; a trusted node's result
// stands alone, unless spot-checked; an untrusted one needs the quorum.
func TestAdaptive(t *testing.T) {
	b := batch(t, Policy{Replication: 3, Quorum: 2, MaxReplicas: 6, Adaptive: true}, 3)
	if tk := b.Next(10, t0); len(tk) != 3 {
		t.Fatalf("issued %d, want one per unit", len(tk))
	}
	for u, node := range []string{"T", "S", "U"} {
		must(t, b.Placed(u, 0, node))
	}
	j, err := b.Return(0, 0, "x", true, false)
	must(t, err)
	if v := b.Unit(0).Verdict; v == nil || !v.Alone || !reflect.DeepEqual(j.Agreed, []string{"T"}) {
		t.Fatalf("trusted: %+v %+v", v, j)
	}
	if _, err := b.Return(1, 0, "x", true, true); err != nil || b.Unit(1).Verdict != nil {
		t.Fatalf("spot-checked: %v %+v", err, b.Unit(1).Verdict)
	}
	if _, err := b.Return(2, 0, "x", false, false); err != nil || b.Unit(2).Verdict != nil {
		t.Fatalf("untrusted: %v", err)
	}
	tk := b.Next(10, t0)
	if len(tk) != 2 || tk[0].Unit != 1 || tk[1].Unit != 2 {
		t.Fatalf("second replicas: %+v", tk)
	}
	run(t, b, 1, 1, "A", "x")
	if v := b.Unit(1).Verdict; v == nil || v.Alone {
		t.Fatalf("spot-checked unit: %+v", v)
	}
}

// TestNextLimit: a limit reached in the middle of a unit's replicas
// issues the rest first at the next call.
func TestNextLimit(t *testing.T) {
	b := batch(t, Policy{Replication: 3, Quorum: 3, MaxReplicas: 3}, 3)
	var got []string
	for range 5 {
		for _, tk := range b.Next(2, t0) {
			got = append(got, fmt.Sprintf("%d.%d", tk.Unit, tk.Replica))
		}
	}
	want := []string{"0.0", "0.1", "0.2", "1.0", "1.1", "1.2", "2.0", "2.1", "2.2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("issued %v, want %v", got, want)
	}
}

// TestProperties drives batches with random events and checks the
// package's invariants after each: distinct nodes per unit, at most
// MaxReplicas, a verdict backed by a quorum of distinct nodes (or alone
// by a trusted one), every unit ending once every replica ended and none
// is wanted, and judgements covering each returned replica once.
func TestProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		repl := rapid.IntRange(1, 4).Draw(t, "replication")
		p := Policy{
			Replication: repl,
			Quorum:      rapid.IntRange(1, repl).Draw(t, "quorum"),
			MaxReplicas: rapid.IntRange(repl, 8).Draw(t, "max"),
			Adaptive:    rapid.Bool().Draw(t, "adaptive"),
		}
		n := rapid.IntRange(1, 5).Draw(t, "units")
		b, err := New(p, n)
		if err != nil {
			t.Fatal(err)
		}
		nodes := []string{"A", "B", "C", "D", "E", "F", "G", "H", "I"}
		judged := map[[2]int]bool{}
		var open []Ticket
		now := t0
		for step := 0; step < 200 && !b.Done(); step++ {
			now = now.Add(time.Second)
			// A batch restored from its units issues what the live one
			// does: managers that rebuild it from a snapshot, or that
			// requeued units in another order, stay in step.
			limit, back := rapid.IntRange(0, 4).Draw(t, "limit"), restored(t, b, p)
			tickets := b.Next(limit, now.Add(5*time.Second))
			if again := back.Next(limit, now.Add(5*time.Second)); !slices.Equal(slots(tickets), slots(again)) {
				t.Fatalf("the live batch issues %v, restored from its units %v", slots(tickets), slots(again))
			}
			open = append(open, tickets...)
			if len(open) == 0 {
				b.Expire(now)
				continue
			}
			i := rapid.IntRange(0, len(open)-1).Draw(t, "ticket")
			tk := open[i]
			open = slices.Delete(open, i, i+1)
			if rapid.IntRange(0, 9).Draw(t, "orphan") == 0 {
				if err := b.Orphan(tk.Unit, tk.Replica); err != nil {
					t.Fatal(err)
				}
			}
			var free []string
			for _, nd := range nodes {
				if !slices.Contains(tk.Avoid, nd) && !slices.Contains(avoid(b.Unit(tk.Unit)), nd) {
					free = append(free, nd)
				}
			}
			if len(free) == 0 || rapid.IntRange(0, 4).Draw(t, "fail") == 0 {
				if err := b.Fail(tk.Unit, tk.Replica, "x"); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := b.Placed(tk.Unit, tk.Replica, free[0]); err != nil {
				t.Fatal(err)
			}
			digest := rapid.SampledFrom([]string{"x", "x", "y"}).Draw(t, "digest")
			j, err := b.Return(tk.Unit, tk.Replica, digest, rapid.Bool().Draw(t, "trusted"), rapid.Bool().Draw(t, "spot"))
			if err != nil {
				t.Fatal(err)
			}
			for _, nd := range append(slices.Clone(j.Agreed), j.Disagreed...) {
				k := [2]int{tk.Unit, slices.IndexFunc(b.Unit(tk.Unit).Replicas, func(r Replica) bool { return r.Node == nd })}
				if judged[k] {
					t.Fatalf("replica %v judged twice", k)
				}
				judged[k] = true
			}
			if rapid.Bool().Draw(t, "expire") {
				b.Expire(now.Add(10 * time.Second))
			}
			check(t, b, p)
		}
		// Ending every open ticket as failed must end the batch.
		for !b.Done() {
			open = append(open, b.Next(100, now)...)
			if len(open) == 0 {
				t.Fatalf("not done, nothing open: %+v", b.units)
			}
			for _, tk := range open {
				if err := b.Fail(tk.Unit, tk.Replica, "x"); err != nil {
					t.Fatal(err)
				}
			}
			open = nil
			check(t, b, p)
		}
	})
}

func check(t *rapid.T, b *Batch, p Policy) {
	ended := 0
	for i := range b.Len() {
		u := b.Unit(i)
		nodes := avoid(u)
		if len(slices.Compact(slices.Sorted(slices.Values(nodes)))) != len(nodes) {
			t.Fatalf("unit %d runs twice on one node: %v", i, nodes)
		}
		if len(u.Replicas) > p.MaxReplicas {
			t.Fatalf("unit %d has %d replicas", i, len(u.Replicas))
		}
		if u.Verdict != nil && u.Failure != "" {
			t.Fatalf("unit %d decided and failed", i)
		}
		if u.Ended() {
			ended++
		}
		if v := u.Verdict; v != nil {
			votes := 0
			for _, r := range u.Replicas {
				if r.State == Returned && r.Digest == v.Digest {
					votes++
				}
			}
			if votes < p.Quorum && !(v.Alone && p.Adaptive && votes == 1) {
				t.Fatalf("unit %d: verdict on %d votes", i, votes)
			}
		}
		if u.Failure != "" {
			for _, r := range u.Replicas {
				if r.State <= Running {
					t.Fatalf("unit %d failed with a replica %s", i, r.State)
				}
			}
		}
	}
	if ended != b.Ended() {
		t.Fatalf("%d units ended, Ended says %d", ended, b.Ended())
	}
	if got, want := b.Tally(), walkTally(b); got != want {
		t.Fatalf("Tally %+v, counting the units gives %+v", got, want)
	}
	if back := restored(t, b, p); back.Tally() != b.Tally() {
		t.Fatalf("restored, Tally %+v, was %+v", back.Tally(), b.Tally())
	}
}

// restored is b rebuilt from copies of its units, as a shell restores it.
func restored(t *rapid.T, b *Batch, p Policy) *Batch {
	saved := map[int]Unit{}
	for i := range b.Len() {
		if u := *b.Unit(i); len(u.Replicas) > 0 {
			u.Replicas = slices.Clone(u.Replicas)
			saved[i] = u
		}
	}
	back, err := Restore(p, b.Len(), saved)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// slots lists the unit and replica of each ticket.
func slots(ts []Ticket) [][2]int {
	out := make([][2]int, len(ts))
	for i, tk := range ts {
		out[i] = [2]int{tk.Unit, tk.Replica}
	}
	return out
}

// walkTally counts every unit and replica of b, as Tally should.
func walkTally(b *Batch) Tally {
	var c Tally
	for i := range b.Len() {
		u := b.Unit(i)
		switch {
		case u.Verdict != nil:
			c.Decided++
		case u.Failure != "":
			c.Failed++
		case len(u.Replicas) == 0:
			c.Queued++
		default:
			c.Running++
		}
		c.Replicas += len(u.Replicas)
		for _, r := range u.Replicas {
			if r.Late {
				c.Late++
			}
			if u.Verdict != nil && r.State == Returned && r.Digest != u.Verdict.Digest {
				c.Disagreed++
			}
		}
	}
	return c
}

// TestRestore: a batch rebuilt from its persisted units goes on where it
// was: decided units stay decided, running replicas still return, and the
// next units issued are those after the last one issued.
func TestRestore(t *testing.T) {
	p := Policy{Replication: 2, Quorum: 2, MaxReplicas: 4}
	b := batch(t, p, 4)
	b.Next(4, t0.Add(time.Minute)) // units 0 and 1
	run(t, b, 0, 0, "A", "x")
	run(t, b, 0, 1, "B", "x")
	must(t, b.Placed(1, 0, "A"))
	saved := map[int]Unit{0: *b.Unit(0), 1: *b.Unit(1)}
	back, err := Restore(p, 4, saved)
	must(t, err)
	if back.Ended() != 1 || back.Unit(0).Verdict == nil {
		t.Fatalf("restored: ended %d", back.Ended())
	}
	if got, want := back.Tally(), (Tally{Queued: 2, Running: 1, Decided: 1, Replicas: 4}); got != want {
		t.Fatalf("restored: %+v, want %+v", got, want)
	}
	if _, err := back.Return(1, 0, "y", false, false); err != nil {
		t.Fatal(err)
	}
	tk := back.Next(10, t0.Add(2*time.Minute))
	var got []string
	for _, x := range tk {
		got = append(got, fmt.Sprintf("%d.%d", x.Unit, x.Replica))
	}
	if !reflect.DeepEqual(got, []string{"2.0", "2.1", "3.0", "3.1"}) {
		t.Fatalf("after a restore: %v", got)
	}
	if n := back.Expire(t0.Add(time.Minute)); n != 1 {
		t.Fatalf("expired %d, want unit 1's second replica", n)
	}
	if _, err := Restore(p, 1, saved); err == nil {
		t.Fatal("restored unit 1 of 1")
	}
}

// TestOrphan: a replica whose issuer is gone is late at once: another is
// issued, and its result still counts if it comes.
func TestOrphan(t *testing.T) {
	b := batch(t, Policy{Replication: 1, Quorum: 1, MaxReplicas: 3}, 1)
	b.Next(1, t0.Add(time.Hour))
	must(t, b.Orphan(0, 0))
	if tk := b.Next(1, t0.Add(time.Hour)); len(tk) != 1 || tk[0].Replica != 1 {
		t.Fatalf("after an orphan: %+v", tk)
	}
	must(t, b.Placed(0, 0, "A"))
	if _, err := b.Return(0, 0, "x", false, false); err != nil || b.Unit(0).Verdict == nil {
		t.Fatalf("the orphan's late result: %v %+v", err, b.Unit(0).Verdict)
	}
	if err := b.Orphan(0, 5); err == nil {
		t.Fatal("orphaned a missing replica")
	}
}

func TestReplicaStateText(t *testing.T) {
	for _, st := range []ReplicaState{Issued, Running, Returned, Failed} {
		b, err := st.MarshalText()
		var back ReplicaState
		if err != nil || back.UnmarshalText(b) != nil || back != st {
			t.Fatalf("%v: %s %v", st, b, err)
		}
	}
	var s ReplicaState
	if s.UnmarshalText([]byte("bogus")) == nil {
		t.Fatal("read a bogus state")
	}
	if _, err := ReplicaState(9).MarshalText(); err == nil {
		t.Fatal("wrote state 9")
	}
}

package quorum

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/opendms/dms/types"
)

// Limits of a Policy.
const (
	MaxReplication = 16
	MaxReplicas    = 64
)

// Policy is how a unit's result is decided.
type Policy struct {
	// Replication is how many replicas a unit starts with, on distinct
	// nodes (1 with Adaptive).
	Replication int `json:"replication"`
	// Quorum is how many of them must return equal results.
	Quorum int `json:"quorum"`
	// MaxReplicas bounds the replicas a unit issues in all, counting those
	// re-issued after a disagreement, a failure or a missed deadline.
	MaxReplicas int `json:"max_replicas"`
	// Adaptive starts a unit with one replica, whose result stands alone
	// when a trusted node returned it and the spot check passed it by;
	// otherwise the unit adds replicas only as its quorum lacks them.
	Adaptive bool `json:"adaptive,omitempty"`
}

// Check lists what is wrong with p, nil when nothing is.
func (p Policy) Check() error {
	var errs []error
	if p.Replication < 1 || p.Replication > MaxReplication {
		errs = append(errs, fmt.Errorf("replication: %d is outside 1 to %d", p.Replication, MaxReplication))
	}
	if p.Quorum < 1 || p.Quorum > p.Replication {
		errs = append(errs, fmt.Errorf("quorum: %d is outside 1 to the replication (%d)", p.Quorum, p.Replication))
	}
	if p.MaxReplicas < p.Replication || p.MaxReplicas > MaxReplicas {
		errs = append(errs, fmt.Errorf("max_replicas: %d is outside the replication (%d) to %d", p.MaxReplicas, p.Replication, MaxReplicas))
	}
	return errors.Join(errs...)
}

// Digest names what a result says, for comparing replicas: its exit code,
// stdout and output files, by CID. Stderr is left out: programs log
// timings and host names there, which differ between honest runs.
func Digest(r *types.Result) string {
	files := slices.Sorted(maps.Keys(r.Files))
	pairs := make([][2]string, len(files))
	for i, f := range files {
		pairs[i] = [2]string{f, r.Files[f]}
	}
	data, _ := json.Marshal(struct {
		Exit   int         `json:"exit"`
		Stdout string      `json:"stdout"`
		Files  [][2]string `json:"files"`
	}{r.ExitCode, r.Stdout, pairs})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// ReplicaState is where a replica stands.
type ReplicaState uint8

// The replica states.
const (
	Issued   ReplicaState = iota // handed to the shell, not placed yet
	Running                      // placed on Node
	Returned                     // Node returned a result (Digest)
	Failed                       // it failed (Reason): counts for nothing
)

var stateNames = [...]string{"issued", "running", "returned", "failed"}

func (s ReplicaState) String() string { return stateNames[s] }

// MarshalText writes the state's name.
func (s ReplicaState) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, fmt.Errorf("quorum: no replica state %d", s)
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText reads a state's name.
func (s *ReplicaState) UnmarshalText(b []byte) error {
	i := slices.Index(stateNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("quorum: no replica state %q", b)
	}
	*s = ReplicaState(i)
	return nil
}

// Replica is one run of a unit.
type Replica struct {
	Node     string       `json:"node,omitempty"`
	State    ReplicaState `json:"state"`
	Digest   string       `json:"digest,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	Deadline time.Time    `json:"deadline"`
	// Late: its deadline passed while it ran; another replica was issued
	// in its stead, and its result, if it comes, still counts.
	Late bool `json:"late,omitempty"`
}

func (r *Replica) live() bool { return (r.State == Issued || r.State == Running) && !r.Late }

// Unit is one unit of work and its replicas.
type Unit struct {
	Replicas []Replica `json:"replicas,omitempty"`
	// Verdict is set once a quorum agreed.
	Verdict *Verdict `json:"verdict,omitempty"`
	// Failure says why the unit failed: its replicas ran out without a
	// quorum. "" unless it did.
	Failure string `json:"failure,omitempty"`
}

// Ended reports whether the unit is decided or failed.
func (u *Unit) Ended() bool { return u.Verdict != nil || u.Failure != "" }

// Verdict is a unit's canonical result.
type Verdict struct {
	Digest string `json:"digest"`
	// Replica is a replica that returned it: the shell keeps its result.
	Replica int `json:"replica"`
	// Alone: one trusted node's result, accepted without a quorum.
	Alone bool `json:"alone,omitempty"`
}

// Ticket asks the shell to run one replica of a unit on a node other than
// those in Avoid.
type Ticket struct {
	Unit, Replica int
	Avoid         []string
}

// Judgement is what a return taught about nodes: those whose results
// agreed with their unit's verdict, those whose did not. Each replica is
// judged once, when the verdict is reached or, returned later, when it
// returns.
type Judgement struct {
	Unit      int
	Agreed    []string
	Disagreed []string
}

// Batch follows the units of one batch (or the one unit of a replicated
// job). Not safe for concurrent use.
type Batch struct {
	policy Policy
	units  []Unit
	fresh  int   // units [fresh:] never issued a replica
	again  []int // units to look at again, in order
	queued []bool
	tally  Tally  // its Running is Tally's to count
	issued []slot // replicas in the order issued: by deadline
}

// Tally counts the units of a batch by where they stand, and its
// replicas. A Batch keeps it as they change: reading it costs the same
// whatever the number of units.
type Tally struct {
	Queued, Running, Decided, Failed int // units: no replica yet, under way, with a verdict, failed
	Replicas                         int // replicas issued
	Late                             int // replicas past their deadline, or orphaned
	// Disagreed counts the replicas of decided units that returned a
	// result other than the verdict.
	Disagreed int
}

// add counts unit u, restored, into t (its Running aside).
func (t *Tally) add(u *Unit) {
	switch {
	case u.Verdict != nil:
		t.Decided++
	case u.Failure != "":
		t.Failed++
	case len(u.Replicas) == 0:
		t.Queued++
	}
	t.Replicas += len(u.Replicas)
	for _, r := range u.Replicas {
		if r.Late {
			t.Late++
		}
		if u.Verdict != nil && r.State == Returned && r.Digest != u.Verdict.Digest {
			t.Disagreed++
		}
	}
}

type slot struct{ unit, replica int }

// New starts a batch of n units under p.
func New(p Policy, n int) (*Batch, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("quorum: %d units", n)
	}
	return &Batch{policy: p, units: make([]Unit, n), queued: make([]bool, n), tally: Tally{Queued: n}}, nil
}

// Restore rebuilds a batch of n units under p from the units a shell
// persisted, by index (a unit never issued need not be given). Replicas
// that were issued or running stay so: the shell re-attaches to their
// runs, or reports them failed. Units are issued in order, so every unit
// below the highest given was issued before.
func Restore(p Policy, n int, units map[int]Unit) (*Batch, error) {
	b, err := New(p, n)
	if err != nil {
		return nil, err
	}
	for _, i := range slices.Sorted(maps.Keys(units)) {
		if i < 0 || i >= n {
			return nil, fmt.Errorf("quorum: no unit %d of %d", i, n)
		}
		u := units[i]
		b.units[i] = u
		b.fresh = i + 1
		b.tally.Queued--
		b.tally.add(&u)
		if u.Ended() {
			continue
		}
		for r := range u.Replicas {
			if u.Replicas[r].live() {
				b.issued = append(b.issued, slot{i, r})
			}
		}
		b.requeue(i)
	}
	slices.SortStableFunc(b.issued, func(x, y slot) int {
		return b.units[x.unit].Replicas[x.replica].Deadline.Compare(b.units[y.unit].Replicas[y.replica].Deadline)
	})
	return b, nil
}

// Len is the number of units.
func (b *Batch) Len() int { return len(b.units) }

// Unit returns unit i.
func (b *Batch) Unit(i int) *Unit { return &b.units[i] }

// Done reports whether every unit is decided or failed.
func (b *Batch) Done() bool { return b.Ended() == len(b.units) }

// Ended counts the units decided or failed.
func (b *Batch) Ended() int { return b.tally.Decided + b.tally.Failed }

// Tally counts the units and replicas.
func (b *Batch) Tally() Tally {
	t := b.tally
	t.Running = len(b.units) - t.Queued - t.Decided - t.Failed
	return t
}

// want is how many replicas unit u should issue now.
func (b *Batch) want(u *Unit) int {
	if u.Ended() {
		return 0
	}
	live, best := 0, 0
	votes := map[string]int{}
	for i := range u.Replicas {
		r := &u.Replicas[i]
		if r.live() {
			live++
		}
		if r.State == Returned {
			votes[r.Digest]++
			best = max(best, votes[r.Digest])
		}
	}
	n := max(b.policy.Replication-len(u.Replicas), b.policy.Quorum-best-live)
	switch {
	case b.policy.Adaptive && best == 0:
		n = 1 - live // one at a time until a result, which may stand alone
	case b.policy.Adaptive:
		n = b.policy.Quorum - best - live // then only what the quorum lacks
	}
	return max(0, min(n, b.policy.MaxReplicas-len(u.Replicas)))
}

// Next issues at most limit replicas, each due by deadline. Units already
// under way come first, by index, then units never issued, in order.
// Which units it picks depends on the units' states only, not on the
// order in which they came to want a replica: a batch restored from its
// units (Restore), or replicated by applying the same commands in which
// such an order may differ, issues the same tickets. Deadlines should not
// decrease from one call to the next: Expire takes replicas in the order
// they were issued.
func (b *Batch) Next(limit int, deadline time.Time) []Ticket {
	slices.Sort(b.again)
	var out []Ticket
	issue := func(i int) bool { // reports whether unit i wants more
		u := &b.units[i]
		for n := b.want(u); n > 0; n-- {
			if len(out) == limit {
				return true
			}
			out = append(out, Ticket{Unit: i, Replica: len(u.Replicas), Avoid: avoid(u)})
			if len(u.Replicas) == 0 {
				b.tally.Queued--
			}
			b.tally.Replicas++
			u.Replicas = append(u.Replicas, Replica{State: Issued, Deadline: deadline})
			b.issued = append(b.issued, slot{i, len(u.Replicas) - 1})
		}
		b.settle(i)
		return false
	}
	for len(b.again) > 0 && len(out) < limit {
		i := b.again[0]
		if issue(i) {
			break
		}
		b.again, b.queued[i] = b.again[1:], false
	}
	for b.fresh < len(b.units) && len(out) < limit {
		if issue(b.fresh) {
			b.requeue(b.fresh)
		}
		b.fresh++
	}
	return out
}

// avoid lists the nodes that hold or held a replica of u.
func avoid(u *Unit) []string {
	var out []string
	for _, r := range u.Replicas {
		if r.Node != "" {
			out = append(out, r.Node)
		}
	}
	return out
}

func (b *Batch) requeue(i int) {
	if !b.queued[i] && !b.units[i].Ended() {
		b.queued[i] = true
		b.again = append(b.again, i)
	}
}

// settle fails unit i when its replicas ran out without a quorum.
func (b *Batch) settle(i int) {
	u := &b.units[i]
	if u.Ended() || b.want(u) > 0 {
		return
	}
	for _, r := range u.Replicas {
		if r.State <= Running {
			return // a replica may still return, late ones too
		}
	}
	u.Failure = failure(u, b.policy)
	b.tally.Failed++
}

// failure says why u failed: how its replicas ended.
func failure(u *Unit, p Policy) string {
	votes := map[string]int{}
	var reasons []string
	for _, r := range u.Replicas {
		switch r.State {
		case Returned:
			votes[r.Digest]++
		case Failed:
			reasons = append(reasons, r.Reason)
		}
	}
	var parts []string
	if len(votes) > 0 {
		counts := make([]string, 0, len(votes))
		for _, d := range slices.Sorted(maps.Keys(votes)) {
			counts = append(counts, fmt.Sprintf("%d×%s", votes[d], d[:min(8, len(d))]))
		}
		parts = append(parts, fmt.Sprintf("%d results that disagree (%s)", len(votes), strings.Join(counts, ", ")))
	}
	if len(reasons) > 0 {
		parts = append(parts, fmt.Sprintf("%d failed (last: %s)", len(reasons), reasons[len(reasons)-1]))
	}
	return fmt.Sprintf("no quorum of %d after %d replicas: %s", p.Quorum, len(u.Replicas), strings.Join(parts, "; "))
}

func (b *Batch) replica(u, r int) (*Unit, *Replica, error) {
	if u < 0 || u >= len(b.units) || r < 0 || r >= len(b.units[u].Replicas) {
		return nil, nil, fmt.Errorf("quorum: no replica %d of unit %d", r, u)
	}
	return &b.units[u], &b.units[u].Replicas[r], nil
}

// Placed records that replica r of unit u runs on node. It refuses a
// node that holds or held another replica of the unit: the shell must
// then cancel the run and report it Failed.
func (b *Batch) Placed(u, r int, node string) error {
	unit, rep, err := b.replica(u, r)
	if err != nil {
		return err
	}
	if rep.State != Issued {
		return fmt.Errorf("quorum: replica %d of unit %d is %s", r, u, rep.State)
	}
	if node == "" || slices.Contains(avoid(unit), node) {
		return fmt.Errorf("quorum: unit %d already has a replica on %q", u, node)
	}
	rep.Node, rep.State = node, Running
	return nil
}

// Return records the result replica r of unit u returned (its Digest);
// trusted says its node has earned a result standing alone, spot that the
// shell's coin picked it for a check anyway. It returns what the return
// taught about nodes: nothing until the unit is decided. A replica that
// ended already is not changed again.
func (b *Batch) Return(u, r int, digest string, trusted, spot bool) (Judgement, error) {
	unit, rep, err := b.replica(u, r)
	if err != nil || rep.State != Running {
		if err == nil {
			err = fmt.Errorf("quorum: replica %d of unit %d is %s", r, u, rep.State)
		}
		return Judgement{Unit: u}, err
	}
	rep.State, rep.Digest = Returned, digest
	if v := unit.Verdict; v != nil { // decided already: judge this one
		j := Judgement{Unit: u}
		if digest == v.Digest {
			j.Agreed = []string{rep.Node}
		} else {
			j.Disagreed = []string{rep.Node}
			b.tally.Disagreed++
		}
		return j, nil
	}
	votes := 0
	for _, o := range unit.Replicas {
		if o.State == Returned && o.Digest == digest {
			votes++
		}
	}
	alone := b.policy.Adaptive && trusted && !spot && votes == 1 && len(unit.Replicas) == 1
	if votes < b.policy.Quorum && !alone {
		b.requeue(u)
		b.settle(u)
		return Judgement{Unit: u}, nil
	}
	unit.Verdict = &Verdict{Digest: digest, Replica: r, Alone: alone && votes < b.policy.Quorum}
	b.tally.Decided++
	j := Judgement{Unit: u}
	for _, o := range unit.Replicas {
		switch {
		case o.State != Returned:
		case o.Digest == digest:
			j.Agreed = append(j.Agreed, o.Node)
		default:
			j.Disagreed = append(j.Disagreed, o.Node)
		}
	}
	b.tally.Disagreed += len(j.Disagreed)
	return j, nil
}

// Fail records that replica r of unit u failed: it counts for nothing,
// and the unit issues another if it may.
func (b *Batch) Fail(u, r int, reason string) error {
	_, rep, err := b.replica(u, r)
	if err != nil {
		return err
	}
	if rep.State == Returned || rep.State == Failed {
		return nil
	}
	rep.State, rep.Reason = Failed, reason
	b.requeue(u)
	b.settle(u)
	return nil
}

// Orphan marks replica r of unit u late at once, if it is under way: its
// run will not report (the manager that issued it is gone), so the unit
// issues another; a result, if it comes after all, still counts.
func (b *Batch) Orphan(u, r int) error {
	_, rep, err := b.replica(u, r)
	if err != nil {
		return err
	}
	if rep.live() {
		rep.Late = true
		b.tally.Late++
		b.requeue(u)
	}
	return nil
}

// Expire marks the replicas whose deadline passed by now as late: their
// units issue others in their stead. It returns how many it marked.
func (b *Batch) Expire(now time.Time) int {
	n := 0
	for len(b.issued) > 0 {
		s := b.issued[0]
		r := &b.units[s.unit].Replicas[s.replica]
		if now.Before(r.Deadline) {
			break
		}
		b.issued = b.issued[1:]
		if r.live() {
			r.Late = true
			b.tally.Late++
			n++
			b.requeue(s.unit)
		}
	}
	return n
}

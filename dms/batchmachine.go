package dms

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator/quorum"
	"github.com/opendms/dms/types"
)

// batchMachine is a batch's state: its units' quorum and the results
// their replicas returned. It changes only by apply, deterministically,
// so that the managers of a batch replicate it as the commands of a raft
// log; a batch its submitter runs applies the same commands itself.
type batchMachine struct {
	spec *jobs.Batch
	q    *quorum.Batch
	// results the replicas returned: of an undecided unit all of them, of
	// a decided one the verdict's only.
	results map[int]map[int]*types.Result
	// issuers names the manager that issued each live replica.
	issuers map[[2]int]string
	// ended lists the units in the order they ended: a submitter collects
	// them from a manager by position in it.
	ended   []int
	isEnded map[int]bool
	// state and reason are the batch's once it ended ("" while it runs).
	state, reason string
	// nodes holds one copy of each node ID the replicas name: a batch's
	// replicas run on few nodes, and each would keep its own copy.
	nodes map[string]string
}

// The commands of a batch's log.
const (
	opIssue  = "issue"  // issue up to Limit replicas due by Deadline, by Issuer
	opEnd    = "end"    // replica Unit/Replica ended on Node: Result, or Reason
	opExpire = "expire" // replicas due by Now are late
	opOrphan = "orphan" // the replicas Issuer issued will not report: they are late
	opFinish = "finish" // the batch ended: State, Reason
)

type batchCmd struct {
	Op       string        `json:"op"`
	Limit    int           `json:"limit,omitempty"`
	Deadline time.Time     `json:"deadline,omitzero"`
	Issuer   string        `json:"issuer,omitempty"`
	Unit     int           `json:"unit,omitempty"`
	Replica  int           `json:"replica,omitempty"`
	Node     string        `json:"node,omitempty"`
	Result   *types.Result `json:"result,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Trusted  bool          `json:"trusted,omitempty"`
	Spot     bool          `json:"spot,omitempty"`
	Now      time.Time     `json:"now,omitzero"`
	State    string        `json:"state,omitempty"`
}

// batchOut is what a command did: the replicas it issued, what it taught
// about nodes, the units it changed.
type batchOut struct {
	Tickets   []quorum.Ticket  `json:"tickets,omitempty"`
	Judgement quorum.Judgement `json:"judgement"`
	Units     []int            `json:"units,omitempty"`
	Err       string           `json:"err,omitempty"`
}

func newBatchMachine(spec *jobs.Batch, units map[int]unitRecord) (*batchMachine, error) {
	saved := make(map[int]quorum.Unit, len(units))
	m := &batchMachine{spec: spec, results: map[int]map[int]*types.Result{}, issuers: map[[2]int]string{}, isEnded: map[int]bool{},
		nodes: map[string]string{}}
	for _, i := range slices.Sorted(maps.Keys(units)) {
		u := units[i]
		for k := range u.Replicas {
			u.Replicas[k].Node = m.node(u.Replicas[k].Node)
		}
		saved[i] = u.Unit
		if len(u.Results) > 0 {
			m.results[i] = u.Results
		}
		if u.Ended() {
			m.ended, m.isEnded[i] = append(m.ended, i), true
		}
		for k, r := range u.Replicas {
			if r.State <= quorum.Running && u.Issuers[k] != "" {
				m.issuers[[2]int{i, k}] = u.Issuers[k]
			}
		}
	}
	q, err := quorum.Restore(spec.Policy(), spec.Len(), saved)
	if err != nil {
		return nil, err
	}
	m.q = q
	return m, nil
}

// cmpSlot orders replicas by unit, then replica.
func cmpSlot(a, b [2]int) int {
	if c := cmp.Compare(a[0], b[0]); c != 0 {
		return c
	}
	return cmp.Compare(a[1], b[1])
}

// apply runs one command. It must make the same change on every manager
// that applies the same commands in the same order (raft replicates it
// so): nothing in it may depend on a map's order, the clock or the node.
func (m *batchMachine) apply(c batchCmd) batchOut {
	var out batchOut
	touch := func(u int) {
		if !slices.Contains(out.Units, u) {
			out.Units = append(out.Units, u)
		}
	}
	switch c.Op {
	case opIssue:
		if m.state != "" {
			break
		}
		out.Tickets = m.q.Next(c.Limit, c.Deadline)
		for _, t := range out.Tickets {
			m.issuers[[2]int{t.Unit, t.Replica}] = c.Issuer
			touch(t.Unit)
		}
	case opEnd:
		out.Judgement, out.Err = m.end(c)
		delete(m.issuers, [2]int{c.Unit, c.Replica})
		touch(c.Unit)
	case opExpire:
		m.q.Expire(c.Now)
	case opOrphan:
		for _, k := range slices.SortedFunc(maps.Keys(m.issuers), cmpSlot) { // every member in one order
			if m.issuers[k] == c.Issuer {
				_ = m.q.Orphan(k[0], k[1])
				delete(m.issuers, k)
				touch(k[0])
			}
		}
	case opFinish:
		m.state, m.reason = c.State, c.Reason
	default:
		out.Err = fmt.Sprintf("unknown command %q", c.Op)
	}
	slices.Sort(out.Units)
	for _, u := range out.Units {
		if m.q.Unit(u).Ended() && !m.isEnded[u] {
			m.isEnded[u] = true
			m.ended = append(m.ended, u)
		}
	}
	return out
}

func (m *batchMachine) end(c batchCmd) (quorum.Judgement, string) {
	u, k := c.Unit, c.Replica
	c.Node = m.node(c.Node)
	if c.Reason != "" {
		if err := m.q.Fail(u, k, c.Reason); err != nil {
			return quorum.Judgement{}, err.Error()
		}
		return quorum.Judgement{}, ""
	}
	if err := m.q.Placed(u, k, c.Node); err != nil {
		_ = m.q.Fail(u, k, fmt.Sprintf("ran on %s, which holds another replica of the unit: not counted", c.Node))
		return quorum.Judgement{}, err.Error()
	}
	j, err := m.q.Return(u, k, quorum.Digest(c.Result), c.Trusted, c.Spot)
	if err != nil {
		return j, err.Error()
	}
	if m.results[u] == nil {
		m.results[u] = map[int]*types.Result{}
	}
	m.results[u][k] = c.Result
	if v := m.q.Unit(u).Verdict; v != nil { // keep the verdict's result only
		m.results[u] = map[int]*types.Result{v.Replica: m.results[u][v.Replica]}
	}
	return j, ""
}

// node returns the machine's copy of node ID id.
func (m *batchMachine) node(id string) string {
	if n, ok := m.nodes[id]; ok {
		return n
	}
	n := strings.Clone(id) // id may be part of a larger string, such as a message
	m.nodes[n] = n
	return n
}

// unitRecord is unit u as persisted.
func (m *batchMachine) unitRecord(u int) unitRecord {
	unit := m.q.Unit(u)
	rec := unitRecord{Unit: *unit, Results: maps.Clone(m.results[u])}
	rec.Replicas = slices.Clone(unit.Replicas)
	for k := range rec.Replicas {
		if issuer := m.issuers[[2]int{u, k}]; issuer != "" {
			if rec.Issuers == nil {
				rec.Issuers = make([]string, len(rec.Replicas))
			}
			rec.Issuers[k] = issuer
		}
	}
	return rec
}

// machineSnapshot is a batch's whole state, as a manager's raft snapshot
// holds it.
type machineSnapshot struct {
	Units  map[int]unitRecord `json:"units"`
	Ended  []int              `json:"ended"`
	State  string             `json:"state,omitempty"`
	Reason string             `json:"reason,omitempty"`
}

func (m *batchMachine) snapshot() machineSnapshot {
	s := machineSnapshot{Units: map[int]unitRecord{}, Ended: slices.Clone(m.ended), State: m.state, Reason: m.reason}
	for i := range m.q.Len() {
		if len(m.q.Unit(i).Replicas) > 0 {
			s.Units[i] = m.unitRecord(i)
		}
	}
	return s
}

func (s machineSnapshot) persist(w io.Writer) error { return json.NewEncoder(w).Encode(s) }

// restoreMachine rebuilds a machine from a snapshot.
func restoreMachine(spec *jobs.Batch, s machineSnapshot) (*batchMachine, error) {
	m, err := newBatchMachine(spec, s.Units)
	if err != nil {
		return nil, err
	}
	m.ended, m.state, m.reason = s.Ended, s.State, s.Reason // the order the managers saw
	return m, nil
}

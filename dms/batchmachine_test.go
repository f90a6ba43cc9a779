package dms

import (
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// TestBatchMachineSharesNodeIDs: the replicas that ran on one node share
// one copy of its ID, whether they ended here or were restored from
// their records, rather than each keeping the copy its end came with.
func TestBatchMachineSharesNodeIDs(t *testing.T) {
	spec, err := jobs.ParseBatch([]byte("name: n\ntemplate: {module: bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy}\nunits: {range: 1..3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := newBatchMachine(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := m.apply(batchCmd{Op: opIssue, Limit: 3, Deadline: time.Now().Add(time.Minute), Issuer: "me"})
	if len(out.Tickets) != 3 {
		t.Fatalf("issued %+v", out.Tickets)
	}
	for _, tk := range out.Tickets {
		node := strings.Repeat("A", 52) // a fresh copy for each end, as decoding makes
		if out := m.apply(batchCmd{Op: opEnd, Unit: tk.Unit, Replica: tk.Replica, Node: node, Result: &types.Result{Stdout: "x"}}); out.Err != "" {
			t.Fatal(out.Err)
		}
	}
	shared := func(m *batchMachine) {
		t.Helper()
		first := unsafe.StringData(m.q.Unit(0).Replicas[0].Node)
		for i := range m.q.Len() {
			if n := m.q.Unit(i).Replicas[0].Node; unsafe.StringData(n) != first {
				t.Fatalf("unit %d keeps a copy of its node's ID of its own", i)
			}
		}
	}
	shared(m)
	units := map[int]unitRecord{}
	for i := range m.q.Len() {
		rec := m.unitRecord(i)
		rec.Replicas[0].Node = strings.Repeat("A", 52)
		units[i] = rec
	}
	back, err := newBatchMachine(spec, units)
	if err != nil {
		t.Fatal(err)
	}
	shared(back)
}

package dms

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

var day0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// jobRecord is a job record as the orchestrator saves it.
func jobRecord(state types.JobState, updated time.Time) orchestrator.Record {
	return orchestrator.Record{
		JobInfo: orchestrator.JobInfo{
			ID: "j1", Name: "hello", State: state, Reason: "because", Node: "12D3KooWNode",
			Attempts: []orchestrator.Attempt{
				{Number: 1, AllocationID: "a1", Node: "12D3KooWOther", Epoch: 7, Outcome: orchestrator.OutcomeFailed, Reason: "lost", Notes: []string{"late status: running"}},
				{Number: 2, AllocationID: "a2", Node: "12D3KooWNode", Epoch: 9, Outcome: orchestrator.OutcomeCompleted},
			},
			Result:    &types.Result{Stdout: "bafkout", Stderr: "bafkerr", Files: map[string]string{"x": "bafkx"}},
			CreatedAt: updated.Add(-time.Minute), UpdatedAt: updated, Revision: 12,
		},
		Spec: orchestrator.JobSpec{ID: "j1", Name: "hello", Task: types.Task{
			Executor: "wasm", Module: "bafkmodule", Stdin: "bafkstdin", Inputs: "bafkinputs",
			Files: []types.InputFile{{Path: "f", CID: "bafkfile", From: []string{"12D3KooWOther"}}},
			Args:  []string{"--big"}, Env: map[string]string{"K": "V"}, Resources: types.Resources{CPU: 100, Memory: 1 << 20},
		}},
	}
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// allocRecordJSON is an alloc/ record as the node writes it (node's
// allocRecord, by its JSON names).
func allocRecordJSON(state string, ended time.Time, task bool) []byte {
	rec := map[string]any{
		"allocation_id": "a2", "job_id": "j1", "requester": "12D3KooWReq", "resources": map[string]any{"cpu": 100},
		"epoch": 42, "lock_expiry": ended, "state": state, "locked_at": ended.Add(-time.Minute),
		"a_field_of_the_future": []int{1, 2},
	}
	if task {
		rec["task"] = map[string]any{"executor": "wasm", "module": "bafkmodule", "stdin": "bafkstdin", "inputs": "bafkinputs", "args": []string{"x"},
			"files": []map[string]any{{"path": "f", "cid": "bafkfile", "size": 3}}}
	}
	if state == "completed" {
		rec["ended_at"], rec["result"] = ended, map[string]any{"stdout": "bafkout", "stderr": "bafkerr"}
	}
	b, _ := json.Marshal(rec)
	return b
}

func TestRecordRefs(t *testing.T) {
	all := []string{"bafkmodule", "bafkstdin", "bafkinputs", "bafkfile"}
	for _, tc := range []struct {
		name string
		refs func([]byte) ([]string, error)
		raw  []byte
		want []string
	}{
		{"a running job", jobRefs, marshal(t, jobRecord(types.JobRunning, day0)), all},
		{"a pending job", jobRefs, marshal(t, jobRecord(types.JobPending, day0)), all},
		{"a completed job", jobRefs, marshal(t, jobRecord(types.JobCompleted, day0)), nil},
		{"a cancelled job", jobRefs, marshal(t, jobRecord(types.JobCancelled, day0)), nil},
		{"a running allocation", allocRefs, allocRecordJSON("running", day0, true), all},
		{"a locked allocation: no task yet", allocRefs, allocRecordJSON("locked", day0, false), nil},
		{"a completed allocation", allocRefs, allocRecordJSON("completed", day0, true), nil},
	} {
		got, err := tc.refs(tc.raw)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: refs %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	for _, raw := range []string{`{"spec":{"task":{"module":"bafk"}}}`, `not json`, `{"state": 5}`} {
		if _, err := jobRefs([]byte(raw)); err == nil {
			t.Errorf("jobRefs(%s): no error", raw)
		}
		if _, err := allocRefs([]byte(raw)); err == nil {
			t.Errorf("allocRefs(%s): no error", raw)
		}
	}
}

func TestCompactJob(t *testing.T) {
	cutoff := day0.Add(24 * time.Hour)
	old := jobRecord(types.JobCompleted, day0)
	raw := marshal(t, old)
	var withFuture map[string]any
	json.Unmarshal(raw, &withFuture)
	withFuture["a_field_of_the_future"] = "kept"
	raw = marshal(t, withFuture)

	out, changed, err := compactJob(raw, cutoff)
	if err != nil || !changed {
		t.Fatalf("compacting an old finished job: %v, %v", changed, err)
	}
	if len(out) >= len(raw) || !strings.Contains(string(out), `"a_field_of_the_future":"kept"`) {
		t.Fatalf("compacted (%d bytes from %d): %s", len(out), len(raw), out)
	}
	var got orchestrator.Record
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := jobRecord(types.JobCompleted, day0)
	want.Spec.Task.Args, want.Spec.Task.Env, want.Spec.Task.Files, want.Attempts[0].Notes = nil, nil, nil, nil
	if !equalJSON(t, got, want) {
		t.Fatalf("compacted record:\n%s\nwant\n%s", marshal(t, got), marshal(t, want))
	}
	if _, again, err := compactJob(out, cutoff); again || err != nil {
		t.Fatalf("compacting again: %v, %v", again, err)
	}
	for name, rec := range map[string]orchestrator.Record{
		"recent":  jobRecord(types.JobFailed, cutoff.Add(time.Second)),
		"running": jobRecord(types.JobRunning, day0),
	} {
		if _, changed, err := compactJob(marshal(t, rec), cutoff); changed || err != nil {
			t.Errorf("%s job: compacted %v, %v", name, changed, err)
		}
	}
}

func TestCompactAlloc(t *testing.T) {
	cutoff := day0.Add(24 * time.Hour)
	raw := allocRecordJSON("completed", day0, true)
	out, changed, err := compactAlloc(raw, cutoff)
	if err != nil || !changed {
		t.Fatalf("compacting an old finished allocation: %v, %v", changed, err)
	}
	var got, want map[string]any
	json.Unmarshal(out, &got)
	json.Unmarshal(raw, &want)
	delete(want, "task")
	if !equalJSON(t, got, want) || got["epoch"] != float64(42) {
		t.Fatalf("compacted record:\n%s\nwant everything but the task:\n%s", out, raw)
	}
	if _, again, err := compactAlloc(out, cutoff); again || err != nil {
		t.Fatalf("compacting again: %v, %v", again, err)
	}
	for name, raw := range map[string][]byte{
		"recent":  allocRecordJSON("completed", cutoff.Add(time.Second), true),
		"running": allocRecordJSON("running", day0, true),
		"locked":  allocRecordJSON("locked", day0, false),
	} {
		if _, changed, err := compactAlloc(raw, cutoff); changed || err != nil {
			t.Errorf("%s allocation: compacted %v, %v", name, changed, err)
		}
	}
	if _, _, err := compactAlloc([]byte(`{"state":"completed","ended_at":"yesterday"}`), cutoff); err == nil {
		t.Error("a bad ended_at was not an error")
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	var x, y any
	json.Unmarshal(marshal(t, a), &x)
	json.Unmarshal(marshal(t, b), &y)
	return string(marshal(t, x)) == string(marshal(t, y))
}

package dms

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opendms/dms/types"
)

// What the collector reads of the records of other packages, by their JSON
// names only, so that it goes on working while they change:
//
//	job/<id>    (orchestrator.Record)  "state", "updated_at",
//	            "spec": {"task": {"module", "stdin", "inputs", "args", "env"}},
//	            "attempts": [{"notes"}]
//	alloc/<id>  (node's allocRecord)   "state", "ended_at",
//	            "task": {"module", "stdin", "inputs"}
//
// A record is live until its "state" is terminal (types.JobState and
// types.AllocationState say which are). Compaction deletes fields and
// never a record, and never touches "epoch": a restarted provider takes
// the highest epoch of its alloc/ records, audit/ entries and node/epoch,
// so it must never issue one twice. (The node itself deletes the alloc/
// record of a lock that ended unused, raising node/epoch first.)
const allocPrefix = "alloc/"

// taskRefs are the blobs a task names: its program, stdin, input archive
// and input files (those a requester or a provider holds: a workflow's
// list items on the requester, the files a provider fetched).
type taskRefs struct {
	Module string `json:"module"`
	Stdin  string `json:"stdin"`
	Inputs string `json:"inputs"`
	Files  []struct {
		CID string `json:"cid"`
	} `json:"files"`
}

func (t *taskRefs) cids() []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, c := range []string{t.Module, t.Stdin, t.Inputs} {
		if c != "" {
			out = append(out, c)
		}
	}
	for _, f := range t.Files {
		if f.CID != "" {
			out = append(out, f.CID)
		}
	}
	return out
}

// jobRefs returns the blobs an unfinished job's record names (its
// module, stdin and input archive), none for a finished job.
func jobRefs(raw []byte) ([]string, error) {
	var rec struct {
		State types.JobState `json:"state"`
		Spec  struct {
			Task *taskRefs `json:"task"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	return liveRefs(string(rec.State), rec.State.Terminal(), rec.Spec.Task)
}

// allocRefs returns the blobs a live allocation's record names, none for
// one that ended.
func allocRefs(raw []byte) ([]string, error) {
	var rec struct {
		State types.AllocationState `json:"state"`
		Task  *taskRefs             `json:"task"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	return liveRefs(string(rec.State), rec.State.Terminal(), rec.Task)
}

// liveRefs is the blobs task names while its record's state is not
// terminal; a record without a state cannot be judged.
func liveRefs(state string, terminal bool, task *taskRefs) ([]string, error) {
	switch {
	case state == "":
		return nil, errors.New("no state")
	case terminal:
		return nil, nil
	}
	return task.cids(), nil
}

// object is a JSON object whose fields are kept as they are, the unknown
// ones included.
type object map[string]json.RawMessage

// endedBefore reports whether rec's state is terminal (by terminal) and
// its time field at is before cutoff.
func (o object) endedBefore(at string, cutoff time.Time, terminal func(string) bool) (bool, error) {
	var state string
	if err := json.Unmarshal(o["state"], &state); err != nil {
		return false, fmt.Errorf("state: %w", err)
	}
	if !terminal(state) || o[at] == nil {
		return false, nil
	}
	var t time.Time
	if err := json.Unmarshal(o[at], &t); err != nil {
		return false, fmt.Errorf("%s: %w", at, err)
	}
	return t.Before(cutoff), nil
}

// drop deletes the fields that are there, and reports whether there were any.
func (o object) drop(fields ...string) bool {
	dropped := false
	for _, f := range fields {
		if _, ok := o[f]; ok {
			delete(o, f)
			dropped = true
		}
	}
	return dropped
}

// compactJob keeps, of a job that ended before cutoff, its summary: ids,
// node, state, reason, result, times, the spec without its task's args,
// env and input files (up to 3 MiB of them), the attempts without their
// notes. It reports whether it changed
// anything; a record compacted already is returned unchanged.
func compactJob(raw []byte, cutoff time.Time) ([]byte, bool, error) {
	var rec object
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, false, err
	}
	old, err := rec.endedBefore("updated_at", cutoff, func(s string) bool { return types.JobState(s).Terminal() })
	if err != nil || !old {
		return nil, false, err
	}
	task, err := dropTaskArgs(rec)
	if err != nil {
		return nil, false, err
	}
	notes, err := dropNotes(rec)
	if err != nil || !task && !notes {
		return nil, false, err
	}
	out, err := json.Marshal(rec)
	return out, err == nil, err
}

// dropTaskArgs removes spec.task.args, env and files from a job record.
func dropTaskArgs(rec object) (bool, error) {
	var spec, task object
	if rec["spec"] == nil {
		return false, nil
	}
	if err := json.Unmarshal(rec["spec"], &spec); err != nil {
		return false, fmt.Errorf("spec: %w", err)
	}
	if spec["task"] == nil {
		return false, nil
	}
	if err := json.Unmarshal(spec["task"], &task); err != nil {
		return false, fmt.Errorf("spec.task: %w", err)
	}
	if !task.drop("args", "env", "files") {
		return false, nil
	}
	var err error
	if spec["task"], err = json.Marshal(task); err == nil {
		rec["spec"], err = json.Marshal(spec)
	}
	return err == nil, err
}

// dropNotes removes the notes of a job record's attempts.
func dropNotes(rec object) (bool, error) {
	var attempts []object
	if rec["attempts"] == nil {
		return false, nil
	}
	if err := json.Unmarshal(rec["attempts"], &attempts); err != nil {
		return false, fmt.Errorf("attempts: %w", err)
	}
	dropped := false
	for _, a := range attempts {
		dropped = a.drop("notes") || dropped
	}
	if !dropped {
		return false, nil
	}
	var err error
	rec["attempts"], err = json.Marshal(attempts)
	return err == nil, err
}

// compactAlloc keeps, of an allocation that ended before cutoff, all but
// its task: ids, requester, resources, epoch, state, reason, result CIDs
// and times.
func compactAlloc(raw []byte, cutoff time.Time) ([]byte, bool, error) {
	var rec object
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, false, err
	}
	old, err := rec.endedBefore("ended_at", cutoff, func(s string) bool { return types.AllocationState(s).Terminal() })
	if err != nil || !old || !rec.drop("task") {
		return nil, false, err
	}
	out, err := json.Marshal(rec)
	return out, err == nil, err
}

package bench

import (
	"testing"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

// TestBenchFlow: the flow and its jobs without it run to their ends, the
// rerun is served from the cache (every instance, without a job), the
// chains complete with and without locality, and every instance is
// counted on the node that ran it.
func TestBenchFlow(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "flow", Options{})
	checkKeys(t, res, "makespan_ms", "fan_ms", "fanin_ms", "jobs_ms", "jobs_fan_ms", "jobs_fanin_ms",
		"cached_rerun_ms", "cached_rerun_median_ms", "rerun_jobs", "rerun_cached",
		"bytes_moved", "bytes_moved_no_locality", "on_holder", "on_holder_no_locality",
		"chains_makespan_ms", "chains_makespan_no_locality_ms", "chains_use_ms", "chains_use_no_locality_ms")
	want(t, res, "instances", 51)
	want(t, res, "computing_nodes", 2)
	want(t, res, "rerun_jobs", 0)
	want(t, res, "rerun_cached", 51)
	want(t, res, "chains", 4)
	for key, steps := range map[string]map[string]int{
		"instances_per_node": {"fan": 50, "fanin": 1}, "chains_per_node": {"make": 4, "use": 4}, "chains_per_node_no_locality": {"make": 4, "use": 4},
	} {
		per, _ := res[key].(map[string][]int)
		for name, n := range steps {
			if sum := sumInts(per[name]); sum != n {
				t.Errorf("%s[%s] = %v: %d instances, want %d", key, name, per[name], sum, n)
			}
		}
	}
	if e, ok := res["error"]; ok {
		t.Errorf("error = %v", e)
	}
	if _, ok := res["overhead_per_step_ms"].(float64); !ok {
		t.Errorf("overhead_per_step_ms = %v, want a number", res["overhead_per_step_ms"])
	}
	if res["makespan_ms"].(float64) <= 0 || res["jobs_ms"].(float64) <= 0 {
		t.Errorf("makespan %v ms, jobs %v ms: want measured times", res["makespan_ms"], res["jobs_ms"])
	}
}

// TestChainsMoved: a use instance that ran where its make instance did
// moved nothing; one that ran elsewhere moved its input; a use that did
// not print its input back, or a chain cut short, is an error.
func TestChainsMoved(t *testing.T) {
	inst := func(key, node, stdout string) api.FlowInstance {
		return api.FlowInstance{Key: key, Node: node, State: api.FlowCompleted,
			Result: &types.Result{Stdout: stdout, Sizes: map[string]int64{stdout: int64(len(stdout)) << 10}}}
	}
	flow := func(uses ...api.FlowInstance) api.Flow {
		return api.Flow{Steps: []api.FlowStep{
			{Name: "make", Instances: []api.FlowInstance{inst("0", "a", "c0"), inst("1", "b", "c11"), inst("2", "a", "c222")}},
			{Name: "use", Instances: uses},
		}}
	}
	moved, on, err := chainsMoved(flow(inst("0", "a", "c0"), inst("1", "a", "c11"), inst("2", "b", "c222")), 3)
	if err != nil || moved != 3<<10+4<<10 || on != 1 {
		t.Fatalf("moved %d, on the holder %d, err %v; want 7168, 1", moved, on, err)
	}
	for name, f := range map[string]api.Flow{
		"a use printed another blob": flow(inst("0", "a", "c0"), inst("1", "a", "c222"), inst("2", "b", "c222")),
		"a use instance is missing":  flow(inst("0", "a", "c0"), inst("1", "a", "c11")),
		"a use instance has no make": flow(inst("0", "a", "c0"), inst("1", "a", "c11"), inst("9", "b", "c222")),
	} {
		if _, _, err := chainsMoved(f, 3); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func sumInts(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

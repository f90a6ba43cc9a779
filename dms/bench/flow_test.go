package bench

import "testing"

// TestBenchFlow: the flow and its jobs without it run to their ends, and
// the rerun is served from the cache: every instance, without a job.
func TestBenchFlow(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "flow", Options{})
	checkKeys(t, res, "makespan_ms", "fan_ms", "fanin_ms", "jobs_ms", "jobs_fan_ms", "jobs_fanin_ms",
		"cached_rerun_ms", "cached_rerun_median_ms", "bytes_moved", "fanin_local_files", "rerun_jobs", "rerun_cached",
		"bytes_moved_no_locality", "fanin_local_files_no_locality", "makespan_no_locality_ms")
	want(t, res, "instances", 51)
	want(t, res, "computing_nodes", 2)
	want(t, res, "rerun_jobs", 0)
	want(t, res, "rerun_cached", 51)
	per, _ := res["instances_per_node"].(map[string][]int)
	for name, n := range map[string]int{"fan": 50, "fanin": 1} {
		if sum := sumInts(per[name]); sum != n {
			t.Errorf("instances_per_node[%s] = %v: %d instances, want %d", name, per[name], sum, n)
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

func sumInts(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

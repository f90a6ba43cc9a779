package bench

import "testing"

// TestBenchBatch: both batches complete, every unit decided by as many
// replicas as its replication and its output fetched and checked, the
// plain jobs run, and the heap is sampled as the units end.
func TestBenchBatch(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "batch", Options{})
	want(t, res, "units", 50)
	want(t, res, "computing_nodes", 3)
	for _, p := range []string{"r1_", "r2_"} {
		checkKeys(t, res, p+"plain_per_s", p+"makespan_ms", p+"units_per_s", p+"ratio", p+"plain_cpu_ms_per_job", p+"cpu_ms_per_replica", p+"cpu_ratio", p+"cores", p+"plain_cores", p+"fetch_output_p50_ms",
			p+"unit_records_bytes", p+"outputs_bytes", p+"records_json_bytes", p+"records_zstd_bytes", p+"with_outputs_zstd_bytes")
		want(t, res, p+"completed", 50)
		want(t, res, p+"failed", 0)
		want(t, res, p+"disagreed", 0)
		// 50 units may end a few to a snapshot of the watch (100 ms apart)
		// without -race: a sample or two, and no slope from one.
		s, _ := res[p+"heap_samples"].([]heapSample)
		if len(s) == 0 {
			t.Errorf("%sheap_samples = %v, want some", p, res[p+"heap_samples"])
		}
		for _, k := range []string{"heap_per_unit_bytes", "quorum_per_unit_bytes"} { // slopes, of any sign on 50 units
			if _, ok := res[p+k].(float64); !ok && len(s) >= 2 {
				t.Errorf("%s%s = %v, want a number from %d samples", p, k, res[p+k], len(s))
			}
		}
		if per, _ := res[p+"replicas_per_node"].([]int); sumInts(per) != res[p+"replicas"] || per[0] != 0 {
			t.Errorf("%sreplicas_per_node = %v, want the %v replicas on computing nodes", p, res[p+"replicas_per_node"], res[p+"replicas"])
		}
		if z, j := res[p+"records_zstd_bytes"].(int), res[p+"unit_records_bytes"].(int); z <= 0 || z >= j {
			t.Errorf("%s: %d bytes compressed in one, %d one unit at a time: want fewer, not none", p, z, j)
		}
	}
	want(t, res, "r1_replicas", 50)
	want(t, res, "r2_replicas", 100)
}

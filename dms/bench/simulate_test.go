package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestBenchSimulate runs the quick sizes (200 and 500 nodes) and checks
// what a wrong simulation would break: physics (no job placed in less
// than two round trips at the smallest RTT), scaling (sampled messages
// per job flat in N, gossip's linear), and every job placed.
func TestBenchSimulate(t *testing.T) {
	t.Parallel()
	res := runQuick(t, "simulate", Options{})
	sizes := simulateSizes(true)
	var keys []string
	for _, size := range sizes {
		for _, mode := range simulateModes {
			for _, k := range []string{"_p50_ms_", "_p99_ms_", "_msgs_per_job_", "_p50_over_rtt_"} {
				keys = append(keys, fmt.Sprint(mode, k, size.nodes))
			}
		}
	}
	checkKeys(t, res, append(keys, "median_rtt_ms", "loss")...)
	if m := res["median_rtt_ms"].(float64); m < 55 || m > 72 { // log-uniform over 20-200 ms: sqrt(20*200) = 63.2
		t.Errorf("median RTT injected %v ms, want about 63", m)
	}
	rows, ok := res["rows"].([]map[string]any)
	if !ok || len(rows) != len(sizes)*len(simulateModes) {
		t.Fatalf("rows = %#v, want one per size and mode", res["rows"])
	}
	byMode := map[string][]map[string]any{}
	for _, row := range rows {
		checkSimulateRow(t, row)
		byMode[row["mode"].(string)] = append(byMode[row["mode"].(string)], row)
	}
	small, large := sizes[0].nodes, sizes[1].nodes
	growth := float64(large) / float64(small)
	for _, mode := range []string{modeSampled, modeSampledWarm} {
		a, b := byMode[mode][0], byMode[mode][1]
		if ratio := float64(b["msgs_p50"].(int)) / float64(a["msgs_p50"].(int)); ratio > 1.5 || ratio < 1/1.5 {
			t.Errorf("%s: median messages per job %v at %d nodes, %v at %d: want them flat in N", mode, a["msgs_p50"], small, b["msgs_p50"], large)
		}
		for _, row := range byMode[mode] {
			if f := row["floods"].(int); f*50 > row["jobs"].(int) {
				t.Errorf("%s at %v nodes: %d of %v jobs gossiped, want under 2%%", mode, row["nodes"], f, row["jobs"])
			}
		}
	}
	a, b := byMode[modeGossip][0], byMode[modeGossip][1]
	if ratio := b["msgs_per_job"].(float64) / a["msgs_per_job"].(float64); ratio < 0.8*growth || ratio > 1.2*growth {
		t.Errorf("gossip: %v messages per job at %d nodes, %v at %d: want them to grow as N (x%.1f)", a["msgs_per_job"], small, b["msgs_per_job"], large, growth)
	}
	if _, err := json.Marshal(res); err != nil {
		t.Errorf("the result does not marshal: %v", err)
	}
}

// checkSimulateRow checks one row: every job placed and completed, none
// placed faster than physics allows, and what each mode must send.
func checkSimulateRow(t *testing.T, row map[string]any) {
	t.Helper()
	name := fmt.Sprintf("%v at %v nodes", row["mode"], row["nodes"])
	if row["placed"] != row["jobs"] || row["failed"] != 0 {
		t.Errorf("%s: %v of %v jobs placed, %v failed: want all placed, none failed", name, row["placed"], row["jobs"], row["failed"])
	}
	// A placement is a bid request and its bid, then an accept and its
	// confirm: two round trips, each at least the smallest RTT.
	if least := 2 * ms(simulateRTTMin); row["min_ms"].(float64) < least {
		t.Errorf("%s: a job placed in %v ms, under two round trips (%v ms)", name, row["min_ms"], least)
	}
	if p50, rtt := row["p50_ms"].(float64), row["median_rtt_ms"].(float64); row["mode"] != modeGossip && p50 < rtt {
		t.Errorf("%s: p50 %v ms under the median RTT %v ms: a sampled auction waits for both nodes' bids", name, p50, rtt)
	}
	n := float64(row["nodes"].(int))
	switch copies := row["copies_per_job"].(float64); row["mode"] {
	case modeGossip: // every node gets at least one copy; frames: at least an answer and its acknowledgement a node
		if copies < n || row["frames_per_job"].(float64) < 2*n {
			t.Errorf("%s: %v copies and %v frames per job: want at least one copy and two frames a node", name, copies, row["frames_per_job"])
		}
	default: // bid requests, bids, accept, confirm, invocation and statuses at least
		if p := row["msgs_p50"].(int); p < 9 || p > 40 {
			t.Errorf("%s: a median job sent %d messages: want a sampled auction's few", name, p)
		}
	}
}

func TestSimulateSameSeedSameFigures(t *testing.T) {
	t.Parallel()
	for _, mode := range simulateModes {
		c := smConfig{seed: 5, nodes: 150, jobs: 60, mode: mode}
		a, err := simulateRow(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		b, err := simulateRow(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a.fields(), b.fields()) {
			t.Fatalf("%s: two runs of one seed differ:\n%v\n%v", mode, a.fields(), b.fields())
		}
	}
}

func TestSimulateCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := simulateRow(ctx, smConfig{seed: 1, nodes: 50, jobs: 20, mode: modeGossip}); err == nil {
		t.Fatal("a cancelled context did not stop the simulation")
	}
}

// The mesh is what gossipsub keeps: every node has D to Dhi peers, and a
// peer of a node has it as its peer. Grafts a node accepts take it past
// D, so the mean is above D (gossipsub prunes only beyond Dhi).
func TestGossipMesh(t *testing.T) {
	mesh := gossipMesh(rand.New(rand.NewPCG(7, 0)), 1000)
	links := 0
	for v, peers := range mesh {
		if len(peers) < gossipD || len(peers) > gossipDhi {
			t.Fatalf("node %d has %d mesh peers, want %d to %d", v, len(peers), gossipD, gossipDhi)
		}
		for _, w := range peers {
			if !slices.Contains(mesh[w], int32(v)) {
				t.Fatalf("node %d is in %d's mesh, not %d in %d's", w, v, v, w)
			}
		}
		links += len(peers)
	}
	if mean := float64(links) / 1000; mean < gossipD || mean > (gossipD+gossipDhi)/2 {
		t.Errorf("mean mesh degree %.2f, want %d to %d", mean, gossipD, (gossipD+gossipDhi)/2)
	}
}

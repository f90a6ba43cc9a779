package bench

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestScaleQuick runs the scale scenario on 20 nodes: both modes place
// their jobs, the sampled requester's bid requests reach d nodes each, and
// the gossiped ones reach more.
func TestScaleQuick(t *testing.T) {
	res := runQuick(t, "scale", Options{})
	checkKeys(t, res, "nodes", "rss_per_node_mb", "sampled_d",
		"gossip_p50_ms", "gossip_p99_ms", "gossip_msgs_per_job", "gossip_reached_per_job",
		"sampled_p50_ms", "sampled_p99_ms", "sampled_msgs_per_job", "sampled_reached_per_job")
	want(t, res, "nodes", 20)
	want(t, res, "gossip_failed", 0)
	want(t, res, "sampled_failed", 0)
	want(t, res, "sampled_reached_per_job", 2)
	if g, s := res["gossip_reached_per_job"].(float64), res["sampled_reached_per_job"].(float64); g <= s {
		t.Errorf("gossip reached %v nodes a job, sampling %v", g, s)
	}
}

// TestScaleFull runs the full scenario when DMS_SCALE_NODES is set (500
// for the size) and prints its JSON, for docs/benchmarks.md:
//
//	DMS_SCALE_NODES=500 DMS_SCALE_HEAP=/tmp/scale.heap go test -run TestScaleFull -timeout 60m -v ./dms/bench/
//
// DMS_SCALE_HEAP and DMS_SCALE_GOROUTINES, when set, receive a heap and a
// goroutine profile taken once every node started (go tool pprof -top).
func TestScaleFull(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DMS_SCALE_NODES"))
	if n == 0 {
		t.Skip("set DMS_SCALE_NODES to run")
	}
	c := scaleSize(false)
	if l := os.Getenv("DMS_SCALE_LISTEN"); l != "" {
		c.Listen = l
	}
	c.Nodes, c.HeapProfile, c.GoroutineProfile = n, os.Getenv("DMS_SCALE_HEAP"), os.Getenv("DMS_SCALE_GOROUTINES")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	o := Options{Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	res, err := runScale(ctx, o, c)
	b, _ := json.Marshal(Result{Scenario: "scale", Results: res})
	t.Logf("%s", b)
	if err != nil {
		t.Fatal(err)
	}
}

package docker

import (
	"context"
	"encoding/json"
	"math"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/opendms/dms/types"
)

// firstSample is when a meter first reads a container's stats after its
// start; the interval then doubles up to Config.MeterEvery, so a short run
// is sampled several times, and a long one every MeterEvery.
const firstSample = 25 * time.Millisecond

// meter follows a container's CPU time and memory through the engine's
// stats (its cgroup's counters: cpuacct.usage or cpu.stat's usage_usec,
// and memory.max_usage_in_bytes on cgroup v1, memory.current on v2). The
// engine has them only while the container runs: once it exits, its
// cgroup is gone and its stats are zeros. So a meter samples while it
// runs and keeps the largest values seen: the CPU time is the container's
// total at the last sample, a lower bound short of at most one interval;
// the peak is the cgroup's own maximum on v1, and the largest usage
// sampled on v2. Memory counts what the cgroup is charged: the program's
// and the page cache of its files, as the limit does. Safe for
// concurrent use.
type meter struct {
	mu   sync.Mutex
	cpu  time.Duration
	peak types.Bytes
}

// sample reads the container's stats once and keeps what it adds. An
// engine error, or a container gone (stats of zeros), changes nothing: the
// next sample may do better, and the last one's values stand.
func (m *meter) sample(ctx context.Context, cli *client.Client, id string) {
	r, err := cli.ContainerStatsOneShot(ctx, id)
	if err != nil {
		return
	}
	defer r.Body.Close()
	var s container.StatsResponse
	if json.NewDecoder(r.Body).Decode(&s) != nil {
		return
	}
	cpu := time.Duration(min(s.CPUStats.CPUUsage.TotalUsage, math.MaxInt64))
	peak := types.Bytes(min(max(s.MemoryStats.MaxUsage, s.MemoryStats.Usage), math.MaxInt64))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cpu, m.peak = max(m.cpu, cpu), max(m.peak, peak)
}

// watch samples the container until ctx ends: after firstSample, then at
// twice the last interval, up to every. An engine that takes its time to
// answer (Engine 20.10 answers at most once a second) sets the pace.
func (m *meter) watch(ctx context.Context, cli *client.Client, id string, every time.Duration) {
	wait := min(firstSample, every)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.sample(ctx, cli, id)
		wait = min(2*wait, every)
		t.Reset(wait)
	}
}

// read returns the CPU time and memory peak seen so far.
func (m *meter) read() (time.Duration, types.Bytes) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cpu, m.peak
}

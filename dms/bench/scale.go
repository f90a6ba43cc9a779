package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func init() {
	register(Scenario{
		Name: "scale",
		What: "500 real libp2p nodes in one process (fewer if ulimit -n is below 38 a node), the compute ones DHT clients: auction latency (submit to placed) and messages per job, bid requests gossiped to every node vs sent to d=2 sampled nodes; RSS per node",
		Run: func(ctx context.Context, o Options) (map[string]any, error) {
			return runScale(ctx, o, scaleSize(o.Quick))
		},
	})
}

// scaleConfig sizes the scale scenario.
type scaleConfig struct {
	Nodes int // in all: Boot bootstrap nodes, 2 requesters, the rest compute
	Boot  int // started first; every other node joins through one of them
	Batch int // nodes started at once
	Jobs  int // measured jobs per mode, one at a time
	Gap   time.Duration
	D     int // the sampled requester's WithBidSampling
	// ConnsLow and ConnsHigh are every node's connection watermarks: in
	// one process, the default 256 to 512 would connect each node to most
	// of the others, O(N²) connections on one machine.
	ConnsLow, ConnsHigh int
	// Listen is every node's listen address (a port 0 one); "" is TCP.
	Listen string
	// HeapProfile and GoroutineProfile, when set, are where profiles of
	// the process are written once every node has started.
	HeapProfile, GoroutineProfile string
}

func scaleSize(quick bool) scaleConfig {
	if quick {
		return scaleConfig{Nodes: 20, Boot: 2, Batch: 10, Jobs: 5, Gap: 100 * time.Millisecond, D: 2, ConnsLow: 8, ConnsHigh: 16}
	}
	return scaleConfig{Nodes: 500, Boot: 5, Batch: 25, Jobs: 50, Gap: 500 * time.Millisecond, D: 2, ConnsLow: 16, ConnsHigh: 32}
}

// The two requesters' indexes; neither computes.
func (c scaleConfig) gossipReq() int  { return c.Boot }
func (c scaleConfig) sampledReq() int { return c.Boot + 1 }
func (c scaleConfig) computing() int  { return c.Nodes - 2 }

// runScale starts c.Nodes nodes, has one requester gossip its bid requests
// and the other sample c.D nodes, and reports, for each mode, the time
// from submission until the job is placed and the messages a job costs
// the whole network; and what a node costs the process.
func runScale(ctx context.Context, o Options, c scaleConfig) (_ map[string]any, err error) {
	if c.Nodes < c.Boot+3 {
		return nil, fmt.Errorf("%w: scale: %d nodes, want at least %d", ErrBadConfig, c.Nodes, c.Boot+3)
	}
	asked := c.Nodes
	c = fitNodes(o, c)
	began := time.Now()
	s, err := startScaleNet(ctx, o, c)
	if err != nil {
		return nil, err
	}
	defer closeInto(s, &err)
	res := map[string]any{"nodes": c.Nodes, "nodes_asked": asked, "sampled_d": c.D, "start_s": round3(time.Since(began).Seconds()),
		"sampled_candidates": s.nodes[c.sampledReq()].NetworkStats().Candidates}
	if err := s.footprint(c, res); err != nil {
		return nil, err
	}
	o.Log.Info("scale: network ready", "nodes", c.Nodes, "took", time.Since(began).Round(time.Millisecond), "rss_per_node_mb", res["rss_per_node_mb"])
	for _, mode := range []struct {
		name string
		req  *dms.DMS
	}{{"gossip", s.nodes[c.gossipReq()]}, {"sampled", s.nodes[c.sampledReq()]}} {
		if err := s.measure(ctx, o, c, mode.name, mode.req, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// scaleNet is the scenario's network.
type scaleNet struct {
	nodes   []*dms.DMS
	dir     string
	remove  bool
	rssBase float64 // MB, before the first node started
}

// startScaleNet makes the homes, then starts the bootstrap nodes one by
// one and the others in batches, and waits until the network is ready.
func startScaleNet(ctx context.Context, o Options, c scaleConfig) (_ *scaleNet, err error) {
	s := &scaleNet{dir: o.Dir}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "dms-scale-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		s.remove = true
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	homes, err := initHomes(ctx, s.dir, c.Nodes)
	if err != nil {
		return nil, err
	}
	if s.rssBase, err = settledRSS(); err != nil {
		return nil, err
	}
	s.nodes = make([]*dms.DMS, c.Nodes)
	boot := make([][]string, c.Boot)
	for i := range c.Boot {
		if err := s.start(ctx, c, homes, i, boot[:min(i, 1)]); err != nil {
			return nil, err
		}
		if boot[i], err = nodeAddrs(ctx, s.nodes[i]); err != nil {
			return nil, err
		}
	}
	for lo := c.Boot; lo < c.Nodes; lo += c.Batch {
		if err := s.startBatch(ctx, c, homes, lo, min(lo+c.Batch, c.Nodes), boot); err != nil {
			return nil, err
		}
	}
	o.Log.Info("scale: nodes started", "nodes", c.Nodes)
	return s, s.waitReady(ctx, o, c)
}

// initHomes creates n node homes under dir, a few at a time.
func initHomes(ctx context.Context, dir string, n int) ([]string, error) {
	homes := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2*runtime.GOMAXPROCS(0))
	for i := range homes {
		homes[i] = filepath.Join(dir, "node"+strconv.Itoa(i))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, errs[i] = dms.Init(ctx, homes[i], dms.InitOptions{BenchDuration: time.Millisecond})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bench: init: %w", err)
	}
	return homes, nil
}

// startBatch starts nodes lo to hi-1 at once, node i joining through
// bootstrap node i mod len(boot).
func (s *scaleNet) startBatch(ctx context.Context, c scaleConfig, homes []string, lo, hi int, boot [][]string) error {
	errs := make([]error, hi-lo)
	var wg sync.WaitGroup
	for i := lo; i < hi; i++ {
		wg.Go(func() { errs[i-lo] = s.start(ctx, c, homes, i, boot[i%len(boot):i%len(boot)+1]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// start starts node i, joining through the bootstrap nodes boot.
func (s *scaleNet) start(ctx context.Context, c scaleConfig, homes []string, i int, boot [][]string) error {
	opts := []dms.Option{
		dms.WithHome(homes[i]), dms.WithAPI(""), dms.WithListen(c.Listen),
		dms.WithCompute(i != c.gossipReq() && i != c.sampledReq()),
		dms.WithConnLimits(c.ConnsLow, c.ConnsHigh), dms.WithInMemoryStore(), dms.WithLease(scaleLease),
	}
	for _, b := range boot {
		opts = append(opts, dms.WithBootstrap(b...))
	}
	switch {
	case i == c.sampledReq():
		opts = append(opts, dms.WithBidSampling(c.D))
	case i == c.gossipReq():
		opts = append(opts, dms.WithBidSampling(0)) // gossip, whatever the network's size
	case i >= c.Boot:
		// A node that only computes need not serve the DHT: as a client
		// it is in no routing table, and keeps fewer connections.
		opts = append(opts, dms.WithDHTMode(dms.DHTClient))
	}
	d, err := dms.New(opts...)
	if err != nil {
		return fmt.Errorf("bench: node %d: %w", i, err)
	}
	if err := d.Start(ctx); err != nil {
		return errors.Join(fmt.Errorf("bench: node %d: %w", i, err), d.Close())
	}
	s.nodes[i] = d
	return nil
}

func nodeAddrs(ctx context.Context, d *dms.DMS) ([]string, error) {
	info, err := d.Node(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return info.Addrs, nil
}

// scaleReadyWait bounds the wait for the network to form.
const scaleReadyWait = 5 * time.Minute

// waitReady waits until every node has a peer on the bid-request topic
// (gossip reaches it), and the sampled requester knows 98% of the compute
// nodes from the DHT (the last provider records can take a
// re-advertisement, 30s and more, to be found). The gossip figures report
// how many nodes a bid request did reach.
func (s *scaleNet) waitReady(ctx context.Context, o Options, c scaleConfig) error {
	want := 1
	deadline := time.Now().Add(scaleReadyWait)
	for tick := 0; ; tick++ {
		lonely, known := 0, s.nodes[c.sampledReq()].NetworkStats().Candidates
		for _, d := range s.nodes {
			if d.NetworkStats().TopicPeers < want {
				lonely++
			}
		}
		if lonely == 0 && known >= c.computing()*49/50 {
			return nil
		}
		if tick%40 == 0 {
			o.Log.Info("scale: waiting for the network", "short_of_topic_peers", lonely, "candidates", known, "want", c.computing(), "fds", openFiles())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: after %s, %d nodes have fewer than %d topic peers, and the sampling requester knows %d of %d compute nodes",
				ErrNotReady, scaleReadyWait, lonely, want, known, c.computing())
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// footprint adds what the nodes cost the process: RSS and heap per node
// (after a GC, freed memory returned to the OS), goroutines per node.
func (s *scaleNet) footprint(c scaleConfig, res map[string]any) error {
	rss, err := settledRSS()
	if err != nil {
		return err
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	n := float64(len(s.nodes))
	res["rss_per_node_mb"] = round3((rss - s.rssBase) / n)
	res["heap_per_node_mb"] = round3(float64(m.HeapAlloc) / (1 << 20) / n)
	res["goroutines_per_node"] = round3(float64(runtime.NumGoroutine()) / n)
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		res["fds_per_node"] = round3(float64(len(fds)) / n)
	}
	return errors.Join(writeProfile("heap", c.HeapProfile), writeProfile("goroutine", c.GoroutineProfile))
}

// writeProfile writes the named runtime profile to path, if set.
func writeProfile(name, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return errors.Join(pprof.Lookup(name).WriteTo(f, 0), f.Close())
}

// settledRSS returns the process's resident set in MB after a GC that
// returns freed memory to the OS.
func settledRSS() (float64, error) {
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("bench: reading the RSS (Linux only): %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("bench: VmRSS %q: %w", rest, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("bench: no VmRSS in /proc/self/status")
}

// traffic sums what the nodes counted: messages sent, and bid requests
// delivered to their Nodes.
type traffic struct {
	copies, control, frames, delivered uint64
}

func (s *scaleNet) traffic() traffic {
	var t traffic
	for _, d := range s.nodes {
		st := d.NetworkStats()
		t.copies += st.GossipSent
		t.control += st.GossipControl
		t.frames += st.Messages() - st.GossipSent - st.GossipControl
		t.delivered += st.BidRequestsGossip + st.BidRequestsDirect
	}
	return t
}

// gossipSettle is how long gossipsub keeps advertising a message (IHAVE,
// for 3 heartbeats of 1s): the traffic of the last job is counted after it.
const gossipSettle = 4 * time.Second

// measure runs c.Jobs tiny jobs from req, one at a time, c.Gap apart (the
// losing bidders of one auction are released before the next), after two
// to warm up, and adds under keys prefixed with mode: latency percentiles
// from submission to placement (p50_ms, p99_ms) and to completion
// (done_p50_ms), and per job the messages in all, their parts, and the
// nodes the bid request reached.
func (s *scaleNet) measure(ctx context.Context, o Options, c scaleConfig, mode string, req *dms.DMS, res map[string]any) error {
	spec, err := scaleSpec(ctx, req)
	if err != nil {
		return err
	}
	want := []byte(tinyOutput)
	for range 2 {
		if r := runJob(ctx, req, spec, want); r.err != nil {
			return fmt.Errorf("bench: scale: %s warm-up: %w", mode, r.err)
		}
	}
	if err := sleepCtx(ctx, gossipSettle); err != nil {
		return err
	}
	before := s.traffic()
	runs := make([]run, 0, c.Jobs)
	for range c.Jobs {
		runs = append(runs, runJob(ctx, req, spec, want))
		if err := sleepCtx(ctx, c.Gap); err != nil {
			return err
		}
	}
	if err := sleepCtx(ctx, gossipSettle); err != nil {
		return err
	}
	scaleFigures(res, mode, runs, before, s.traffic())
	o.Log.Info("scale: measured", "mode", mode, "p50_ms", res[mode+"_p50_ms"], "msgs_per_job", res[mode+"_msgs_per_job"])
	return nil
}

// scaleSpec stores the tiny module on req and returns its job.
func scaleSpec(ctx context.Context, req *dms.DMS) (*jobs.Spec, error) {
	module, err := req.PutBlob(ctx, bytes.NewReader(tinywasm.Module(0, tinyOutput)))
	if err != nil {
		return nil, fmt.Errorf("bench: storing the module: %w", err)
	}
	return tinySpec(module)
}

// scaleFigures adds one mode's figures to res.
func scaleFigures(res map[string]any, mode string, runs []run, before, after traffic) {
	var placed, done []time.Duration
	for _, r := range runs {
		if r.err != nil {
			continue
		}
		placed = append(placed, placedAt(r).Sub(r.submitted))
		done = append(done, r.seen[types.JobCompleted].Sub(r.submitted))
	}
	p, d := newDist(placed), newDist(done)
	n := float64(max(1, len(runs)))
	per := func(a, b uint64) float64 { return round3(float64(b-a) / n) }
	res[mode+"_p50_ms"], res[mode+"_p99_ms"], res[mode+"_done_p50_ms"] = p.pct(50), p.pct(99), d.pct(50)
	res[mode+"_msgs_per_job"] = per(before.copies+before.control+before.frames, after.copies+after.control+after.frames)
	res[mode+"_gossip_copies_per_job"] = per(before.copies, after.copies)
	res[mode+"_gossip_control_per_job"] = per(before.control, after.control)
	res[mode+"_frames_per_job"] = per(before.frames, after.frames)
	res[mode+"_reached_per_job"] = per(before.delivered, after.delivered)
	withCounts(res, mode+"_", runs)
}

// placedAt is when the job was first seen placed (or past it).
func placedAt(r run) time.Time {
	for _, s := range []types.JobState{types.JobPlaced, types.JobRunning, types.JobCompleted} {
		if t, ok := r.seen[s]; ok {
			return t
		}
	}
	return r.done
}

// Close closes every node, a batch at a time, and removes the homes if
// the scenario made their directory.
func (s *scaleNet) Close() error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, d := range s.nodes {
		if d == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := d.Close(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if s.remove {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}

// scaleLease is every node's lease. Hundreds of nodes on two cores starve
// one another for CPU, well past the default second at times: a job must
// not be declared lost, and placed again, for that.
const scaleLease = 5 * time.Second

// The nodes listen on TCP. Each connection costs a file descriptor at both
// its ends, all in this process. A DHT server keeps about 50 connections
// however low its watermarks (Kademlia protects the peers of its two widest
// buckets, gossipsub those of its mesh), and up to twice as many while the
// network forms or while it gathers bids from every node: 200 such nodes
// hit the limit of 20 000 descriptors (a node failed to open its Wasm
// cache), and 120 a node fitted. The compute nodes now run as DHT clients
// (network.dht client), in no routing table: 500 nodes hold 32.6
// descriptors a node (2026-12-05), so 38 leaves a margin.
// QUIC needs one UDP socket a node whatever its connections, but costs
// more memory (22 MB a node against 17 MB over TCP, at 100 nodes) and far
// more CPU (TLS 1.3 handshakes with ML-KEM, user-space packets): 200 nodes
// over QUIC did not form a network on 2 cores within 5 minutes, 300 and
// 500 not within 20.
const (
	tcpListen  = "/ip4/127.0.0.1/tcp/0"
	fdsPerNode = 38
)

// fitNodes caps c.Nodes at what the process's open-file limit allows over
// TCP, when it is known; the "nodes" figure reports the nodes run.
func fitNodes(o Options, c scaleConfig) scaleConfig {
	if c.Listen == "" {
		c.Listen = tcpListen
	}
	limit := maxOpenFiles() / fdsPerNode
	if c.Listen == tcpListen && limit > 0 && limit < c.Nodes {
		o.Log.Warn("scale: too few file descriptors for the nodes asked: running fewer (raise ulimit -n)",
			"asked", c.Nodes, "running", max(limit, c.Boot+3), "max_open_files", maxOpenFiles())
		c.Nodes = max(limit, c.Boot+3)
	}
	return c
}

// maxOpenFiles reads the process's soft limit on open files (0 if unknown).
func maxOpenFiles() int {
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// openFiles counts the process's open file descriptors (-1 if unknown).
func openFiles() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(fds)
}

package dms

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/types"
)

// stateCollector reads, at each scrape, what a node already keeps: its
// jobs, flows and batches, its ledger, its gateway's pools, its host's
// refusals, resource manager and connections, and its database's sizes.
// It reads nothing before Start has set every part, nor once Close began.
type stateCollector struct{ d *DMS }

// infoTimeout bounds a scrape's wait for the Node actor's answer.
const infoTimeout = 2 * time.Second

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The metrics stateCollector reports (docs/observability.md).
var (
	descJobs           = desc("dms_jobs", "Jobs this node submitted that have not ended, by state: pending, bidding, placed, running.", "state")
	descFlows          = desc("dms_flows", "Flows this node runs that have not ended, by state.", "state")
	descBatches        = desc("dms_batches", "Batches this node submitted that have not ended, by state.", "state")
	descBatchesManaged = desc("dms_batches_managed", "Batches this node manages for their submitters.")

	descLedgerCPU    = desc("dms_ledger_cpu_cores", "This node's compute ledger, CPU in cores, by level: registered (offered), held (behind bids), locked (confirmed, not started), running.", "level")
	descLedgerMemory = desc("dms_ledger_memory_bytes", "This node's compute ledger, memory in bytes, by level: registered, held, locked, running.", "level")
	descLedgerDisk   = desc("dms_ledger_disk_bytes", "This node's compute ledger, disk in bytes, by level: registered, held, locked, running.", "level")
	descAllocations  = desc("dms_node_allocations", "Live allocations on this node, by state: locked, running.", "state")
	descHolds        = desc("dms_node_holds", "Bids of this node held, waiting for an Accept.")
	descDropped      = desc("dms_node_bid_requests_dropped_total", "Bid requests this node dropped because its actor's mailbox was full.")
	descWarm         = desc("dms_node_warm_instances", "Warm instances on this node taking calls.")
	descWarmCalls    = desc("dms_node_warm_calls_total", "Calls served by this node's warm instances that ended.")

	descPoolReady    = desc("dms_gateway_warm_instances", "Warm instances of each function of this node's gateway taking calls.", "account", "function")
	descPoolStarting = desc("dms_gateway_instances_starting", "Instances of each function being auctioned and started.", "account", "function")
	descPoolQueued   = desc("dms_gateway_queue_length", "Calls of each function waiting for a free warm instance.", "account", "function")
	descTasksLive    = desc("dms_gateway_tasks_live", "Tasks whose calls this node's gateway runs now (scheduled or running).")
	descKeyHashes    = desc("dms_gateway_key_hashes_total", "API keys this node's gateway hashed (argon2id) to verify them: one a key missing from its cache, one a wrong secret of an existing key.")
	descPoolInFlight = desc("dms_gateway_calls_in_flight", "Calls of each function running on its warm instances.", "account", "function")

	descRefused     = desc("dms_p2p_refused_total", "Inbound messages and streams refused, by channel (gossip, stream, call, forward, pair) and reason.", "channel", "reason")
	descBlocked     = desc("dms_p2p_blocked_total", "What the libp2p resource manager refused, by resource.", "resource")
	descRepairs     = desc("dms_p2p_gossip_repairs_total", "Connected peers handed back to gossipsub after it lost them, or made to announce their topics again after it forgot them.")
	descBans        = desc("dms_p2p_bans_total", "Peers banned for a gossip score below the graylist threshold.")
	descConns       = desc("dms_p2p_connections", "Open libp2p connections.")
	descPeers       = desc("dms_p2p_peers", "Peers this node has a connection to.")
	descCallStreams = desc("dms_p2p_call_streams", "Open long-lived multiplexed streams, by protocol (call and forward: warm-instance calls; pair: the request/response messages of a pair of peers) and direction.", "protocol", "direction")
	descRcmgrConns  = desc("dms_libp2p_rcmgr_connections", "Connections the libp2p resource manager accounts for, by scope (system, transient) and direction.", "scope", "direction")
	descRcmgrStrms  = desc("dms_libp2p_rcmgr_streams", "Streams the libp2p resource manager accounts for, by scope and direction.", "scope", "direction")
	descRcmgrFDs    = desc("dms_libp2p_rcmgr_fds", "File descriptors the libp2p resource manager accounts for, by scope.", "scope")
	descRcmgrMemory = desc("dms_libp2p_rcmgr_memory_bytes", "Memory reserved through the libp2p resource manager, by scope.", "scope")

	descLSM       = desc("dms_store_lsm_bytes", "Size of the database's LSM tree (badger), as badger last measured it.")
	descVlog      = desc("dms_store_vlog_bytes", "Size of the database's value log (badger), as badger last measured it.")
	descBlobs     = desc("dms_store_blobs", "Blobs in this node's blob store.")
	descBlobBytes = desc("dms_store_blob_bytes", "Bytes of the blobs in this node's blob store.")

	descReceiptsRefused = desc("dms_receipts_refused_total", "Usage receipts this node refused.")
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descJobs, descFlows, descBatches, descBatchesManaged,
		descLedgerCPU, descLedgerMemory, descLedgerDisk, descAllocations, descHolds, descDropped, descWarm, descWarmCalls,
		descPoolReady, descPoolStarting, descPoolQueued, descPoolInFlight, descTasksLive, descKeyHashes,
		descRefused, descBlocked, descRepairs, descBans, descConns, descPeers, descCallStreams,
		descRcmgrConns, descRcmgrStrms, descRcmgrFDs, descRcmgrMemory,
		descLSM, descVlog, descBlobs, descBlobBytes, descReceiptsRefused,
	} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	lsm, vlog := d.db.Size()
	blobs, blobBytes := d.blobs.Stats()
	gauge(ch, descLSM, float64(lsm))
	gauge(ch, descVlog, float64(vlog))
	gauge(ch, descBlobs, float64(blobs))
	gauge(ch, descBlobBytes, float64(blobBytes))
	counter(ch, descReceiptsRefused, float64(d.receiptsRefused.Load()))
	if !d.up.Load() || d.ctx.Err() != nil {
		return
	}
	c.collectWork(ch)
	c.collectNode(ch)
	c.collectPools(ch)
	collectHost(ch, d.host.Stats())
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// activeJobStates are the states dms_jobs reports, each even at zero.
var activeJobStates = []types.JobState{types.JobPending, types.JobBidding, types.JobPlaced, types.JobRunning}

// collectWork reports the jobs, flows and batches not ended.
func (c stateCollector) collectWork(ch chan<- prometheus.Metric) {
	d := c.d
	jobs := d.orch.Count()
	for _, s := range activeJobStates {
		gauge(ch, descJobs, float64(jobs[s]), string(s))
	}
	for s, n := range d.flows.count() {
		gauge(ch, descFlows, float64(n), s)
	}
	states, managed := d.batches.count()
	for s, n := range states {
		gauge(ch, descBatches, float64(n), s)
	}
	gauge(ch, descBatchesManaged, float64(managed))
}

// collectNode reports the ledger and allocations of a node that offers
// compute.
func (c stateCollector) collectNode(ch chan<- prometheus.Metric) {
	if c.d.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.d.ctx, infoTimeout)
	defer cancel()
	in, err := c.d.node.Info(ctx)
	if err != nil {
		return
	}
	for _, l := range []struct {
		level string
		r     types.Resources
	}{{"registered", in.Registered}, {"held", in.Held}, {"locked", in.LockedRes}, {"running", in.RunningRes}} {
		gauge(ch, descLedgerCPU, float64(l.r.CPU)/1000, l.level)
		gauge(ch, descLedgerMemory, float64(l.r.Memory), l.level)
		gauge(ch, descLedgerDisk, float64(l.r.Disk), l.level)
	}
	gauge(ch, descAllocations, float64(in.Locked), "locked")
	gauge(ch, descAllocations, float64(in.Running), "running")
	gauge(ch, descHolds, float64(in.Holds))
	counter(ch, descDropped, float64(in.Dropped))
	gauge(ch, descWarm, float64(in.Warm))
	counter(ch, descWarmCalls, float64(in.WarmCalls))
}

// collectPools reports the gateway's pools, a line per function.
func (c stateCollector) collectPools(ch chan<- prometheus.Metric) {
	if c.d.gw == nil {
		return
	}
	gauge(ch, descTasksLive, float64(c.d.gw.LiveCalls()))
	counter(ch, descKeyHashes, float64(c.d.gw.KeyHashes()))
	for _, p := range c.d.gw.Pools() {
		gauge(ch, descPoolReady, float64(p.Ready), p.Account, p.Function)
		gauge(ch, descPoolStarting, float64(p.Starting), p.Account, p.Function)
		gauge(ch, descPoolQueued, float64(p.Queued), p.Account, p.Function)
		gauge(ch, descPoolInFlight, float64(p.InFlight), p.Account, p.Function)
	}
}

// collectHost reports the host's counters (p2p.Stats), which p2p keeps.
func collectHost(ch chan<- prometheus.Metric, st p2p.Stats) {
	for channel, m := range map[string]map[p2p.Reason]uint64{
		"gossip": st.Gossip, "stream": st.Streams, "call": st.Calls.Refused, "forward": st.Forwards.Refused, "pair": st.Pairs.Refused,
	} {
		for r, n := range m {
			counter(ch, descRefused, float64(n), channel, string(r))
		}
	}
	b := st.Blocked
	for _, r := range []struct {
		name string
		n    uint64
	}{
		{"conns_in", b.ConnsIn}, {"conns_out", b.ConnsOut}, {"streams_in", b.StreamsIn}, {"streams_out", b.StreamsOut},
		{"peers", b.Peers}, {"protocols", b.Protocols}, {"services", b.Services}, {"memory", b.Memory},
	} {
		counter(ch, descBlocked, float64(r.n), r.name)
	}
	counter(ch, descRepairs, float64(st.GossipRepairs))
	counter(ch, descBans, float64(st.Bans))
	gauge(ch, descConns, float64(st.Conns))
	gauge(ch, descPeers, float64(st.Peers))
	gauge(ch, descCallStreams, float64(st.Calls.StreamsIn), "call", "in")
	gauge(ch, descCallStreams, float64(st.Calls.StreamsOut), "call", "out")
	gauge(ch, descCallStreams, float64(st.Forwards.StreamsIn), "forward", "in")
	gauge(ch, descCallStreams, float64(st.Forwards.StreamsOut), "forward", "out")
	gauge(ch, descCallStreams, float64(st.Pairs.StreamsIn), "pair", "in")
	gauge(ch, descCallStreams, float64(st.Pairs.StreamsOut), "pair", "out")
	for scope, s := range map[string]p2p.Scope{"system": st.System, "transient": st.Transient} {
		gauge(ch, descRcmgrConns, float64(s.ConnsIn), scope, "in")
		gauge(ch, descRcmgrConns, float64(s.ConnsOut), scope, "out")
		gauge(ch, descRcmgrStrms, float64(s.StreamsIn), scope, "in")
		gauge(ch, descRcmgrStrms, float64(s.StreamsOut), scope, "out")
		gauge(ch, descRcmgrFDs, float64(s.FD), scope)
		gauge(ch, descRcmgrMemory, float64(s.Memory), scope)
	}
}

// count returns how many unfinished flows are in each state.
func (fl *flows) count() map[string]int {
	fl.mu.Lock()
	runs := make([]*flowRun, 0, len(fl.runs))
	for _, r := range fl.runs {
		runs = append(runs, r)
	}
	fl.mu.Unlock()
	out := make(map[string]int)
	for _, r := range runs {
		r.mu.Lock()
		out[r.rec.State]++
		r.mu.Unlock()
	}
	return out
}

// count returns how many unfinished batches this node submitted are in
// each state, and how many it manages.
func (bs *batches) count() (map[string]int, int) {
	bs.mu.Lock()
	runs := make([]*batchRun, 0, len(bs.runs))
	for _, r := range bs.runs {
		runs = append(runs, r)
	}
	managed := len(bs.managed)
	bs.mu.Unlock()
	out := make(map[string]int)
	for _, r := range runs {
		r.mu.Lock()
		out[r.rec.State]++
		r.mu.Unlock()
	}
	return out, managed
}

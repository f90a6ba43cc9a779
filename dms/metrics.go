package dms

// Metrics: what a node does, in the Prometheus text format
// (docs/observability.md lists every metric).
//
// Invariants:
//   - Every DMS has its own registry, never Prometheus' global one: a
//     process that runs many nodes (tests, dms devstack, a researcher's
//     simulation) scrapes each apart, and no two collide.
//   - What already lives in memory or is already counted elsewhere (jobs
//     by state, the ledger, the pools, p2p's refusals, badger's sizes) is
//     read at scrape time by stateCollector, never counted twice. Only
//     events nothing else counts (auctions, attempts, bids, declines,
//     gateway requests and tasks) are counted as they happen: an atomic
//     add or a histogram observation, after the labelled child's lookup
//     (a hash and a read lock in client_golang), never a lock of ours nor
//     an allocation. The auction and the bid path pay that and no more
//     (BenchmarkMetricsEvents).
//   - Labels take values from closed sets (states, outcomes, reasons, route
//     patterns, status codes) or from what the operator creates (account and
//     function names): never job, allocation or peer IDs.
//   - libp2p's own Prometheus metrics stay off: its collectors are package
//     globals, so a registry per node would show the sums of every host in
//     the process. The resource manager and connections are read from this
//     node's host instead (p2p.Stats).

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// metrics holds a node's registry and the instruments counted as events
// happen. Its methods are safe for concurrent use.
type metrics struct {
	reg *prometheus.Registry

	auctions  *prometheus.CounterVec   // outcome
	attempts  *prometheus.CounterVec   // outcome
	jobsEnded *prometheus.CounterVec   // state
	placement prometheus.Histogram     // seconds from an attempt's start to its node's confirm
	run       *prometheus.HistogramVec // outcome: seconds from placed to ended
	bids      prometheus.Counter
	declines  *prometheus.CounterVec   // reason
	requests  *prometheus.CounterVec   // gateway requests: endpoint, code
	tasks     *prometheus.CounterVec   // gateway tasks ended: state
	calls     *prometheus.HistogramVec // gateway calls: endpoint
}

// Buckets, in seconds. A placement on a LAN takes milliseconds, a whole
// bid window seconds; runs go from a millisecond's wasm to hours; a call
// from under a millisecond to a function's timeout.
var (
	placementBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	runBuckets       = prometheus.ExponentialBuckets(.001, 4, 12) // 1ms to about 70 minutes
	callBuckets      = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// newMetrics makes d's registry: its event instruments, the collector of
// its state, and Go's runtime and process collectors.
func newMetrics(d *DMS) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		auctions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dms_auctions_total",
			Help: "Auctions this node ran as a requester, by outcome: placed, no_bid (no acceptable bid), unconfirmed (bids, but no winner confirmed), cancelled, interrupted (by a restart).",
		}, []string{"outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dms_job_attempts_total",
			Help: "Attempts (an auction and, if placed, a run) of this node's jobs that ended, by outcome: completed, failed, cancelled.",
		}, []string{"outcome"}),
		jobsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dms_jobs_ended_total",
			Help: "Jobs this node submitted that ended, by final state: completed, failed, cancelled.",
		}, []string{"state"}),
		placement: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dms_job_placement_seconds",
			Help:    "Time from the start of an attempt (the bid request) to its node's confirm, for attempts that placed the job.",
			Buckets: placementBuckets,
		}),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dms_job_run_seconds",
			Help:    "Time from a job's placement to the end of its attempt, as its requester saw it, by the attempt's outcome.",
			Buckets: runBuckets,
		}, []string{"outcome"}),
		bids: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dms_node_bids_total",
			Help: "Bids this node sent in answer to bid requests.",
		}),
		declines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dms_node_declines_total",
			Help: "Bid requests this node declined, by the check that refused: admission, executor, network, labels, energy, price, resources, cpu, memory, disk, gpus, host, other.",
		}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dms_gateway_requests_total",
			Help: "Requests to this node's gateway (its listener and its routes on the local API), by route pattern and HTTP status code.",
		}, []string{"endpoint", "code"}),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dms_gateway_tasks_ended_total",
			Help: "Tasks (one per function call) whose end this node's gateway recorded, by final state: completed, failed, stopped.",
		}, []string{"state"}),
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dms_gateway_call_duration_seconds",
			Help:    "Duration of function calls through the gateway (invoke and published endpoint routes), from request to response, by route pattern.",
			Buckets: callBuckets,
		}, []string{"endpoint"}),
	}
	m.reg.MustRegister(m.auctions, m.attempts, m.jobsEnded, m.placement, m.run, m.bids, m.declines, m.requests, m.tasks, m.calls,
		stateCollector{d: d},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

var _ orchestrator.Observer = (*metrics)(nil)

// Placed records how long an attempt took to place its job.
func (m *metrics) Placed(a orchestrator.Attempt) {
	m.placement.Observe(a.PlacedAt.Sub(a.StartedAt).Seconds())
	m.auctions.WithLabelValues("placed").Inc()
}

// AttemptEnded counts an attempt's outcome, its run if it placed the job,
// and its auction if it did not.
func (m *metrics) AttemptEnded(a orchestrator.Attempt) {
	m.attempts.WithLabelValues(string(a.Outcome)).Inc()
	if !a.PlacedAt.IsZero() {
		m.run.WithLabelValues(string(a.Outcome)).Observe(a.EndedAt.Sub(a.PlacedAt).Seconds())
		return
	}
	m.auctions.WithLabelValues(auctionOutcome(a)).Inc()
}

// auctionOutcome names how an attempt that placed nothing ended.
func auctionOutcome(a orchestrator.Attempt) string {
	switch {
	case a.Interrupted:
		return "interrupted"
	case a.Outcome == orchestrator.OutcomeCancelled:
		return "cancelled"
	case len(a.Unconfirmed) > 0:
		return "unconfirmed"
	default:
		return "no_bid"
	}
}

// jobEnded counts a job of this node that ended.
func (m *metrics) jobEnded(state types.JobState) { m.jobsEnded.WithLabelValues(string(state)).Inc() }

// sent counts a bid or a decline this node sends.
func (m *metrics) sent(msg types.Message) {
	switch msg := msg.(type) {
	case *types.Bid:
		m.bids.Inc()
	case *types.Decline:
		m.declines.WithLabelValues(declineReason(msg.Reasons)).Inc()
	}
}

// declineChecks are the first words of the reasons the node's checks and
// its ledger decline with (node.DefaultChecks, node's shortfall).
var declineChecks = map[string]bool{
	"admission": true, "executor": true, "network": true, "labels": true, "energy": true, "price": true,
	"resources": true, "cpu": true, "memory": true, "disk": true, "gpus": true, "host": true,
}

// declineReason reduces a decline's reasons to the check that gave the
// first, from a closed set: the reasons themselves carry numbers and names.
func declineReason(reasons []string) string {
	if len(reasons) == 0 {
		return "other"
	}
	word := reasons[0]
	if i := strings.IndexAny(word, ": "); i > 0 {
		word = word[:i]
	}
	if declineChecks[word] {
		return word
	}
	return "other"
}

// taskEnded counts a gateway task that ended (gateway.Config.TaskEnded).
func (m *metrics) taskEnded(s gateway.TaskState) { m.tasks.WithLabelValues(string(s)).Inc() }

// gateway wraps a gateway handler: it counts each request by the route
// pattern that served it and its status, and times the calls.
func (m *metrics) gateway(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		// The gateway's mux sets the pattern on r, the request it was given.
		route := r.Pattern
		if route == "" {
			route = "none"
		}
		m.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		if strings.Contains(route, "/invoke") || strings.HasPrefix(route, "/e/") {
			m.calls.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}
	})
}

// codeRecorder remembers the status a handler wrote.
type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer (to flush).
func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }

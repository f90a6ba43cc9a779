package dms

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/opendms/dms/dms/internal/tracing"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// CheckOTLPEndpoint returns an error saying what is wrong with an OTLP
// endpoint (traces.otlp_endpoint, WithOTLPEndpoint); "" is valid.
func CheckOTLPEndpoint(url string) error { return tracing.CheckEndpoint(url) }

// Bounds of what traces remembers besides the spans themselves.
const (
	maxPendingBids = 1024             // bid requests received and not answered yet
	pendingBidTTL  = 30 * time.Second // one not answered by then is forgotten
	maxJobPeers    = 64               // peers remembered per job, that bid or declined
	maxEndedJobs   = tracing.MaxTraces
)

// traces times what this node does for a job, on either side, as spans of
// the job's one trace (docs/observability.md). As a requester: the job
// (the root), submit, each auction, accept, invoke and wait. As a
// provider, under the requester's span its message named: the bid
// decision, the lock, the allocation and its phases (fetch, execute,
// store). And the gateway calls it traces (calltrace.go): their call and
// hop spans here, the call span on the provider. Its methods are safe for
// concurrent use and never block on I/O:
// the orchestrator's loop calls jobEnded.
type traces struct {
	t     *tracing.Tracer
	calls *callTraces // the traced calls through this node's gateway (calltrace.go)

	mu     sync.Mutex
	jobs   map[types.JobID]*jobTrace              // this node's running jobs
	ended  map[types.JobID][]string               // the peers of jobs that ended, at most maxEndedJobs
	order  []types.JobID                          // ended's jobs, oldest first
	bids   map[types.JobID]pendingBid             // bid requests this node has yet to answer
	allocs map[types.AllocationID]context.Context // the allocations this node runs, in their span
}

// jobTrace is a running job's open spans.
type jobTrace struct {
	ctx     context.Context // the job's root span
	root    trace.Span
	auction trace.Span // the auction in progress, if any
	peers   []string   // the peers that bid or declined, at most maxJobPeers
}

// pendingBid is a bid request received: its span starts then, in ctx,
// and is made when the node answers.
type pendingBid struct {
	ctx   context.Context
	began time.Time
}

func newTraces(t *tracing.Tracer, callSample float64) *traces {
	return &traces{
		t: t, calls: newCallTraces(callSample), jobs: make(map[types.JobID]*jobTrace), ended: make(map[types.JobID][]string),
		bids: make(map[types.JobID]pendingBid), allocs: make(map[types.AllocationID]context.Context),
	}
}

func jobAttr(id types.JobID) attribute.KeyValue { return attribute.String(tracing.JobKey, string(id)) }

// fail marks span as failed with err, if any, and ends it.
func fail(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// submitted starts job id's trace and its submit span; done ends the
// submit span, and the whole trace if the job could not be submitted.
func (x *traces) submitted(id types.JobID, name string) (done func(error)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.jobs[id] != nil {
		return func(error) {} // submitted again (a flow's job after a restart): the first submission traces it
	}
	ctx, root := x.t.Start(context.Background(), "job", trace.WithAttributes(jobAttr(id), attribute.String("name", name)))
	_, submit := x.t.Start(ctx, "submit", trace.WithAttributes(jobAttr(id)))
	x.jobs[id] = &jobTrace{ctx: ctx, root: root}
	return func(err error) {
		fail(submit, err)
		if err != nil {
			x.mu.Lock()
			delete(x.jobs, id)
			x.mu.Unlock()
			fail(root, err)
		}
	}
}

// child starts a span under job id's root; false if the job has no trace
// (one resumed after a restart).
func (x *traces) child(id types.JobID, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span, bool) {
	x.mu.Lock()
	j := x.jobs[id]
	x.mu.Unlock()
	if j == nil {
		return nil, nil, false
	}
	ctx, span := x.t.Start(j.ctx, name, trace.WithAttributes(append(attrs, jobAttr(id))...))
	return ctx, span, true
}

// auction starts an auction of job id, ending the one before, and
// returns the traceparent its bid request carries ("" for a job without
// a trace) and the span, to note what the publication reached.
func (x *traces) auction(id types.JobID) (string, trace.Span) {
	ctx, span, ok := x.child(id, "auction")
	if !ok {
		return "", nil
	}
	x.mu.Lock()
	if j := x.jobs[id]; j != nil {
		if j.auction != nil {
			j.auction.End()
		}
		j.auction = span
	}
	x.mu.Unlock()
	return tracing.Traceparent(ctx), span
}

// closeAuction ends job id's auction in progress, if any.
func (x *traces) closeAuction(id types.JobID) {
	x.mu.Lock()
	var span trace.Span
	if j := x.jobs[id]; j != nil {
		span, j.auction = j.auction, nil
	}
	x.mu.Unlock()
	if span != nil {
		span.End()
	}
}

// heard notes a peer that bid for, or declined, job id: a trace gathers
// its spans from it.
func (x *traces) heard(id types.JobID, peer string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if j := x.jobs[id]; j != nil && len(j.peers) < maxJobPeers && !slices.Contains(j.peers, peer) {
		j.peers = append(j.peers, peer)
	}
}

// jobEnded ends job id's trace, and remembers the peers it touched.
func (x *traces) jobEnded(info orchestrator.JobInfo) {
	x.closeAuction(info.ID)
	x.mu.Lock()
	j := x.jobs[info.ID]
	delete(x.jobs, info.ID)
	if j != nil {
		if _, ok := x.ended[info.ID]; !ok {
			x.order = append(x.order, info.ID)
		}
		x.ended[info.ID] = j.peers
		for len(x.order) > maxEndedJobs {
			delete(x.ended, x.order[0])
			x.order = x.order[1:]
		}
	}
	x.mu.Unlock()
	if j == nil {
		return
	}
	j.root.SetAttributes(attribute.String("state", string(info.State)), attribute.String("node", info.Node))
	if info.State != types.JobCompleted {
		j.root.SetStatus(codes.Error, info.Reason)
	}
	j.root.End()
}

// peers returns the peers job id touched that this node knows of: those
// that bid or declined.
func (x *traces) peers(id types.JobID) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if j := x.jobs[id]; j != nil {
		return append([]string(nil), j.peers...)
	}
	return append([]string(nil), x.ended[id]...)
}

// jobTrace returns job id's trace, while it runs or while its spans are kept.
func (x *traces) jobTrace(id types.JobID) (trace.TraceID, bool) {
	x.mu.Lock()
	j := x.jobs[id]
	x.mu.Unlock()
	if j != nil {
		return trace.SpanContextFromContext(j.ctx).TraceID(), true
	}
	return x.t.JobTrace(string(id))
}

// bidAsked notes a bid request from peer: the bid decision's span starts
// now, under the span its traceparent names.
func (x *traces) bidAsked(from string, req *types.BidRequest, now time.Time) {
	ctx := tracing.Remote(context.Background(), req.Trace, from)
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.bids) >= maxPendingBids {
		for id, b := range x.bids {
			if now.Sub(b.began) > pendingBidTTL {
				delete(x.bids, id)
			}
		}
		if len(x.bids) >= maxPendingBids {
			return
		}
	}
	x.bids[req.JobID] = pendingBid{ctx: ctx, began: now}
}

// bidSent makes the span of the decision msg (a Bid or a Decline) ends.
func (x *traces) bidSent(msg types.Message) {
	var id types.JobID
	var attrs []attribute.KeyValue
	switch m := msg.(type) {
	case *types.Bid:
		id = m.JobID
		attrs = []attribute.KeyValue{attribute.String("outcome", "bid"), attribute.String("price", m.Price.String())}
	case *types.Decline:
		id = m.JobID
		attrs = []attribute.KeyValue{attribute.String("outcome", "decline"), attribute.String("reasons", strings.Join(m.Reasons, "; "))}
	default:
		return
	}
	x.mu.Lock()
	b, ok := x.bids[id]
	delete(x.bids, id)
	x.mu.Unlock()
	if !ok {
		return
	}
	_, span := x.t.Start(b.ctx, "bid", trace.WithTimestamp(b.began), trace.WithAttributes(append(attrs, jobAttr(id))...))
	span.End()
}

// lock starts the span of an Accept from peer; done ends it with the answer.
func (x *traces) lock(from string, a *types.Accept) (done func(types.Message, error)) {
	_, span := x.t.Start(tracing.Remote(context.Background(), a.Trace, from), "lock",
		trace.WithAttributes(jobAttr(a.JobID), attribute.String("allocation", string(a.AllocationID))))
	return func(reply types.Message, err error) {
		if r, ok := reply.(*types.Reject); ok && err == nil {
			span.SetStatus(codes.Error, "rejected: "+r.Reason)
		}
		fail(span, err)
	}
}

// answered ends an accept's span with the node's answer.
func answered(span trace.Span, reply types.Message, err error) {
	switch m := reply.(type) {
	case *types.Confirm:
		span.SetAttributes(attribute.Int64("epoch", int64(m.Epoch)))
	case *types.Reject:
		span.SetStatus(codes.Error, "rejected: "+m.Reason)
	}
	fail(span, err)
}

// allocation starts the span of an allocation peer invoked; its phases
// (phase) are its children. end ends it with its last status (nil: none).
func (x *traces) allocation(from string, inv *types.Invocation) (end func(*types.Status, error)) {
	ctx, span := x.t.Start(tracing.Remote(context.Background(), inv.Trace, from), "allocation",
		trace.WithAttributes(jobAttr(inv.JobID), attribute.String("allocation", string(inv.AllocationID))))
	x.mu.Lock()
	x.allocs[inv.AllocationID] = ctx
	x.mu.Unlock()
	var once sync.Once
	return func(st *types.Status, err error) {
		once.Do(func() {
			x.mu.Lock()
			delete(x.allocs, inv.AllocationID)
			x.mu.Unlock()
			if st != nil {
				statusAttrs(span, st)
			}
			fail(span, err)
		})
	}
}

// statusAttrs notes an allocation's final status on span.
func statusAttrs(span trace.Span, st *types.Status) {
	span.SetAttributes(attribute.String("state", string(st.State)))
	if st.Result != nil {
		span.SetAttributes(attribute.Int("exit_code", st.Result.ExitCode))
	}
	if st.State == types.AllocFailed {
		span.SetStatus(codes.Error, st.Reason)
	}
}

// phase makes the span of a phase of an allocation's run that began then
// and ended now (node.Config.Phase).
func (x *traces) phase(alloc types.AllocationID, name string, began time.Time, err error) {
	x.mu.Lock()
	ctx, ok := x.allocs[alloc]
	x.mu.Unlock()
	if !ok {
		return
	}
	_, span := x.t.Start(ctx, name, trace.WithTimestamp(began))
	fail(span, err)
}

// tracedStream is an invocation's status stream, timed by the requester's
// wait span: from the open stream to the allocation's final status.
type tracedStream struct {
	orchestrator.StatusStream
	span trace.Span
}

func (s *tracedStream) Recv(ctx context.Context) (*types.Status, error) {
	st, err := s.StatusStream.Recv(ctx)
	switch {
	case err != nil:
		fail(s.span, err)
	case st.State.Terminal():
		statusAttrs(s.span, st)
		s.span.End()
	}
	return st, err
}

func (s *tracedStream) Close() error {
	s.span.End() // a no-op once ended
	return s.StatusStream.Close()
}

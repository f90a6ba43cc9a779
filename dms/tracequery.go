package dms

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/dms/internal/tracing"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// traceWait bounds how long JobTrace waits for the nodes it asks.
const traceWait = 3 * time.Second

// traceReplyLimit bounds an answer to a trace query: within an envelope,
// with room for its seal.
const traceReplyLimit = types.MaxEnvelopeSize - 4<<10

// serveTraces answers the trace queries of TraceProtocol: a peer gets the
// spans of the trace that its own messages started on this node, and
// nothing of anyone else's (a trace ID is no secret: bid requests travel
// on gossip).
func (d *DMS) serveTraces() {
	d.host.Handle(p2p.TraceProtocol, func(_ context.Context, from string, _ *types.Envelope, msg types.Message) (types.Message, error) {
		q, ok := msg.(*types.TraceQuery)
		if !ok {
			return nil, fmt.Errorf("%w: %s on this protocol", errUnexpected, msg.Kind())
		}
		spans := types.TraceSpans{Spans: []types.Span{}}
		if id, err := trace.TraceIDFromHex(q.TraceID); err == nil {
			spans = tracing.Fit(d.traces.t.Spans(id, from), traceReplyLimit)
		}
		return &spans, nil
	})
}

// JobTrace gathers the spans of one of this node's jobs: its own, and
// those of every node the job touched (that bid, declined, or was offered
// or ran it), asked at once over TraceProtocol. A node that does not
// answer within traceWait is reported in the trace's Nodes, with why.
func (d *DMS) JobTrace(ctx context.Context, id string) (api.Trace, error) {
	if err := d.running(); err != nil {
		return api.Trace{}, err
	}
	info, err := d.jobInfo(id)
	if err != nil {
		return api.Trace{}, err
	}
	tid, ok := d.traces.jobTrace(info.ID)
	if !ok {
		return api.Trace{}, fmt.Errorf("%w: job %q has no trace kept here (it was submitted before this node started, or its spans made room for newer ones)", api.ErrNotFound, id)
	}
	out := d.gatherTrace(ctx, tid, jobPeers(info, d.traces.peers(info.ID), d.host.ID()))
	out.Job = id
	return out, nil
}

// gatherTrace gathers the spans of trace id: this node's own, and those
// each of peers (this node excluded) answers with, sorted by start.
func (d *DMS) gatherTrace(ctx context.Context, id trace.TraceID, peers []string) api.Trace {
	self := d.host.ID()
	own := d.traces.t.Spans(id, "")
	out := api.Trace{TraceID: id.String(), Nodes: []api.TraceNode{{Node: self, Spans: len(own.Spans), Truncated: own.Truncated}}}
	out.Spans = appendSpans(out.Spans, own.Spans, self)
	nodes, spans := d.askTraces(ctx, id, peers)
	out.Nodes = append(out.Nodes, nodes...)
	for i, s := range spans {
		out.Spans = appendSpans(out.Spans, s, peers[i])
	}
	slices.SortStableFunc(out.Spans, func(a, b api.Span) int { return a.Start.Compare(b.Start) })
	return out
}

// jobPeers lists the peers a job touched, but self: those that bid or
// declined, and those its attempts were offered to or ran on.
func jobPeers(info orchestrator.JobInfo, heard []string, self string) []string {
	peers := heard
	for _, a := range info.Attempts {
		peers = append(append(peers, a.Node), a.Unconfirmed...)
	}
	slices.Sort(peers)
	peers = slices.Compact(peers)
	return slices.DeleteFunc(peers, func(p string) bool { return p == "" || p == self })
}

// askTraces asks each peer for its spans of trace id, all at once, and
// returns what each said: nodes[i] and spans[i] are peers[i]'s.
func (d *DMS) askTraces(ctx context.Context, id trace.TraceID, peers []string) ([]api.TraceNode, [][]types.Span) {
	ctx, cancel := context.WithTimeout(ctx, traceWait)
	defer cancel()
	nodes, spans := make([]api.TraceNode, len(peers)), make([][]types.Span, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			nodes[i] = api.TraceNode{Node: p}
			reply, err := d.host.Request(ctx, p, nil, p2p.TraceProtocol, &types.TraceQuery{TraceID: id.String()})
			got, ok := reply.(*types.TraceSpans)
			if err == nil && !ok {
				err = fmt.Errorf("dms: answered a trace query with %T", reply)
			}
			if err != nil {
				nodes[i].Error = err.Error()
				return
			}
			spans[i] = ofTrace(got.Spans, id.String())
			nodes[i].Spans, nodes[i].Truncated = len(spans[i]), got.Truncated || len(spans[i]) < len(got.Spans)
		})
	}
	wg.Wait()
	return nodes, spans
}

// ofTrace keeps the spans a peer sent that belong to trace id, at most
// types.MaxTraceSpans: a peer's answer is not trusted to be about it.
func ofTrace(spans []types.Span, id string) []types.Span {
	spans = slices.DeleteFunc(spans, func(s types.Span) bool { return s.TraceID != id })
	return spans[:min(len(spans), types.MaxTraceSpans)]
}

func appendSpans(out []api.Span, spans []types.Span, node string) []api.Span {
	out = slices.Grow(out, len(spans))
	for _, s := range spans {
		out = append(out, api.Span{Span: s, Node: node})
	}
	return out
}

package dashboard

import (
	"context"
	"fmt"
	"math"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/graph"
	"github.com/opendms/dms/types"
)

// maxRows bounds the rows of a list page: the newest are shown.
const maxRows = 200

// nodeData is the node's page: its description and a bar per dimension.
type nodeData struct {
	Info api.NodeInfo
	Dims []dim
}

// dim is one dimension of the ledger, as a stacked bar of its registered
// capability: locked (running or waiting to), held (by bids), available.
// The widths and offsets are percentages of Registered.
type dim struct {
	Name                                  string
	Registered, Locked, Held, Avail       string
	LockedW, HeldX, HeldW, AvailX, AvailW float64
}

func (d *Dashboard) nodeView(ctx context.Context, _ string) (any, error) {
	n, err := d.svc.Node(ctx)
	if err != nil {
		return nil, err
	}
	locked := n.Used.Sub(n.Held)
	cpu := func(v int64) string { return types.MilliCPU(v).String() }
	size := func(v int64) string { return types.Bytes(v).String() }
	dims := []dim{
		newDim("CPU", int64(n.Registered.CPU), int64(locked.CPU), int64(n.Held.CPU), int64(n.Available.CPU), cpu),
		newDim("Memory", int64(n.Registered.Memory), int64(locked.Memory), int64(n.Held.Memory), int64(n.Available.Memory), size),
		newDim("Disk", int64(n.Registered.Disk), int64(locked.Disk), int64(n.Held.Disk), int64(n.Available.Disk), size),
	}
	if n.Registered.GPUs > 0 {
		gpus := func(v int64) string { return fmt.Sprint(v) }
		dims = append(dims, newDim("GPUs", int64(n.Registered.GPUs), int64(locked.GPUs), int64(n.Held.GPUs), int64(n.Available.GPUs), gpus))
	}
	return nodeData{Info: n, Dims: dims}, nil
}

func newDim(name string, reg, locked, held, avail int64, f func(int64) string) dim {
	pct := func(v int64) float64 {
		if reg <= 0 || v <= 0 {
			return 0
		}
		return math.Round(min(100, 100*float64(v)/float64(reg))*10) / 10
	}
	x := dim{Name: name, Registered: f(reg), Locked: f(max(locked, 0)), Held: f(held), Avail: f(avail)}
	x.LockedW, x.HeldW, x.AvailW = pct(locked), pct(held), pct(avail)
	x.HeldX = x.LockedW
	x.AvailX = min(100, x.HeldX+x.HeldW)
	x.AvailW = min(x.AvailW, 100-x.AvailX)
	return x
}

// peersData is the peer graph: this node at the centre, its connected
// peers around it, as laid out by graph.Star.
type peersData struct {
	Self  string
	Peers []peerDot
}

// peerDot is a connected peer and where it is drawn.
type peerDot struct {
	api.Peer
	X, Y float64
}

// peerRadius is the radius of the peer graph's circle; the drawing's
// view box is set around it in peers.html.
const peerRadius = 120

func (d *Dashboard) peersView(ctx context.Context, _ string) (any, error) {
	n, err := d.svc.Node(ctx)
	if err != nil {
		return nil, err
	}
	peers, err := d.svc.Peers(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(peers))
	for i, p := range peers {
		ids[i] = p.ID
	}
	pos := graph.Star(n.PeerID, ids, peerRadius)
	out := peersData{Self: n.PeerID}
	for _, p := range peers {
		if pt, ok := pos[p.ID]; ok && p.ID != n.PeerID {
			out.Peers = append(out.Peers, peerDot{Peer: p, X: pt.X, Y: pt.Y})
		}
	}
	return out, nil
}

func (d *Dashboard) jobsView(ctx context.Context, _ string) (any, error) {
	jobs, err := d.svc.ListJobs(ctx)
	return jobs[:min(len(jobs), maxRows)], err
}

func (d *Dashboard) jobView(ctx context.Context, id string) (any, error) {
	return d.svc.GetJob(ctx, id)
}

func (d *Dashboard) flowsView(ctx context.Context, _ string) (any, error) {
	flows, err := d.svc.ListFlows(ctx)
	return flows[:min(len(flows), maxRows)], err
}

// flowData is a flow's page: the flow, and its DAG drawn in layers.
type flowData struct {
	Flow    api.Flow
	Boxes   []stepBox
	Arrows  []arrow
	ViewBox string
	Width   float64 // the drawing's natural width in CSS pixels: a narrow DAG is not blown up
}

// stepBox is a step drawn at (X, Y), its box's centre.
type stepBox struct {
	api.FlowStep
	X, Y float64
}

// arrow is an edge from one step's box to another's.
type arrow struct{ X1, Y1, X2, Y2 float64 }

// The size of a step's box and the space between layers and boxes.
const (
	boxW, boxH = 150.0, 52.0
	gapX, gapY = 170.0, 100.0
)

func (d *Dashboard) flowView(ctx context.Context, id string) (any, error) {
	f, err := d.svc.GetFlow(ctx, id)
	if err != nil {
		return nil, err
	}
	g := graph.New[string]()
	for _, s := range f.Steps {
		g.AddNode(s.Name)
		for _, n := range s.Needs {
			g.AddEdge(n, s.Name)
		}
	}
	layers, err := g.Layers()
	if err != nil {
		return nil, err // a flow that runs has no cycle
	}
	pos := graph.Grid(layers, gapX, gapY)
	out := flowData{Flow: f}
	left, right, bottom := 0.0, 0.0, 0.0
	for _, s := range f.Steps {
		p := pos[s.Name]
		out.Boxes = append(out.Boxes, stepBox{FlowStep: s, X: p.X, Y: p.Y})
		left, right, bottom = min(left, p.X), max(right, p.X), max(bottom, p.Y)
		for _, n := range s.Needs {
			q := pos[n]
			out.Arrows = append(out.Arrows, arrow{X1: q.X, Y1: q.Y + boxH/2, X2: p.X, Y2: p.Y - boxH/2 - 4})
		}
	}
	const m = 8.0 // margin
	out.Width = right - left + boxW + 2*m
	out.ViewBox = fmt.Sprintf("%g %g %g %g", left-boxW/2-m, -boxH/2-m, out.Width, bottom+boxH+2*m)
	return out, nil
}

// batchRow is a batch with its progress: units ended of all.
type batchRow struct {
	api.Batch
	Ended int
}

func (d *Dashboard) batchesView(ctx context.Context, _ string) (any, error) {
	batches, err := d.svc.ListBatches(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]batchRow, 0, min(len(batches), maxRows))
	for _, b := range batches[:min(len(batches), maxRows)] {
		out = append(out, batchRow{Batch: b, Ended: b.Counts.Completed + b.Counts.Failed})
	}
	return out, nil
}

// accountData is what the gateway holds of one account.
type accountData struct {
	Account   gateway.Account
	Functions []gateway.Function
	Endpoints []gateway.Endpoint
	Tasks     []gateway.Task
	Invoices  []gateway.InvoiceSummary
}

// gatewayData is the gateway's pages: nil Accounts and Missing when the
// node has none.
type gatewayData struct {
	Missing  bool
	Accounts []accountData
}

// recentTasks is how many of each account's tasks the page shows.
const recentTasks = 20

func (d *Dashboard) gatewayView(ctx context.Context, _ string) (any, error) {
	return d.accounts(ctx, func(ctx context.Context, a *accountData) error {
		s, err := d.gw.As(ctx, a.Account.Name)
		if err != nil {
			return err
		}
		if a.Functions, err = s.ListFunctions(ctx, gateway.Query{}); err != nil {
			return err
		}
		if a.Endpoints, err = s.ListEndpoints(ctx, gateway.Query{}); err != nil {
			return err
		}
		a.Tasks, err = s.ListTasks(ctx, gateway.TaskQuery{Limit: recentTasks})
		return err
	})
}

func (d *Dashboard) invoicesView(ctx context.Context, _ string) (any, error) {
	return d.accounts(ctx, func(ctx context.Context, a *accountData) error {
		var err error
		a.Invoices, err = d.gw.Invoices(ctx, a.Account.Name)
		return err
	})
}

// accounts reads each of the gateway's accounts with fill.
func (d *Dashboard) accounts(ctx context.Context, fill func(context.Context, *accountData) error) (gatewayData, error) {
	if d.gw == nil {
		return gatewayData{Missing: true}, nil
	}
	accts, err := d.gw.ListAccounts(ctx)
	if err != nil {
		return gatewayData{}, err
	}
	out := gatewayData{Accounts: make([]accountData, len(accts))}
	for i, a := range accts {
		out.Accounts[i].Account = a
		if err := fill(ctx, &out.Accounts[i]); err != nil {
			return gatewayData{}, err
		}
	}
	return out, nil
}

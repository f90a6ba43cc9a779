package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

// run modes of a fake node, for what happens after an invocation.
const (
	complete = "complete" // reports running, then completed
	die      = "die"      // reports running, then the stream breaks and the node goes silent
	hang     = "hang"     // reports running, with heartbeats, until cancelled
	silent   = "silent"   // reports running, then goes quiet on an open stream: cut off; releases do not reach it
)

// fakeBeat is how often a fake node repeats its running status.
const fakeBeat = 20 * time.Millisecond

// fakeNode is an in-memory node: it bids when the job fits, confirms every
// accept, and plays its mode when invoked.
type fakeNode struct {
	peer       string
	offer      types.Resources
	price      int64 // whole credits per core-hour
	mode       string
	slowAccept bool // never answers an accept
}

// fakeNet is a hand-written Network over fake nodes. It delivers bids and
// declines synchronously from Publish.
type fakeNet struct {
	o     *Orchestrator
	nodes []*fakeNode

	mu      sync.Mutex
	dead    map[string]bool
	cancels []types.Cancel
	changed chan struct{} // closed and replaced on every Cancel
	running map[types.AllocationID]*fakeStream
	cut     map[types.AllocationID]*fakeStream  // silent nodes' streams
	replies map[types.AllocationID]types.Status // what Cancel answers, when set
	leases  []time.Duration                     // the lease of every invocation
	opened  int
	closed  int
	epoch   uint64
	publish map[types.JobID]int // bid requests per job: the attempt, in allocation IDs
	gate    chan struct{}       // when set, Publish waits for it to close
	// sending, when set, is called as an Invoke or a Cancel reaches the
	// network, before the fake node acts on it.
	sending func(kind types.Kind, alloc types.AllocationID)
}

func newFakeNet(nodes ...*fakeNode) *fakeNet {
	return &fakeNet{nodes: nodes, dead: map[string]bool{}, running: map[types.AllocationID]*fakeStream{},
		cut: map[types.AllocationID]*fakeStream{}, replies: map[types.AllocationID]types.Status{}, changed: make(chan struct{}),
		publish: map[types.JobID]int{}}
}

// fakeAlloc is the allocation a fake node bids for the attempt-th request
// of job: "<job>-a<attempt>-<peer>".
func fakeAlloc(job types.JobID, attempt int, peer string) types.AllocationID {
	return types.AllocationID(fmt.Sprintf("%s-a%d-%s", job, attempt, peer))
}

func (n *fakeNet) node(peer string) *fakeNode {
	for _, nd := range n.nodes {
		if nd.peer == peer {
			return nd
		}
	}
	return nil
}

func (n *fakeNet) Publish(ctx context.Context, req *types.BidRequest, _ bool) ([]string, error) {
	if n.gate != nil {
		select {
		case <-n.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	n.mu.Lock()
	n.publish[req.JobID]++
	attempt := n.publish[req.JobID]
	n.mu.Unlock()
	var reached []string // every node, the dead ones too: a node cut off still looks subscribed
	for _, nd := range n.nodes {
		n.mu.Lock()
		dead := n.dead[nd.peer]
		n.mu.Unlock()
		switch short := req.Resources.Shortfall(nd.offer); {
		case dead:
		case len(short) > 0:
			n.o.HandleDecline(&types.Decline{JobID: req.JobID, Node: types.NodeID{PeerID: nd.peer}, Reasons: short})
		default:
			n.o.HandleBid(&types.Bid{JobID: req.JobID, Node: types.NodeID{PeerID: nd.peer}, Allocation: fakeAlloc(req.JobID, attempt, nd.peer),
				Price: types.Credits(nd.price) * types.Credit, Score: 1, Load: 0.5})
		}
		reached = append(reached, nd.peer)
	}
	return reached, nil
}

func (n *fakeNet) Accept(ctx context.Context, peer string, _ []string, a *types.Accept) (types.Message, error) {
	nd := n.node(peer)
	if nd == nil {
		return nil, fmt.Errorf("no route to %s", peer)
	}
	if nd.slowAccept {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.epoch++
	return &types.Confirm{JobID: a.JobID, AllocationID: a.AllocationID, Epoch: n.epoch, LockExpiry: time.Now().Add(time.Minute)}, nil
}

func (n *fakeNet) Invoke(_ context.Context, peer string, _ []string, inv *types.Invocation) (StatusStream, error) {
	if n.sending != nil {
		n.sending(types.KindInvocation, inv.AllocationID)
	}
	nd := n.node(peer)
	st := func(s types.AllocationState) *types.Status {
		return &types.Status{JobID: inv.JobID, AllocationID: inv.AllocationID, State: s}
	}
	s := &fakeStream{net: n, ch: make(chan *types.Status, 4), beat: st(types.AllocRunning)}
	s.ch <- st(types.AllocRunning)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.opened++
	switch nd.mode {
	case complete:
		done := st(types.AllocCompleted)
		done.Result = &types.Result{ExitCode: 0, Stdout: "bafy-" + peer}
		s.ch <- done
		close(s.ch)
	case die:
		n.dead[peer] = true
		s.err = errors.New("stream reset")
		close(s.ch)
	case hang:
		n.running[inv.AllocationID] = s
	case silent:
		s.beat = nil
		n.dead[peer] = true // cut off: it hears no more bid requests
		n.cut[inv.AllocationID] = s
	}
	n.leases = append(n.leases, inv.Lease)
	return s, nil
}

// finishLate makes a silent node's allocation report completed, as a node
// cut off would once the cut heals.
func (n *fakeNet) finishLate(alloc types.AllocationID, job types.JobID, stdout string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.cut[alloc]
	delete(n.cut, alloc)
	s.ch <- &types.Status{JobID: job, AllocationID: alloc, State: types.AllocCompleted, Result: &types.Result{Stdout: stdout}}
	close(s.ch)
}

func (n *fakeNet) Cancel(_ context.Context, peer string, _ []string, c *types.Cancel) (*types.Status, error) {
	if n.sending != nil {
		n.sending(types.KindCancel, c.AllocationID)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cancels = append(n.cancels, *c)
	close(n.changed)
	n.changed = make(chan struct{})
	if n.cut[c.AllocationID] != nil {
		return nil, errors.New("no route to " + peer)
	}
	if r, ok := n.replies[c.AllocationID]; ok {
		return &r, nil
	}
	if s := n.running[c.AllocationID]; s != nil {
		delete(n.running, c.AllocationID)
		st := &types.Status{JobID: c.JobID, AllocationID: c.AllocationID, State: types.AllocCancelled, Reason: c.Reason}
		s.ch <- st
		close(s.ch)
		return st, nil
	}
	return nil, nil
}

// waitReleased waits until the orchestrator released alloc, and returns every
// release so far.
func (n *fakeNet) waitReleased(t *testing.T, alloc types.AllocationID) []types.Cancel {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		n.mu.Lock()
		found := slices.ContainsFunc(n.cancels, func(c types.Cancel) bool { return c.AllocationID == alloc })
		changed := n.changed
		n.mu.Unlock()
		if found {
			return n.released()
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s not released within %s; released %+v", alloc, waitLimit, n.released())
		}
	}
}

func (n *fakeNet) released() []types.Cancel {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]types.Cancel(nil), n.cancels...)
}

func (n *fakeNet) streams() (opened, closed int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opened, n.closed
}

type fakeStream struct {
	net  *fakeNet
	ch   chan *types.Status
	err  error
	beat *types.Status // repeated every fakeBeat while no other status comes; nil: silent
}

func (s *fakeStream) Recv(ctx context.Context) (*types.Status, error) {
	var heartbeat <-chan time.Time
	if s.beat != nil {
		heartbeat = time.After(fakeBeat)
	}
	select {
	case <-heartbeat:
		st := *s.beat
		return &st, nil
	case st, ok := <-s.ch:
		if !ok && s.err != nil {
			return nil, s.err
		}
		if !ok {
			return nil, io.EOF
		}
		return st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *fakeStream) Close() error {
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	s.net.closed++
	return nil
}

// memStore records every saved record; while fail is set, it refuses them.
type memStore struct {
	mu    sync.Mutex
	saved []Record
	fail  error
}

func (s *memStore) SaveJobs(recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.saved = append(s.saved, recs...)
	return nil
}

// latest returns the last record saved of every job.
func (s *memStore) latest() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := map[types.JobID]int{}
	var out []Record
	for _, rec := range s.saved {
		if i, ok := last[rec.ID]; ok {
			out[i] = rec
			continue
		}
		last[rec.ID] = len(out)
		out = append(out, rec)
	}
	return out
}

func (s *memStore) revisions(id types.JobID) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for _, info := range s.saved {
		if info.ID == id {
			out = append(out, info.Revision)
		}
	}
	return out
}

// submitWatch submits spec and watches the job from its first state.
func submitWatch(t *testing.T, o *Orchestrator, spec JobSpec) (JobInfo, <-chan JobInfo) {
	t.Helper()
	info, err := o.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := o.Watch(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	return info, ch
}

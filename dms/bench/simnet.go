package bench

import (
	"container/list"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// meshNet is the simulate scenario's network (see simulate.go for the
// model): a vertex is a compute node (0 to n-1, as in sim.order) or a
// requester (n and up).
type meshNet struct {
	s     *sim
	mode  string
	rng   *rand.Rand // delays, losses and samples
	seed  uint64     // of the pairs' RTTs
	n     int
	index map[string]int32 // peer -> vertex
	mesh  [][]int32        // of the compute nodes
	reqs  []*smRequester   // by vertex - n
	// cands lists the candidates, highest CPU class first, so that those
	// of class c or more are cands[:atLeast[c]].
	cands   []smCandidate
	atLeast [p2p.CPUClasses + 1]int
	dist    []time.Duration // a flood's arrival at each node; -1: not yet
	rtts    rttHist
}

var _ simNet = (*meshNet)(nil)

// smCandidate is a compute node as a requester's candidate cache lists it.
type smCandidate struct {
	vertex int32 // -1: a node that left
	class  int
}

// smRequester is what a requester's host keeps: its connections and the
// candidates that failed to take a bid request.
type smRequester struct {
	kept   []int32 // connected for good (bootstrap, DHT)
	conns  connTable
	failed map[int]time.Duration // candidate -> when a send to it failed
}

// newMeshNet builds the mesh, the candidates and the requesters' first
// peers of s's nodes, from c's seed: the same in every mode.
func newMeshNet(s *sim, c smConfig) *meshNet {
	m := &meshNet{
		s: s, mode: c.mode, rng: rand.New(rand.NewPCG(c.seed, 2)), seed: c.seed, n: len(s.order),
		index: make(map[string]int32, len(s.order)+len(s.cfg.requesters)), dist: make([]time.Duration, len(s.order)),
	}
	for i, n := range s.order {
		m.index[n.peer] = int32(i)
	}
	build := rand.New(rand.NewPCG(c.seed, 4))
	m.mesh = gossipMesh(build, m.n)
	for i, r := range s.cfg.requesters {
		m.index[r] = int32(m.n + i)
		var kept []int32
		for len(kept) < min(simulateKept, m.n) {
			if v := int32(build.IntN(m.n)); !slices.Contains(kept, v) {
				kept = append(kept, v)
			}
		}
		m.reqs = append(m.reqs, &smRequester{kept: kept, conns: newConnTable(simulateConns - simulateKept), failed: map[int]time.Duration{}})
	}
	m.listCandidates(build)
	return m
}

// gossipMesh grafts, for each node in a random order, random peers until
// it has gossipD; a peer that has gossipDhi refuses.
func gossipMesh(rng *rand.Rand, n int) [][]int32 {
	mesh := make([][]int32, n)
	for _, v := range rng.Perm(n) {
		for tries := 0; len(mesh[v]) < gossipD && tries < 20*gossipD; tries++ {
			w := rng.IntN(n)
			if w == v || len(mesh[w]) >= gossipDhi || slices.Contains(mesh[v], int32(w)) {
				continue
			}
			mesh[v], mesh[w] = append(mesh[v], int32(w)), append(mesh[w], int32(v))
		}
	}
	return mesh
}

// listCandidates lists every compute node under its CPU class, and one
// listing in simulateGone more for nodes that left, sized as nodes are.
func (m *meshNet) listCandidates(rng *rand.Rand) {
	for i, n := range m.s.order {
		m.cands = append(m.cands, smCandidate{vertex: int32(i), class: p2p.CPUClass(n.m.Ledger().Registered().CPU)})
	}
	for range m.n / simulateGone {
		m.cands = append(m.cands, smCandidate{vertex: -1, class: p2p.CPUClass(drawNode(rng).CPU)})
	}
	slices.SortStableFunc(m.cands, func(a, b smCandidate) int { return b.class - a.class })
	for _, x := range m.cands {
		for c := 0; c <= x.class; c++ {
			m.atLeast[c]++
		}
	}
}

func (m *meshNet) requester(v int32) *smRequester { return m.reqs[int(v)-m.n] }

// send carries a message between a requester and a node once their
// connection is up.
func (m *meshNet) send(from, to string, j *simJob, frames int, deliver func()) {
	a, b := m.index[from], m.index[to]
	j.frames += frames
	m.s.after(m.link(a, b)+m.oneWay(a, b), deliver)
}

// link returns how long until a and b, a requester and a node, are
// connected, dialing now if they are not.
func (m *meshNet) link(a, b int32) time.Duration {
	r, v := a, b
	if r < int32(m.n) {
		r, v = b, a
	}
	req := m.requester(r)
	if slices.Contains(req.kept, v) {
		return 0
	}
	if c, ok := req.conns.get(v); ok {
		return max(c.ready-m.s.t, 0)
	}
	d := time.Duration(0)
	if m.mode != modeSampledWarm {
		d = m.dial(r, v)
	}
	req.conns.add(v, m.s.t+d)
	return d
}

// publish gossips the bid request, or samples it as publishSampled does.
func (m *meshNet) publish(j *simJob, p orchestrator.Publish) {
	if m.mode != modeGossip && !p.Wide {
		m.sample(j, p)
		return
	}
	j.job.Published(p.Attempt, m.flood(j, p.Request), m.s.now())
}

// flood publishes req on the topic from j's requester: to every compute
// node it is connected to (flood publishing), then along the mesh, each
// node forwarding its first copy to its mesh peers but the sender. It
// returns the peers reached, as Publish does: the requester's topic peers.
func (m *meshNet) flood(j *simJob, req types.BidRequest) []string {
	rv := m.index[j.requester]
	r := m.requester(rv)
	targets := append(slices.Clone(r.kept), r.conns.peers()...)
	j.floods++
	j.copies += len(targets)
	hops := minHeap[smHop]{less: func(a, b smHop) bool { return a.at < b.at || (a.at == b.at && a.to < b.to) }}
	reached := make([]string, 0, len(targets))
	for _, v := range targets {
		hops.push(smHop{at: m.link(rv, v) + m.oneWay(rv, v), to: v, from: rv})
		reached = append(reached, m.s.order[v].peer)
	}
	got := m.spread(&hops, j)
	j.control += gossipLazy * gossipHistory * (got + 1)
	for v, d := range m.dist {
		if d >= 0 {
			n := m.s.order[v]
			m.s.after(d, func() { m.s.bidRequest(n, req) })
		}
	}
	return reached
}

// smHop is a copy of a gossiped message on its way to a node.
type smHop struct {
	at       time.Duration
	to, from int32
}

// spread plays the mesh's forwarding from the first hops (a Dijkstra in
// delay), leaves each node's arrival in m.dist, counts the copies sent,
// and returns how many nodes got the message.
func (m *meshNet) spread(hops *minHeap[smHop], j *simJob) int {
	for i := range m.dist {
		m.dist[i] = -1
	}
	got := 0
	for hops.len() > 0 {
		h := hops.pop()
		if m.dist[h.to] >= 0 {
			continue
		}
		m.dist[h.to] = h.at
		got++
		for _, w := range m.mesh[h.to] {
			if w == h.from {
				continue
			}
			j.copies++
			if m.dist[w] < 0 {
				hops.push(smHop{at: h.at + m.oneWay(h.to, w), to: w, from: h.to})
			}
		}
	}
	return got
}

// smSampling is one sampled publication in progress: publishSampled's
// rounds, in virtual time.
type smSampling struct {
	j       *simJob
	p       orchestrator.Publish
	rv      int32
	asked   map[int]bool
	reached []string
	round   int
	pending int           // sends of this round not ended
	ends    time.Duration // when this round's sends end
}

// sample publishes as publishSampled does; with fewer candidates known
// than it wants, the request is gossiped at once.
func (m *meshNet) sample(j *simJob, p orchestrator.Publish) {
	rv := m.index[j.requester]
	class := p2p.CPUClass(p.Request.Resources.CPU)
	if m.known(m.requester(rv), class) < dms.DefaultBidSampling {
		j.job.Published(p.Attempt, m.flood(j, p.Request), m.s.now())
		return
	}
	m.sampleRound(&smSampling{j: j, p: p, rv: rv, asked: map[int]bool{}})
}

// sampleRound sends the request to fresh candidates for those that did
// not take it yet, or, after the last round or the window's end, tells
// the job. A round's sends end with its share of the time left to the
// window's end (the first, half of it), as in publishSampled.
func (m *meshNet) sampleRound(st *smSampling) {
	left := st.p.Request.Deadline.Sub(simStart) - m.s.t
	var picks []int
	if st.round < sampleRounds && len(st.reached) < dms.DefaultBidSampling && left > 0 {
		picks = m.pick(m.requester(st.rv), p2p.CPUClass(st.p.Request.Resources.CPU), dms.DefaultBidSampling-len(st.reached), st.asked)
	}
	if len(picks) == 0 {
		m.sampled(st)
		return
	}
	st.ends = m.s.t + left/time.Duration(sampleRounds-st.round)
	st.round++
	st.pending = len(picks)
	for _, c := range picks {
		st.asked[c] = true
		m.sendBidRequest(st, c)
	}
}

// sendBidRequest sends the request to candidate c on a stream: the send
// ends when the acknowledgement is back, or fails at the round's end (the
// send's context); a send to a node that left gets no answer. A failure
// leaves the candidate out for candidateTTL.
func (m *meshNet) sendBidRequest(st *smSampling, c int) {
	deadline := st.ends
	v := m.cands[c].vertex
	end := func(ok bool) {
		if ok {
			st.reached = append(st.reached, m.s.order[v].peer)
		} else {
			m.requester(st.rv).failed[c] = m.s.t
		}
		if st.pending--; st.pending == 0 {
			m.sampleRound(st)
		}
	}
	if v < 0 {
		m.s.after(deadline-m.s.t, func() { end(false) })
		return
	}
	st.j.frames += 2
	there := m.link(st.rv, v) + m.oneWay(st.rv, v)
	back := there + m.oneWay(v, st.rv)
	n, req := m.s.order[v], st.p.Request
	m.s.after(there, func() { m.s.bidRequest(n, req) })
	if m.s.t+back > deadline {
		m.s.after(deadline-m.s.t, func() { end(false) })
		return
	}
	m.s.after(back, func() { end(true) })
}

// sampled tells the job the nodes its request reached; with none, the
// request goes to the topic, as publish does.
func (m *meshNet) sampled(st *smSampling) {
	reached := st.reached
	if len(reached) == 0 {
		reached = m.flood(st.j, st.p.Request)
	}
	st.j.job.Published(st.p.Attempt, reached, m.s.now())
	m.s.settle(st.j)
}

// known is how many candidates of class c or more r may sample: those
// that did not fail within candidateTTL (p2p.Host.Candidates).
func (m *meshNet) known(r *smRequester, class int) int {
	n := m.atLeast[class]
	for c, at := range r.failed {
		if m.s.t-at < candidateTTL && c < m.atLeast[class] {
			n--
		}
	}
	return n
}

// pick draws up to k candidates of class c or more, uniformly without
// repeats, leaving out those in skip and those that failed within
// candidateTTL (p2p.Host.Sample).
func (m *meshNet) pick(r *smRequester, class, k int, skip map[int]bool) []int {
	usable := func(c int) bool {
		at, failed := r.failed[c]
		return !skip[c] && (!failed || m.s.t-at >= candidateTTL)
	}
	var out []int
	pool := m.atLeast[class]
	for tries := 0; len(out) < k && tries < 64*k; tries++ { // few are left out: draw until k are usable
		if c := m.rng.IntN(pool); usable(c) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if len(out) < k { // most are left out: draw from the usable ones
		var rest []int
		for c := range pool {
			if usable(c) && !slices.Contains(out, c) {
				rest = append(rest, c)
			}
		}
		for len(out) < k && len(rest) > 0 {
			i := m.rng.IntN(len(rest))
			out, rest = append(out, rest[i]), slices.Delete(rest, i, i+1)
		}
	}
	return out
}

// rtt is the round trip between a and b: drawn log-uniform over
// simulateRTTMin to simulateRTTMax from the pair and the seed, so the same
// for the pair in every message, both ways, and in every mode.
func (m *meshNet) rtt(a, b int32) time.Duration {
	if a > b {
		a, b = b, a
	}
	x := splitmix64(m.seed ^ splitmix64(uint64(a)<<32|uint64(b)))
	u := float64(x>>11) / (1 << 53)
	return time.Duration(float64(simulateRTTMin) * math.Pow(float64(simulateRTTMax)/float64(simulateRTTMin), u))
}

// splitmix64 mixes x (Steele, Lea and Flood's SplitMix64 finalizer).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// oneWay is a message's delay from a to b on an open stream.
func (m *meshNet) oneWay(a, b int32) time.Duration { return m.leg(a, b, 0) }

// leg is one packet's delay from a to b: half the pair's RTT, jitter,
// and for each loss a retransmission timeout, first rto (0: RTT +
// simulateMinRTO), doubling at each further loss.
func (m *meshNet) leg(a, b int32, rto time.Duration) time.Duration {
	rtt := m.rtt(a, b)
	m.rtts.add(rtt)
	if rto == 0 {
		rto = rtt + simulateMinRTO
	}
	d := rtt/2 + time.Duration(m.rng.Int64N(int64(simulateJitter)))
	for ; m.rng.Float64() < simulateLoss; rto *= 2 {
		d += rto
	}
	return d
}

// dial is how long a new connection from a to b takes before a stream
// can go: the QUIC handshake (its packets, lost, wait for QUIC's first
// probe timeout), then identify, which NewStream waits for.
func (m *meshNet) dial(a, b int32) time.Duration {
	return m.leg(a, b, simulateFirstPTO) + m.leg(b, a, simulateFirstPTO) + m.oneWay(a, b) + m.oneWay(b, a)
}

// connTable is a requester's connections to nodes: beyond size, the
// least recently used is dropped (the connection manager trims the
// oldest beyond its high watermark).
type connTable struct {
	size   int
	order  *list.List // of *smConn, most recently used first
	byPeer map[int32]*list.Element
}

// smConn is a connection, usable from ready on.
type smConn struct {
	peer  int32
	ready time.Duration
}

func newConnTable(size int) connTable {
	return connTable{size: size, order: list.New(), byPeer: map[int32]*list.Element{}}
}

// get returns the connection to v, marking it used.
func (t *connTable) get(v int32) (*smConn, bool) {
	e, ok := t.byPeer[v]
	if !ok {
		return nil, false
	}
	t.order.MoveToFront(e)
	return e.Value.(*smConn), true
}

// add records a new connection to v.
func (t *connTable) add(v int32, ready time.Duration) {
	t.byPeer[v] = t.order.PushFront(&smConn{peer: v, ready: ready})
	if t.order.Len() > t.size {
		delete(t.byPeer, t.order.Remove(t.order.Back()).(*smConn).peer)
	}
}

// peers lists the peers connected, most recently used first.
func (t *connTable) peers() []int32 {
	out := make([]int32, 0, t.order.Len())
	for e := t.order.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*smConn).peer)
	}
	return out
}

// rttHist counts RTTs in bins of 0.1 ms up to 250 ms.
type rttHist struct {
	bins [2500]int
	n    int
}

const rttBin = 100 * time.Microsecond

func (h *rttHist) add(d time.Duration) {
	h.bins[min(int(d/rttBin), len(h.bins)-1)]++
	h.n++
}

func (h *rttHist) merge(o *rttHist) {
	for i, c := range o.bins {
		h.bins[i] += c
	}
	h.n += o.n
}

// median is the middle RTT counted, to the bin's middle.
func (h *rttHist) median() time.Duration {
	seen := 0
	for i, c := range h.bins {
		if seen += c; seen >= (h.n+1)/2 && c > 0 {
			return time.Duration(i)*rttBin + rttBin/2
		}
	}
	return 0
}

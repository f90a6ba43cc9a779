package p2p

import (
	"context"
	crand "crypto/rand"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/opendms/dms/types"
)

// candidates is a requester's cache of compute nodes to sample bid requests
// to (Config.Sampling): the peers lookups of the ComputeKeys listed, with
// the CPU class they were listed under, less those that failed to take a
// bid request within ttl (a provider record outlives its node by hours).
// A peer is dropped when complete lookups have not listed it for ttl: a
// lookup cut short, as on an overloaded host, drops nobody. A nil
// *candidates holds nobody. Safe for concurrent use.
type candidates struct {
	ttl    time.Duration
	mu     sync.Mutex
	seen   map[peer.ID]listed
	failed map[peer.ID]time.Time // when it last failed to take a bid request
	rng    *rand.Rand
}

// listed is when a lookup last listed a candidate, and under which class.
type listed struct {
	at    time.Time
	class int
}

func newCandidates(ttl time.Duration) *candidates {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails (crypto/rand panics rather)
	return &candidates{ttl: ttl, seen: make(map[peer.ID]listed), failed: make(map[peer.ID]time.Time), rng: rand.New(rand.NewChaCha8(seed))}
}

// list records that a lookup at now listed ids under their CPU classes,
// and returns how many of them were not candidates before. A complete
// lookup also drops the peers no lookup listed within ttl.
func (c *candidates) list(ids map[peer.ID]int, complete bool, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if complete {
		c.forget(now)
	}
	n := 0
	for id, class := range ids {
		if _, ok := c.seen[id]; !ok {
			n++
		}
		c.seen[id] = listed{at: now, class: class}
	}
	return n
}

// fail leaves id out for ttl.
func (c *candidates) fail(id string, now time.Time) {
	if c == nil {
		return
	}
	pid, err := peer.Decode(id)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failed[pid] = now
}

// forget drops the peers not listed within ttl. Callers hold mu.
func (c *candidates) forget(now time.Time) {
	for id, l := range c.seen {
		if now.Sub(l.at) >= c.ttl {
			delete(c.seen, id)
		}
	}
}

// forgive ends the failures older than ttl. Callers hold mu.
func (c *candidates) forgive(now time.Time) {
	for id, at := range c.failed {
		if now.Sub(at) >= c.ttl {
			delete(c.failed, id)
		}
	}
}

// pool returns the live candidates at now of class at least minClass,
// less those skip names.
func (c *candidates) pool(now time.Time, minClass int, skip map[string]bool) []string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgive(now)
	out := make([]string, 0, len(c.seen))
	for id, l := range c.seen {
		if _, failed := c.failed[id]; !failed && l.class >= minClass && !skip[id.String()] {
			out = append(out, id.String())
		}
	}
	return out
}

// pick moves n elements of pool chosen uniformly at random, without
// repeats, to its front (a partial Fisher-Yates shuffle) and returns them;
// all of pool if it holds n or fewer.
func (c *candidates) pick(pool []string, n int) []string {
	n = min(n, len(pool))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range n {
		j := i + c.rng.IntN(len(pool)-i)
		pool[i], pool[j] = pool[j], pool[i]
	}
	return pool[:n]
}

// Candidates returns how many compute nodes Sample chooses from now for a
// job that needs cpu, this host excluded; 0 without Config.Sampling or
// SampleAbove.
func (h *Host) Candidates(cpu types.MilliCPU) int {
	h.wanted.Store(true)
	return len(h.cands.pool(time.Now(), CPUClass(cpu), nil))
}

// KnownCandidates is Candidates(0) for the record: asking it does not
// start the lookups (Config.SampleAbove).
func (h *Host) KnownCandidates() int { return len(h.cands.pool(time.Now(), 0, nil)) }

// Sample returns up to n PeerIDs chosen uniformly at random, without
// repeats, among the candidates whose CPU class is at least that of cpu
// (a node of a lower class offers fewer cores than the job needs; one of
// its own class may offer enough, and its bid says), and this host, when
// self is true (a requester that computes is one of the nodes it may
// ask), leaving out those in skip. It never waits for the DHT: it reads
// the cache that Config.Sampling keeps; without it, only this host is a
// candidate.
func (h *Host) Sample(n int, cpu types.MilliCPU, self bool, skip map[string]bool) []string {
	h.wanted.Store(true)
	pool := h.cands.pool(time.Now(), CPUClass(cpu), skip)
	if self && !skip[h.ID()] {
		pool = append(pool, h.ID())
	}
	if h.cands == nil {
		return pool[:min(n, len(pool))]
	}
	return h.cands.pick(pool, n)
}

// refreshCandidates runs until Close: each round looks up the compute
// nodes advertised under the ComputeKeys. Rounds run DiscoveryMin apart
// while the cache is empty or the last round found somebody new, and back
// off otherwise, to CandidateTTL/3 apart, so a live node is listed again
// at least twice before its entry expires. Without Config.Sampling, no
// round runs until the host was asked for candidates (Candidates, Sample:
// its node submits jobs; one that only computes never looks up) and knows
// Config.SampleAbove peers.
func (h *Host) refreshCandidates() {
	every := h.cfg.CandidateTTL / 3
	first := min(h.cfg.DiscoveryMin, every)
	wait := first
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-timer.C:
		}
		if !h.cfg.Sampling && (!h.wanted.Load() || h.host.Peerstore().Peers().Len() < h.cfg.SampleAbove) {
			timer.Reset(every)
			continue
		}
		if h.lookupCandidates() > 0 || h.KnownCandidates() == 0 {
			wait = first
		} else {
			wait = min(2*wait, every)
		}
		timer.Reset(wait)
	}
}

// lookupParallel bounds the DHT lookups of one round that run at once.
const lookupParallel = 8

// lookupCandidates lists every compute node the DHT knows, under every
// ComputeKey (lookupParallel at a time), keeps their addresses for
// CandidateTTL, and returns how many were new. A node listed under
// several classes (its offer changed) counts in the highest. A round that
// outlasts roundTimeout is cut short; it and one that found nobody (the
// host cut off) count as incomplete.
func (h *Host) lookupCandidates() int {
	ctx, cancel := context.WithTimeout(h.ctx, roundTimeout)
	defer cancel()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		ids  = map[peer.ID]int{}
		slot = make(chan struct{}, lookupParallel)
	)
	for class := range CPUClasses {
		for shard := range ComputeShards {
			wg.Go(func() {
				slot <- struct{}{}
				defer func() { <-slot }()
				key := types.CIDOf([]byte(ComputeKey(class, shard)))
				for ai := range h.dht.FindProvidersAsync(ctx, key, 0) { // 0: all of them
					if ai.ID == h.host.ID() {
						continue
					}
					if len(ai.Addrs) > 0 {
						h.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, h.cfg.CandidateTTL)
					}
					mu.Lock()
					ids[ai.ID] = max(ids[ai.ID], class)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return h.cands.list(ids, ctx.Err() == nil && len(ids) > 0, time.Now())
}

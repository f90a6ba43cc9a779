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
// to (Config.Sampling): the peers lookups of ComputeRendezvous listed, less
// those that failed to take a bid request within ttl (a provider record
// outlives its node by hours). A peer is dropped when complete lookups
// have not listed it for ttl: a lookup cut short, as on an overloaded
// host, drops nobody. A nil *candidates holds nobody. Safe for concurrent
// use.
type candidates struct {
	ttl    time.Duration
	mu     sync.Mutex
	seen   map[peer.ID]time.Time // when a lookup last listed it
	failed map[peer.ID]time.Time // when it last failed to take a bid request
	rng    *rand.Rand
}

func newCandidates(ttl time.Duration) *candidates {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails (crypto/rand panics rather)
	return &candidates{ttl: ttl, seen: make(map[peer.ID]time.Time), failed: make(map[peer.ID]time.Time), rng: rand.New(rand.NewChaCha8(seed))}
}

// list records that a lookup at now listed ids, and returns how many of
// them were not candidates before. A complete lookup also drops the peers
// no lookup listed within ttl.
func (c *candidates) list(ids []peer.ID, complete bool, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if complete {
		c.forget(now)
	}
	n := 0
	for _, id := range ids {
		if _, ok := c.seen[id]; !ok {
			n++
		}
		c.seen[id] = now
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
	for id, at := range c.seen {
		if now.Sub(at) >= c.ttl {
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

// pool returns the live candidates at now, less those skip names.
func (c *candidates) pool(now time.Time, skip map[string]bool) []string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgive(now)
	out := make([]string, 0, len(c.seen))
	for id := range c.seen {
		if _, failed := c.failed[id]; !failed && !skip[id.String()] {
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

// Candidates returns how many compute nodes Sample chooses from now, this
// host excluded; 0 without Config.Sampling.
func (h *Host) Candidates() int { return len(h.cands.pool(time.Now(), nil)) }

// Sample returns up to n PeerIDs chosen uniformly at random, without
// repeats, among the candidates (and this host, when self is true: a
// requester that computes is one of the nodes it may ask), leaving out
// those in skip. It never waits for the DHT: it reads the cache that
// Config.Sampling keeps; without it, only this host is a candidate.
func (h *Host) Sample(n int, self bool, skip map[string]bool) []string {
	pool := h.cands.pool(time.Now(), skip)
	if self && !skip[h.ID()] {
		pool = append(pool, h.ID())
	}
	if h.cands == nil {
		return pool[:min(n, len(pool))]
	}
	return h.cands.pick(pool, n)
}

// refreshCandidates runs until Close: each round looks up the compute
// nodes advertised under ComputeRendezvous. Rounds run DiscoveryMin apart
// while the cache is empty or the last round found somebody new, and back
// off otherwise, to CandidateTTL/3 apart, so a live node is listed again
// at least twice before its entry expires.
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
		if h.lookupCandidates() > 0 || h.Candidates() == 0 {
			wait = first
		} else {
			wait = min(2*wait, every)
		}
		timer.Reset(wait)
	}
}

// lookupCandidates lists every compute node the DHT knows, keeps their
// addresses for CandidateTTL, and returns how many were new. A lookup that
// outlasts roundTimeout is cut short; it and one that found nobody (the
// host cut off) count as incomplete.
func (h *Host) lookupCandidates() int {
	ctx, cancel := context.WithTimeout(h.ctx, roundTimeout)
	defer cancel()
	var ids []peer.ID
	for ai := range h.dht.FindProvidersAsync(ctx, types.CIDOf([]byte(ComputeRendezvous)), 0) { // 0: all of them
		if ai.ID == h.host.ID() {
			continue
		}
		if len(ai.Addrs) > 0 {
			h.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, h.cfg.CandidateTTL)
		}
		ids = append(ids, ai.ID)
	}
	return h.cands.list(ids, ctx.Err() == nil && len(ids) > 0, time.Now())
}

package gateway

// PoolStats is what one function's pools (one per revision called) hold
// now: for metrics, read at every scrape.
type PoolStats struct {
	Account, Function string
	Ready             int // warm instances taking calls
	Starting          int // instances being auctioned and started
	Queued            int // calls waiting for a free instance
	InFlight          int // calls running on its instances
}

// Pools returns the stats of every function that has a pool, a line per
// account and function (its revisions summed), in no order. It takes each
// pool's lock briefly and allocates one line per function.
func (g *Gateway) Pools() []PoolStats {
	g.pools.mu.Lock()
	ps := make([]*pool, 0, len(g.pools.m))
	for _, p := range g.pools.m {
		ps = append(ps, p)
	}
	g.pools.mu.Unlock()
	at := make(map[[2]string]int, len(ps))
	var out []PoolStats
	for _, p := range ps {
		k := [2]string{p.key.account, p.key.function}
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, PoolStats{Account: k[0], Function: k[1]})
		}
		s := &out[i]
		p.mu.Lock()
		s.Ready += len(p.ready)
		s.Starting += p.starting
		s.Queued += len(p.queue)
		for _, in := range p.ready {
			s.InFlight += in.inFlight
		}
		p.mu.Unlock()
	}
	return out
}

// KeyHashes counts the API keys this gateway hashed to verify them since
// it started: one a key missing from its cache, however many requests
// brought it at once, and one a wrong secret of a key that exists (an
// unknown or revoked key is refused unhashed). A rate that stays high is
// requests with wrong secrets, or keys evicted from a cache too small.
func (g *Gateway) KeyHashes() uint64 { return g.keys.hashed.Load() }

// LiveCalls counts the calls in flight on this gateway: their tasks are
// scheduled or running. It walks them, so it is for scrapes, not loops.
func (g *Gateway) LiveCalls() int {
	n := 0
	g.calls.Range(func(any, any) bool {
		n++
		return true
	})
	return n
}

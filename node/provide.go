package node

import (
	"context"
	"time"
)

// Results are announced in the DHT by one goroutine, off the allocation's
// path: a Provide is a walk of the DHT, dozens of RPCs, and announcing two
// blobs per job as each job ended cost more CPU than running it. The
// requester does not need the announcement (it fetches a result from the
// node its job record names); other peers do, later.
const (
	provideQueue = 4096      // announcements waiting; more are dropped (and logged)
	provideAgain = time.Hour // a CID announced this recently is not announced again
	provideKept  = 10_000    // the recent announcements remembered, at most
)

// announce queues c for the DHT without blocking.
func (n *Node) announce(c string) {
	select {
	case n.provides <- c:
	default:
		n.cfg.Logger.Debug("announcement queue full: result not announced", "cid", c)
	}
}

// goProvide announces queued CIDs one at a time, each at most once an hour
// (an empty stderr is the same blob for every job).
func (n *Node) goProvide() {
	n.goDo(func(ctx context.Context) {
		recent := make(map[string]time.Time)
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-n.provides:
				now := time.Now()
				if at, ok := recent[c]; ok && now.Sub(at) < provideAgain {
					continue
				}
				if len(recent) >= provideKept {
					for k, at := range recent {
						if now.Sub(at) >= provideAgain || len(recent) >= provideKept {
							delete(recent, k)
						}
					}
				}
				recent[c] = now
				if err := n.net.Provide(ctx, c); err != nil {
					n.cfg.Logger.Debug("announcing result", "cid", c, "err", err)
				}
			}
		}
	})
}

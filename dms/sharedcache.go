package dms

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/opendms/dms/orchestrator/flow"
)

// sharedCache shares the results of this node's flows through the DHT,
// and looks up those of the nodes it trusts when its own cache misses
// (FlowCacheConfig; docs/workflows.md, The cache). The records, their
// signatures and seals are p2p's (PutCacheRecord, GetCacheRecord); this
// decides what is published, whose records are asked for and what a
// record must hold to be used.
type sharedCache struct {
	d       *DMS
	trust   []string // PeerIDs, without this node's
	timeout time.Duration
	queue   chan shareItem // nil unless the node shares
}

// shareItem is a result waiting for its publication.
type shareItem struct {
	flow, step string // for the log
	key        string
	out        flow.Outcome
}

// Bounds of the publication of results: it never holds up a flow, so a
// result that finds the queue full is not shared (until its next hit).
const (
	shareQueue      = 1024 // results waiting
	sharePutters    = 4    // publications at once
	sharePutTimeout = 30 * time.Second
	// republishAfter is how old the last publication of a result must be
	// for a hit of this node's own cache to publish it again: DHT nodes
	// drop a record 48 hours after it was put.
	republishAfter = 24 * time.Hour
)

// newSharedCache starts the publishers, if the node shares, on
// goroutines of d.
func newSharedCache(d *DMS) (*sharedCache, error) {
	conf := d.conf.Flows.Cache.withDefaults()
	trust, err := conf.trusted()
	if err != nil {
		return nil, fmt.Errorf("dms: %w", err)
	}
	self := d.host.ID()
	c := &sharedCache{d: d, timeout: conf.LookupTimeout,
		trust: slices.DeleteFunc(trust, func(id string) bool { return id == self })}
	if conf.Share {
		c.queue = make(chan shareItem, shareQueue)
		for range sharePutters {
			d.goDo(c.publishLoop)
		}
	}
	return c, nil
}

// publish queues the result of an instance this node ran, to be published
// under key, unless the node does not share, is closing, or has too many
// results waiting.
func (c *sharedCache) publish(flowID, step, key string, out flow.Outcome) {
	if c.queue == nil || c.d.ctx.Err() != nil {
		return
	}
	select {
	case c.queue <- shareItem{flow: flowID, step: step, key: key, out: flow.Outcome{Result: out.Result, Node: out.Node}}:
	default:
		c.d.log.Debug("flow cache: too many results waiting to be shared; this one is not", "flow", flowID, "step", step)
	}
}

// refresh publishes again the result of an instance this node ran, found
// in its own cache, when its record was last published over
// republishAfter ago, or never (its publication failed or was dropped).
func (c *sharedCache) refresh(flowID, step, key string, out flow.Outcome) {
	if c.queue == nil || out.CachedFrom != "" {
		return
	}
	var at time.Time
	if ok, err := c.d.db.Lookup(sharedPrefix+key, &at); err == nil && ok && c.d.opts.clock().Sub(at) < republishAfter {
		return
	}
	c.publish(flowID, step, key, out)
}

// publishLoop publishes queued results until the node closes, and
// records when each was published.
func (c *sharedCache) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-c.queue:
			value, err := json.Marshal(it.out)
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, sharePutTimeout)
				err = c.d.host.PutCacheRecord(pctx, it.key, value)
				cancel()
			}
			if err == nil {
				err = c.d.db.Put(sharedPrefix+it.key, c.d.opts.clock())
			}
			if err != nil && ctx.Err() == nil {
				c.d.log.Debug("flow cache: sharing a result", "flow", it.flow, "step", it.step, "err", err)
			}
		}
	}
}

// lookup asks for every trusted node's record of key at once, for the
// lookup timeout at most: the first usable one is the outcome, cached,
// from its publisher.
func (c *sharedCache) lookup(ctx context.Context, key string) (flow.Outcome, bool) {
	if len(c.trust) == 0 {
		return flow.Outcome{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	found := make(chan *flow.Outcome, len(c.trust)) // one answer each, never blocking
	for _, p := range c.trust {
		wg.Go(func() {
			value, err := c.d.host.GetCacheRecord(ctx, key, p)
			var o flow.Outcome
			if err == nil {
				o, err = sharedOutcome(value, p)
			}
			if err != nil {
				if ctx.Err() == nil {
					c.d.log.Debug("flow cache: no shared result", "from", p, "err", err)
				}
				found <- nil
				return
			}
			found <- &o
		})
	}
	for range c.trust {
		if o := <-found; o != nil {
			return *o, true
		}
	}
	return flow.Outcome{}, false
}

// sharedOutcome decodes the outcome a trusted node's record holds: it must
// be a completed run's (exit code 0) whose outputs are named by CIDs.
func sharedOutcome(value []byte, from string) (flow.Outcome, error) {
	var o flow.Outcome
	if err := json.Unmarshal(value, &o); err != nil {
		return o, fmt.Errorf("a record of %s: %w", from, err)
	}
	if o.Result == nil || o.Result.ExitCode != 0 {
		return o, fmt.Errorf("a record of %s holds no completed result", from)
	}
	cids := []string{o.Result.Stdout, o.Result.Stderr}
	for _, c := range o.Result.Files {
		cids = append(cids, c)
	}
	for _, c := range cids {
		if _, err := cid.Decode(c); err != nil {
			return o, fmt.Errorf("a record of %s names an output %.80q that is not a CID", from, c)
		}
	}
	o.Cached, o.CachedFrom = true, from
	return o, nil
}

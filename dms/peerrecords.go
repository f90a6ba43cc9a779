package dms

import (
	"context"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/types"
)

// What connected peers offer (dms peers): each node sends its capability
// record to a peer over p2p.RecordProtocol and gets the peer's in return,
// each signed by its sender's key on a connection bound to it. A node
// keeps the records it got, from both sides of an exchange, and asks a
// peer again once its record is peerRecordTTL old. Peers asks for those
// it lacks, peerRecordAsks at a time, and waits for them at most
// peerRecordWait: a peer that does not answer is listed without its
// offer, never waited for again within the call.
const (
	peerRecordTTL     = 5 * time.Minute
	peerRecordWait    = time.Second
	peerRecordAsks    = 8
	peerRecordTimeout = 5 * time.Second
)

// peerRecords is the cache of connected peers' records. Safe for
// concurrent use.
type peerRecords struct {
	mu     sync.Mutex
	recs   map[string]peerRecord
	asking map[string]chan struct{} // closed when the exchange ends
	slots  chan struct{}
}

type peerRecord struct {
	rec types.CapabilityRecord
	at  time.Time
}

func newPeerRecords() *peerRecords {
	return &peerRecords{recs: map[string]peerRecord{}, asking: map[string]chan struct{}{}, slots: make(chan struct{}, peerRecordAsks)}
}

// put keeps peer's record, got at now.
func (p *peerRecords) put(peer string, rec types.CapabilityRecord, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recs[peer] = peerRecord{rec: rec, at: now}
}

// get returns peer's record, if the node has one.
func (p *peerRecords) get(peer string) (types.CapabilityRecord, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.recs[peer]
	return r.rec, ok
}

// stale returns the peers of connected whose record is missing or old
// and not being asked for already, marking them asked for; it forgets the
// records of peers no longer connected.
func (p *peerRecords) stale(connected []string, now time.Time) (todo []string, waits []chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := make(map[string]bool, len(connected))
	for _, id := range connected {
		live[id] = true
		r, ok := p.recs[id]
		if ok && now.Sub(r.at) < peerRecordTTL {
			continue
		}
		ch, asking := p.asking[id]
		if !asking {
			ch = make(chan struct{})
			p.asking[id] = ch
			todo = append(todo, id)
		}
		waits = append(waits, ch)
	}
	for id := range p.recs {
		if !live[id] {
			delete(p.recs, id)
		}
	}
	return todo, waits
}

// done ends the exchange with peer.
func (p *peerRecords) done(peer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.asking[peer])
	delete(p.asking, peer)
}

// exchangeRecord sends peer this node's record and keeps the peer's.
func (d *DMS) exchangeRecord(ctx context.Context, peer string) {
	defer d.peerRecs.done(peer)
	select {
	case d.peerRecs.slots <- struct{}{}:
		defer func() { <-d.peerRecs.slots }()
	case <-ctx.Done():
		return
	}
	ctx, cancel := context.WithTimeout(ctx, peerRecordTimeout)
	defer cancel()
	d.mu.Lock()
	own := d.record
	d.mu.Unlock()
	reply, err := d.host.Request(ctx, peer, nil, p2p.RecordProtocol, &own)
	rec, ok := reply.(*types.CapabilityRecord)
	if err != nil || !ok || rec.PeerID != peer {
		d.log.Debug("no capability record from peer", "peer", peer, "err", err)
		return
	}
	d.peerRecs.put(peer, *rec, d.opts.clock())
}

// serveRecords answers a peer's record with this node's, keeping the
// peer's.
func (d *DMS) serveRecords() {
	d.host.Handle(p2p.RecordProtocol, func(_ context.Context, from string, env *types.Envelope, msg types.Message) (types.Message, error) {
		if rec, ok := msg.(*types.CapabilityRecord); ok && rec.PeerID == from && rec.DID == env.From {
			d.peerRecs.put(from, *rec, d.opts.clock())
		}
		d.mu.Lock()
		own := d.record
		d.mu.Unlock()
		return &own, nil
	})
}

// peerOffers asks the connected peers whose records are missing or old
// for them, waits for those at most peerRecordWait, and returns what
// each peer offers, by PeerID, as far as the node knows.
func (d *DMS) peerOffers(ctx context.Context, peers []string) map[string]*api.PeerOffer {
	todo, waits := d.peerRecs.stale(peers, d.opts.clock())
	for _, p := range todo {
		d.goDo(func(ctx context.Context) { d.exchangeRecord(ctx, p) })
	}
	timer := time.NewTimer(peerRecordWait)
	defer timer.Stop()
wait:
	for _, ch := range waits {
		select {
		case <-ch:
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	out := make(map[string]*api.PeerOffer, len(peers))
	for _, p := range peers {
		if rec, ok := d.peerRecs.get(p); ok {
			out[p] = &api.PeerOffer{Executors: rec.Executors, Offered: rec.Offered, Price: rec.Price, Labels: rec.Labels,
				Renewable: rec.Energy.Renewable, IdleOnly: rec.IdleOnly, Score: rec.Benchmark.Score(), IssuedAt: rec.IssuedAt}
		}
	}
	return out
}

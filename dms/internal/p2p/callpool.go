package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/opendms/dms/types"
)

// Call sends req to peer to on a call stream and waits for its reply, or
// for ctx to end (the stream is kept for the other calls; a late reply is
// dropped). It sets the Seq of the request it sends (req is not changed).
// addrs, if any, help dial a peer not connected yet.
//
// Calls to one peer share up to maxCallStreamsOut long-lived streams:
// one, and another whenever every stream has more than callStreamBusy
// calls in flight. When a stream breaks (reset, closed, a write past
// IOTimeout, a bad reply, the peer gone), every call on it fails at once
// with an error wrapping ErrCallStream, as does one whose stream could not
// be opened: the call may or may not have run, and another instance may
// take it. The next call opens a new stream.
func (h *Host) Call(ctx context.Context, to string, addrs []string, req *types.CallRequest) (*types.CallReply, error) {
	return h.call(ctx, &h.calls, to, addrs, req)
}

// call sends req on a stream of svc's protocol, as Call.
func (h *Host) call(ctx context.Context, svc *callService, to string, addrs []string, req *types.CallRequest) (*types.CallReply, error) {
	if req == nil {
		return nil, errNilRequest
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	svc.stats.inFlightOut.Add(1)
	defer svc.stats.inFlightOut.Add(-1)
	for {
		cs, err := h.pools.pool(h, svc, to).stream(ctx, addrs)
		if errors.Is(err, errPoolGone) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return cs.call(ctx, req)
	}
}

// callPools holds the outbound call streams of a host, by protocol and
// peer.
type callPools struct {
	mu    sync.Mutex
	pools map[poolKey]*callPool
}

type poolKey struct {
	proto protocol.ID
	to    string
}

// pool returns the pool of svc's streams to peer to, made if need be.
func (cp *callPools) pool(h *Host, svc *callService, to string) *callPool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	k := poolKey{svc.proto, to}
	p := cp.pools[k]
	if p == nil {
		if cp.pools == nil {
			cp.pools = make(map[poolKey]*callPool)
		}
		p = &callPool{h: h, svc: svc, to: to}
		cp.pools[k] = p
	}
	return p
}

// errPoolGone means a pool was removed (it had no stream left) while a
// call held it: the call takes the peer's pool again.
var errPoolGone = errors.New("p2p: call pool removed")

// callPool holds the call streams of one protocol to one peer. A pool
// with no stream and none being opened is removed from its host's
// callPools.
type callPool struct {
	h       *Host
	svc     *callService
	to      string
	mu      sync.Mutex
	streams []*callStream
	opening *callOpen // the stream being opened, or nil
	gone    bool
}

// callOpen is a stream being opened; done is closed when cs or err is set.
type callOpen struct {
	done chan struct{}
	cs   *callStream
	err  error
}

// stream returns the least loaded stream to the peer, counting the call
// in its load (call takes it off), opening the first one and waiting for
// it, or starting another in the background when every stream is busy.
func (p *callPool) stream(ctx context.Context, addrs []string) (*callStream, error) {
	for {
		op, cs, err := p.pick(addrs)
		if cs != nil || err != nil {
			return cs, err
		}
		select {
		case <-op.done:
			if op.err != nil {
				return nil, op.err
			}
			if err := op.cs.broken(); err != nil { // refused at once: do not open again
				return nil, err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// pick returns the least loaded stream, its load counting the call, or
// the stream being opened when there is none yet.
func (p *callPool) pick(addrs []string) (*callOpen, *callStream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return nil, nil, errPoolGone
	}
	if cs := p.leastLoaded(); cs != nil {
		if cs.load.Add(1) > callStreamBusy && p.opening == nil && len(p.streams) < maxCallStreamsOut {
			p.open(addrs)
		}
		return nil, cs, nil
	}
	op := p.opening
	if op == nil {
		op = p.open(addrs)
	}
	return op, nil, nil
}

// leastLoaded returns the working stream with the fewest calls in
// flight, or nil; p.mu is held.
func (p *callPool) leastLoaded() *callStream {
	var best *callStream
	for _, cs := range p.streams {
		if cs.dead.Load() {
			continue
		}
		if best == nil || cs.load.Load() < best.load.Load() {
			best = cs
		}
	}
	return best
}

// open starts opening a stream on a goroutine of the host; p.mu is held.
func (p *callPool) open(addrs []string) *callOpen {
	op := &callOpen{done: make(chan struct{})}
	p.opening = op
	if !p.h.spawn(func() { p.opened(op, addrs) }) {
		p.opening = nil
		op.err = ErrClosed
		close(op.done)
	}
	return op
}

// opened opens the stream of op and adds it to the pool.
func (p *callPool) opened(op *callOpen, addrs []string) {
	ctx, cancel := context.WithTimeout(p.h.ctx, p.h.cfg.RequestTimeout)
	defer cancel()
	s, err := p.h.openStream(ctx, p.to, addrs, p.svc.proto)
	if err == nil {
		op.cs, err = p.h.newCallStream(p, s)
	}
	if err != nil && !errors.Is(err, ErrBadPeer) && !errors.Is(err, ErrSelf) && !errors.Is(err, ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrCallStream, err)
	}
	op.err = err
	p.h.pools.mu.Lock()
	p.mu.Lock()
	p.opening = nil
	if op.cs != nil && !op.cs.dead.Load() { // else it failed before it could be dropped
		p.streams = append(p.streams, op.cs)
	}
	p.removeIfIdle()
	p.mu.Unlock()
	p.h.pools.mu.Unlock()
	close(op.done)
}

// drop removes a broken stream from the pool.
func (p *callPool) drop(cs *callStream) {
	p.h.pools.mu.Lock()
	defer p.h.pools.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.streams {
		if c == cs {
			p.streams = append(p.streams[:i], p.streams[i+1:]...)
			break
		}
	}
	p.removeIfIdle()
}

// removeIfIdle removes a pool with no stream and none being opened from
// its host; p.h.pools.mu and p.mu are held.
func (p *callPool) removeIfIdle() {
	if len(p.streams) == 0 && p.opening == nil && !p.gone {
		p.gone = true
		delete(p.h.pools.pools, poolKey{p.svc.proto, p.to})
	}
}

// callStream is one outbound call stream: callers write requests, a
// reader goroutine hands each reply to the caller waiting for its Seq.
type callStream struct {
	h    *Host
	pool *callPool
	s    network.Stream
	out  *frameWriter
	in   *frameReader
	free func()       // lets the connection manager trim the connection again (svc.keep)
	seq  uint64       // the last Seq sent; guarded by out.mu
	load atomic.Int32 // calls on the stream, from pick to their end
	dead atomic.Bool  // set by fail before anyone learns of it: pick skips it

	mu      sync.Mutex // guards pending and err
	pending map[uint64]*callWaiter
	err     error
}

// callWaiter is where a caller waits for its reply. A nil waiter in
// pending marks a call whose caller gave up.
type callWaiter struct{ ch chan callResult }

type callResult struct {
	reply *types.CallReply
	err   error
}

var callWaiters = sync.Pool{New: func() any { return &callWaiter{ch: make(chan callResult, 1)} }}

// newCallStream starts the reader of s, a stream just opened.
func (h *Host) newCallStream(p *callPool, s network.Stream) (*callStream, error) {
	cs := &callStream{h: h, pool: p, s: s, in: newFrameReader(s, h.cfg.IOTimeout), pending: make(map[uint64]*callWaiter), free: func() {}}
	cs.out = newFrameWriter(h, p.svc, s, cs.fail)
	if p.svc.keep {
		cs.free = h.keep(s.Conn().RemotePeer())
	}
	if !h.spawn(cs.readLoop) {
		cs.free()
		_ = s.Reset()
		return nil, ErrClosed
	}
	p.svc.stats.streamsOut.Add(1)
	return cs, nil
}

// call sends req and waits for its reply or ctx.
func (cs *callStream) call(ctx context.Context, req *types.CallRequest) (*types.CallReply, error) {
	defer cs.load.Add(-1) // counted by pick
	w := callWaiters.Get().(*callWaiter)
	defer callWaiters.Put(w)
	seq, err := cs.send(req, w)
	if seq == 0 {
		return nil, err
	}
	select {
	case res := <-w.ch:
		return res.reply, res.err
	case <-ctx.Done():
		cs.abandon(seq, w)
		return nil, ctx.Err()
	}
}

// send numbers req, registers w for its reply and writes it. It returns
// the Seq once w is registered, whatever happens next: a write that fails
// breaks the stream, which answers w.
func (cs *callStream) send(req *types.CallRequest, w *callWaiter) (uint64, error) {
	buf := frameBufs.Get().(*[]byte)
	defer putFrameBuf(buf)
	r := *req
	fw := cs.out
	fw.waiting.Add(1)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	flush := fw.waiting.Add(-1) == 0
	r.Seq = cs.seq + 1
	b, err := r.AppendBinary(frameRoom(buf)) // not encodeFrame: r would escape
	if *buf = b; err == nil {
		b, err = frameLength(b)
	}
	if err == nil {
		err = cs.await(r.Seq, w)
	}
	if err != nil {
		_ = fw.write(nil, flush) // what others left in the buffer
		return 0, err
	}
	cs.seq = r.Seq
	_ = fw.write(b, flush)
	return r.Seq, nil
}

// await registers w for the reply to seq, unless the stream broke.
func (cs *callStream) await(seq uint64, w *callWaiter) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.err != nil {
		return cs.err
	}
	cs.pending[seq] = w
	return nil
}

// abandon forgets the caller of seq, keeping seq pending so that its
// reply is dropped when it comes; a result already sent to w is drained.
func (cs *callStream) abandon(seq uint64, w *callWaiter) {
	cs.mu.Lock()
	if cs.pending[seq] == w {
		cs.pending[seq] = nil
		cs.mu.Unlock()
		return
	}
	cs.mu.Unlock()
	<-w.ch
}

// readLoop hands replies to their callers until the stream breaks.
func (cs *callStream) readLoop() {
	for {
		b, err := cs.in.next()
		if err != nil {
			cs.fail(err)
			return
		}
		r := new(types.CallReply)
		if err := r.UnmarshalBinary(b); err != nil {
			cs.fail(fmt.Errorf("%w: %w", ErrBadReply, err))
			return
		}
		if err := cs.deliver(r); err != nil {
			cs.fail(err)
			return
		}
	}
}

// deliver hands r to the caller of its Seq, or drops it if that caller
// gave up; a reply to no call in flight is an error.
func (cs *callStream) deliver(r *types.CallReply) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	w, ok := cs.pending[r.Seq]
	if !ok {
		return fmt.Errorf("%w: reply to call %d, which is not in flight", ErrBadReply, r.Seq)
	}
	delete(cs.pending, r.Seq)
	if w != nil {
		w.ch <- callResult{reply: r}
	}
	return nil
}

// broken returns the error the stream broke with, nil while it works.
func (cs *callStream) broken() error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.err
}

// fail breaks the stream once: every call pending on it fails with an
// error wrapping ErrCallStream and cause, the stream is reset and leaves
// its pool.
func (cs *callStream) fail(cause error) {
	cs.mu.Lock()
	if cs.err != nil {
		cs.mu.Unlock()
		return
	}
	cs.dead.Store(true)
	cs.err = fmt.Errorf("%w: %s: %w", ErrCallStream, cs.pool.to, cause)
	pending := cs.pending
	cs.pending = nil
	cs.mu.Unlock()
	_ = cs.s.Reset()
	cs.free()
	cs.pool.drop(cs)
	cs.pool.svc.stats.streamsOut.Add(-1)
	for _, w := range pending {
		if w != nil {
			w.ch <- callResult{err: cs.err}
		}
	}
}

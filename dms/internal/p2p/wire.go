package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/opendms/dms/types"
)

// inbound wraps serve as a libp2p stream handler owned by the host: it
// refuses streams after Close and bounds concurrent handlers to
// MaxInboundStreams, and, when perPeer, those of one remote peer to
// MaxInboundStreamsPerPeer, so that one peer cannot take every slot of a
// protocol; a stream that finds no slot within IOTimeout is reset.
// Streams waiting for a slot are bounded by the resource manager.
func (h *Host) inbound(perPeer bool, serve func(ctx context.Context, s network.Stream)) network.StreamHandler {
	slots := make(chan struct{}, h.cfg.MaxInboundStreams)
	var peers *peerSlots
	if perPeer {
		peers = newPeerSlots(h.cfg.MaxInboundStreamsPerPeer)
	}
	return func(s network.Stream) {
		if !h.enter() {
			_ = s.Reset()
			return
		}
		defer h.wg.Done()
		if peers != nil {
			own := peers.of(s.Conn().RemotePeer())
			defer peers.done(s.Conn().RemotePeer())
			if !h.acquire(own) {
				h.streams.add(ReasonOverloaded)
				_ = s.Reset()
				return
			}
			defer func() { <-own }()
		}
		if !h.acquire(slots) {
			h.streams.add(ReasonOverloaded)
			_ = s.Reset()
			return
		}
		defer func() { <-slots }()
		serve(h.ctx, s)
	}
}

func (h *Host) acquire(slots chan struct{}) bool {
	t := time.NewTimer(h.cfg.IOTimeout)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-h.ctx.Done():
		return false
	}
}

// peerSlots gives each remote peer a semaphore of its own, kept while any
// of its streams holds or waits for a slot.
type peerSlots struct {
	size  int
	mu    sync.Mutex
	slots map[peer.ID]*peerSlot
}

type peerSlot struct {
	c     chan struct{}
	users int
}

func newPeerSlots(size int) *peerSlots {
	return &peerSlots{size: size, slots: make(map[peer.ID]*peerSlot)}
}

// of returns p's semaphore; every call must be followed by one done.
func (ps *peerSlots) of(p peer.ID) chan struct{} {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	sl, ok := ps.slots[p]
	if !ok {
		sl = &peerSlot{c: make(chan struct{}, ps.size)}
		ps.slots[p] = sl
	}
	sl.users++
	return sl.c
}

func (ps *peerSlots) done(p peer.ID) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if sl := ps.slots[p]; sl != nil {
		if sl.users--; sl.users == 0 {
			delete(ps.slots, p)
		}
	}
}

// readRequest reads and verifies the request frame of an inbound stream; on
// failure it counts the reason, resets the stream and returns the error.
func (h *Host) readRequest(s network.Stream, kinds []types.Kind) (*types.Envelope, types.Message, error) {
	b, err := h.readRequestFrame(s, frameLimit(kinds))
	var (
		env *types.Envelope
		msg types.Message
	)
	if err == nil {
		env, msg, err = h.verifier.verify(b, s.Conn().RemotePeer(), kinds)
	}
	if err != nil {
		h.refuse(s, err)
		return nil, nil, err
	}
	return env, msg, nil
}

// readRequestFrame reads the request frame of an inbound stream, of at
// most limit bytes: an envelope's bytes, not verified yet.
func (h *Host) readRequestFrame(s network.Stream, limit int) ([]byte, error) {
	b, err := ReadFrame(bufio.NewReader(idleReader{s: s, timeout: h.cfg.IOTimeout}), limit)
	if err == nil && len(b) == 0 {
		err = reject(ReasonMalformed, errors.New("p2p: empty request frame"))
	}
	return b, err
}

// refuse counts why an inbound request was refused and resets its stream.
// A transport failure (the peer went away, a timeout) is not counted.
func (h *Host) refuse(s network.Stream, err error) {
	if re, ok := errors.AsType[*RejectError](err); ok {
		h.streams.add(re.Reason)
	} else if errors.Is(err, ErrFrameTooLarge) {
		h.streams.add(ReasonOversized)
	}
	h.cfg.Logger.Debug("p2p: request refused", "protocol", s.Protocol(), "peer", s.Conn().RemotePeer(), "err", err)
	_ = s.Reset()
}

// writeMessage seals msg with the host key and writes it as one frame; a
// nil msg writes an ack (an empty frame).
func (h *Host) writeMessage(s network.Stream, msg types.Message) error {
	var b []byte
	if msg != nil {
		env, err := types.Seal(h.cfg.Key, msg, h.cfg.Clock(), h.cfg.MessageTTL)
		if err != nil {
			return err
		}
		if b, err = env.Marshal(); err != nil {
			return err
		}
	}
	return h.writeEnvelope(s, b)
}

// writeEnvelope writes b, an encoded envelope (or nothing, an ack), as one
// frame, and counts it.
func (h *Host) writeEnvelope(s network.Stream, b []byte) error {
	if err := s.SetWriteDeadline(time.Now().Add(h.cfg.IOTimeout)); err != nil {
		return err
	}
	if err := WriteFrame(s, b); err != nil {
		return err
	}
	h.traffic.frame(s.Protocol())
	return nil
}

// readReply reads one reply frame from remote, and the envelope it came
// in: (nil, nil, nil) for an ack. A
// reply is opened but not admitted to the replay cache: it arrives on a
// stream this host opened to the peer that signed it, so only that peer
// could repeat it, and it could as well sign a new one.
func (h *Host) readReply(r ByteReader, remote peer.ID, kinds []types.Kind) (*types.Envelope, types.Message, error) {
	b, err := ReadFrame(r, frameLimit(kinds))
	if err != nil {
		return nil, nil, replyErr(err)
	}
	if len(b) == 0 {
		return nil, nil, nil
	}
	env, msg, err := h.verifier.open(b, remote, kinds)
	if err != nil {
		return nil, nil, replyErr(err)
	}
	return env, msg, nil
}

// replyErr tells a reply that did not verify (ErrBadReply) from one that
// never came (ErrNoReply).
func replyErr(err error) error {
	_, rejected := errors.AsType[*RejectError](err)
	switch {
	case errors.Is(err, ErrBadReply):
		return err
	case rejected, errors.Is(err, ErrFrameTooLarge):
		return fmt.Errorf("%w: %w", ErrBadReply, err)
	}
	return fmt.Errorf("%w: %w", ErrNoReply, err)
}

// orCtx returns ctx's error when ctx ended, since that is then the cause of err.
func orCtx(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// openStream opens a stream to peer to on proto, dialing it if needed.
func (h *Host) openStream(ctx context.Context, to string, addrs []string, proto protocol.ID) (network.Stream, error) {
	pid, err := peer.Decode(to)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadPeer, to, err)
	}
	if pid == h.host.ID() {
		return nil, fmt.Errorf("%w: %s", ErrSelf, proto)
	}
	// A connected peer needs no address: addrs are parsed only to dial
	// (most requests go to a peer already connected).
	if h.host.Network().Connectedness(pid) != network.Connected {
		if err := h.addAddrs(pid, addrs); err != nil {
			return nil, err
		}
		h.findAddrs(ctx, pid)
	}
	s, err := h.host.NewStream(ctx, pid, proto)
	if err != nil {
		return nil, fmt.Errorf("p2p: open %s to %s: %w", proto, to, orCtx(ctx, err))
	}
	return s, nil
}

// findAddrs looks a peer this host is not connected to up in the DHT when
// the peerstore does not know how to reach it, as after a restart. The dial
// that follows reports the failure.
func (h *Host) findAddrs(ctx context.Context, pid peer.ID) {
	if h.dht == nil || len(h.host.Peerstore().Addrs(pid)) > 0 {
		return
	}
	info, err := h.dht.FindPeer(ctx, pid)
	if err != nil {
		h.cfg.Logger.Debug("finding a peer in the DHT", "peer", pid, "err", err)
		return
	}
	h.host.Peerstore().AddAddrs(pid, info.Addrs, peerstore.TempAddrTTL)
}

// addAddrs adds addrs (with or without /p2p/<pid>) to the peerstore.
func (h *Host) addAddrs(pid peer.ID, addrs []string) error {
	mas := make([]ma.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("%w: %q: %w", ErrBadPeer, s, err)
		}
		transport, id := peer.SplitAddr(a)
		if id != "" && id != pid {
			return fmt.Errorf("%w: %q is not an address of %s", ErrBadPeer, s, pid)
		}
		if transport != nil {
			mas = append(mas, transport)
		}
	}
	h.host.Peerstore().AddAddrs(pid, mas, peerstore.TempAddrTTL)
	return nil
}

// sender pushes messages on a served stream until closed.
type sender struct {
	h      *Host
	s      network.Stream
	mu     sync.Mutex
	closed bool
}

func (o *sender) send(msg types.Message) error {
	if msg == nil {
		return fmt.Errorf("p2p: send of a nil message")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrStreamClosed
	}
	if o.s.Protocol() != InvokeProtocol {
		return o.h.writeMessage(o.s, msg)
	}
	b, err := o.h.appendPair(nil, msg) // signed only if it must be
	if err != nil {
		return err
	}
	return o.h.writeEnvelope(o.s, b)
}

func (o *sender) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
}

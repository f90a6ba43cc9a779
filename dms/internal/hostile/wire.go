package hostile

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/types"
)

// The wire format of dms/internal/p2p (frame.go, wire.go): every stream
// carries frames (p2p.WriteFrame, p2p.ReadFrame), each an encoded
// envelope; an empty frame is an ack.

const (
	// messageTTL is the lifetime of the envelopes the peer seals.
	messageTTL = 30 * time.Second
	// ioTimeout bounds reading a request frame.
	ioTimeout = 10 * time.Second
	// maxHold bounds how long the peer keeps a stream open without
	// answering (HoldAccepts, Liar's invocations).
	maxHold = 30 * time.Second
)

// writeMessage seals msg with the peer's key and writes it as one frame;
// nil writes an ack.
func (p *Peer) writeMessage(s network.Stream, msg types.Message) error {
	var b []byte
	if msg != nil {
		env, err := types.Seal(p.key, msg, time.Now(), messageTTL)
		if err != nil {
			return err
		}
		if b, err = env.Marshal(); err != nil {
			return err
		}
	}
	return p2p.WriteFrame(s, b)
}

// openEnvelope decodes and verifies a frame's envelope.
func openEnvelope(b []byte) (types.Message, error) {
	env, err := types.UnmarshalEnvelope(b)
	if err != nil {
		return nil, err
	}
	return env.Open(time.Now())
}

// request sends msg to peer to over proto and returns the verified reply,
// nil for an ack.
func (p *Peer) request(ctx context.Context, to string, proto protocol.ID, msg types.Message) (types.Message, error) {
	pid, err := peer.Decode(to)
	if err != nil {
		return nil, fmt.Errorf("hostile: peer %q: %w", to, err)
	}
	s, err := p.host.NewStream(ctx, pid, proto)
	if err != nil {
		return nil, fmt.Errorf("hostile: open %s to %s: %w", proto, to, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if err := p.writeMessage(s, msg); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("hostile: %s to %s: %w", proto, to, err)
	}
	_ = s.CloseWrite()
	b, err := p2p.ReadFrame(bufio.NewReader(s), types.MaxEnvelopeSize)
	if err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("hostile: %s to %s: no reply: %w", proto, to, err)
	}
	_ = s.Close()
	if len(b) == 0 {
		return nil, nil
	}
	return openEnvelope(b)
}

// Accept sends an Accept to the provider to and returns its answer: a
// *types.Confirm or a *types.Reject; an error when none came.
func (p *Peer) Accept(ctx context.Context, to string, acc *types.Accept) (types.Message, error) {
	p.stats.acceptsSent.Add(1)
	reply, err := p.request(ctx, to, p2p.AcceptProtocol, acc)
	switch reply.(type) {
	case *types.Confirm:
		p.stats.confirms.Add(1)
	case *types.Reject:
		p.stats.rejects.Add(1)
	default:
		p.stats.acceptErrors.Add(1)
		if err == nil {
			err = fmt.Errorf("hostile: accept answered with %T", reply)
		}
	}
	return reply, err
}

// Bid answers an observed bid request with the best bid there can be: free,
// with an enormous capability score and no load, for an allocation named
// allocation, over the bid stream to the requester.
func (p *Peer) Bid(ctx context.Context, o Observed, allocation types.AllocationID) error {
	return p.answer(ctx, o, &types.Bid{
		JobID: o.Req.JobID, Allocation: allocation, Node: p.node, Addrs: p.Addrs(),
		Price: 0, Score: 1e9, Load: 0, HoldUntil: o.Req.Deadline.Add(time.Minute),
	})
}

// Decline answers an observed bid request with a Decline: the peer is
// present and answers, so no auction waits for it.
func (p *Peer) Decline(ctx context.Context, o Observed) error {
	return p.answer(ctx, o, &types.Decline{JobID: o.Req.JobID, Node: p.node, Reasons: []string{"hostile: not bidding"}})
}

func (p *Peer) answer(ctx context.Context, o Observed, msg types.Message) error {
	if _, err := p.request(ctx, o.Req.Requester, p2p.BidProtocol, msg); err != nil {
		p.stats.sendErrors.Add(1)
		return err
	}
	p.stats.bidsSent.Add(1)
	return nil
}

// serve installs a handler for proto that reads and verifies the request
// frame and hands it to fn, which owns the stream from then on.
func (p *Peer) serve(proto protocol.ID, fn func(s network.Stream, msg types.Message)) {
	p.host.SetStreamHandler(proto, func(s network.Stream) {
		if !p.enter() {
			_ = s.Reset()
			return
		}
		defer p.wg.Done()
		_ = s.SetReadDeadline(time.Now().Add(ioTimeout))
		b, err := p2p.ReadFrame(bufio.NewReader(s), types.MaxEnvelopeSize)
		var msg types.Message
		if err == nil {
			msg, err = openEnvelope(b)
		}
		if err != nil {
			_ = s.Reset()
			return
		}
		_ = s.SetReadDeadline(time.Time{})
		fn(s, msg)
	})
}

// reply writes msg (nil: an ack) and closes the stream.
func (p *Peer) reply(s network.Stream, msg types.Message) {
	if err := p.writeMessage(s, msg); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// hold keeps s open without a word until its opener resets it, maxHold
// passes or the peer closes, and then resets it.
func (p *Peer) hold(s network.Stream) {
	errc := make(chan error, 1)
	go func() { // ends at the latest when s is reset below
		_, err := io.Copy(io.Discard, s)
		errc <- err
	}()
	t := time.NewTimer(maxHold)
	defer t.Stop()
	for waiting := true; waiting; {
		select {
		case err := <-errc:
			if err == nil { // the opener closed its side only: keep holding
				errc = nil
				continue
			}
			waiting = false
		case <-t.C:
			waiting = false
		case <-p.ctx.Done():
			waiting = false
		}
	}
	_ = s.Reset()
}

// AckBids serves the bid stream: every bid and decline for the peer's own
// bid requests is acknowledged (and counted), as by a requester that
// collects them, so the providers keep the holds behind their bids. Each
// bid is also handed to onBid, if not nil, with the PeerID of its node.
func (p *Peer) AckBids(onBid func(from string, b *types.Bid)) {
	p.serve(p2p.BidProtocol, func(s network.Stream, msg types.Message) {
		switch b := msg.(type) {
		case *types.Bid:
			p.stats.bidsReceived.Add(1)
			if onBid != nil {
				onBid(s.Conn().RemotePeer().String(), b)
			}
		case *types.Decline:
			p.stats.declinesReceived.Add(1)
		}
		p.reply(s, nil)
	})
}

// ConfirmAccepts serves the accept stream by confirming every Accept, for
// any allocation: nothing is locked behind the Confirm.
func (p *Peer) ConfirmAccepts() {
	p.serve(p2p.AcceptProtocol, func(s network.Stream, msg types.Message) {
		p.stats.acceptsReceived.Add(1)
		acc, ok := msg.(*types.Accept)
		if !ok {
			_ = s.Reset()
			return
		}
		p.reply(s, &types.Confirm{JobID: acc.JobID, AllocationID: acc.AllocationID, Epoch: 1, LockExpiry: time.Now().Add(time.Minute)})
	})
}

// HoldAccepts serves the accept stream by never answering: each Accept's
// stream stays open until its requester gives up.
func (p *Peer) HoldAccepts() {
	p.serve(p2p.AcceptProtocol, func(s network.Stream, _ types.Message) {
		p.stats.acceptsReceived.Add(1)
		p.hold(s)
	})
}

// HoldInvocations serves the invocation stream by never sending a status
// or heartbeat: the invocation runs nowhere.
func (p *Peer) HoldInvocations() {
	p.serve(p2p.InvokeProtocol, func(s network.Stream, _ types.Message) {
		p.stats.invocationsReceived.Add(1)
		p.hold(s)
	})
}

// enter registers a goroutine that Close waits for, or reports that the
// peer is closed.
func (p *Peer) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errClosed is returned by Subscribe and Play after Close.
var errClosed = errors.New("hostile: peer closed")

// ServeWrongBlobs serves the blob protocol as a peer that claims to hold
// every blob and sends data for each, whatever CID was asked: a producer
// that lies about an output. Each request served is counted
// (Stats().BlobsServed).
func (p *Peer) ServeWrongBlobs(data []byte) {
	p.serve(p2p.BlobProtocol, func(s network.Stream, msg types.Message) {
		if _, ok := msg.(*types.BlobRequest); !ok {
			_ = s.Reset()
			return
		}
		p.stats.blobsServed.Add(1)
		// The header frame of dms/internal/p2p/blob.go, then the bytes.
		if err := p2p.WriteFrame(s, fmt.Appendf(nil, `{"status":"found","size":%d}`, len(data))); err != nil {
			_ = s.Reset()
			return
		}
		if _, err := s.Write(data); err != nil {
			_ = s.Reset()
			return
		}
		_ = s.Close()
	})
}

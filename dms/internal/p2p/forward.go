package p2p

import (
	"context"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/opendms/dms/types"
)

// ForwardProtocol carries the calls a gateway that does not lead a
// function's queue forwards to the gateway that does. It is CallProtocol's
// machinery on another protocol: the same frames, multiplexed on
// long-lived streams, replay-protected by Seq, with the same bounds and
// refusals, counted apart (Stats().Forwards, Traffic().ForwardBytes).
// On it, a request's Allocation names the function queue
// ("<account>/<function>/<revision>"), and a reply may carry Node, Job,
// Code and RetryAfter. Its streams keep their connection from the
// connection manager's trimming while they are open.
const ForwardProtocol protocol.ID = "/dms/gw/forward/1.0.0"

// HandleForwards serves ForwardProtocol with fn, with HandleCalls' bounds
// and refusals (counted in Stats().Forwards.Refused). fn is told the
// PeerID of the forwarding gateway, which the connection authenticated:
// checking that it is a member of the group is fn's to do.
func (h *Host) HandleForwards(fn CallHandler) { h.handleCalls(&h.forwards, fn) }

// Forward sends req to the gateway to on a forward stream and waits for
// its reply, as Call does on a call stream: an error wrapping
// ErrCallStream means the forwarded call may or may not have run.
func (h *Host) Forward(ctx context.Context, to string, addrs []string, req *types.CallRequest) (*types.CallReply, error) {
	return h.call(ctx, &h.forwards, to, addrs, req)
}

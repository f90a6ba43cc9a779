package hostile

import (
	"context"
	"time"

	"github.com/opendms/dms/types"
)

// Role is how a subscribed peer answers the bid requests it observes.
type Role int

const (
	// Decliner declines every bid request: present and harmless, so that
	// an attack that needs to watch the topic is not also a Silent one.
	Decliner Role = iota
	// Silent subscribes and never answers: requesters that expect an
	// answer from every subscriber wait for it.
	Silent
	// Liar bids best, confirms every Accept, and never runs the
	// invocation: the stream stays open without a status or heartbeat.
	Liar
	// NeverConfirm bids best and never answers the Accept.
	NeverConfirm
)

func (r Role) String() string {
	switch r {
	case Decliner:
		return "decliner"
	case Silent:
		return "silent"
	case Liar:
		return "liar"
	case NeverConfirm:
		return "never-confirm"
	}
	return "unknown"
}

// answerTimeout bounds sending one bid or decline.
const answerTimeout = 5 * time.Second

// Play subscribes to bid requests and answers each as role says, after
// calling also (when not nil) with it; the answers go out on goroutines of
// their own, so a slow requester delays no other. A Liar's or
// NeverConfirm's bids name an allocation ID of the peer's choosing.
func (p *Peer) Play(role Role, also func(Observed)) error {
	switch role {
	case Liar:
		p.ConfirmAccepts()
		p.HoldInvocations()
	case NeverConfirm:
		p.HoldAccepts()
	}
	return p.Subscribe(func(o Observed) {
		if also != nil {
			also(o)
		}
		if role == Silent {
			return
		}
		p.spawn(func() {
			ctx, cancel := context.WithTimeout(p.ctx, answerTimeout)
			defer cancel()
			if role == Decliner {
				_ = p.Decline(ctx, o)
				return
			}
			_ = p.Bid(ctx, o, types.AllocationID(string(o.Req.JobID)+"-hostile-"+randomHex(8)))
		})
	})
}

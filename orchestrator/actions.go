package orchestrator

import (
	"fmt"

	"github.com/opendms/dms/types"
)

// Action is something a state machine asks its caller to do, or tells it
// happened. The set is closed: Publish, SendAccept, Release, Invoke, Observe,
// Placed and Failed.
type Action interface {
	fmt.Stringer
	isAction()
}

// Publish asks the shell to publish a bid request on the network, and to
// report the outcome as Published or PublishFailed with the same Attempt.
type Publish struct {
	Attempt int
	Request types.BidRequest
	// Wide asks that the request reach every node that may bid (gossip),
	// not a sample: an earlier auction of the job drew no bid and no busy
	// decline, and the nodes asked may have been the wrong ones.
	Wide bool
}

// SendAccept asks the shell to send an Accept to a bidder and report its
// answer back as Confirmed or Rejected.
type SendAccept struct {
	Peer   string
	Addrs  []string
	Accept types.Accept
}

// Release asks the shell to tell a node to drop an allocation: free its lock,
// or stop running it. Releasing is best effort and must be idempotent on the
// node: it is also sent to nodes that may hold nothing.
type Release struct {
	Peer   string
	Addrs  []string
	Cancel types.Cancel
}

// Invoke asks the shell to start the job on the node that confirmed, and to
// feed the node's status stream back as Status and NodeLost events.
type Invoke struct {
	Peer       string
	Addrs      []string
	Invocation types.Invocation
}

// Observe asks the shell to record a peer's misbehaviour in its
// Reputation: an Accept it did not confirm or rejected, a bid request it
// did not answer, a job it lost.
type Observe struct {
	Peer  string
	Event PeerEvent
}

// Placed reports that an auction's winner confirmed its lock. The Job
// consumes it; only an Auction emits it.
type Placed struct {
	Bid     types.Bid
	Confirm types.Confirm
}

// Failed reports that an auction ended without a placement. The Job consumes
// it; only an Auction emits it.
type Failed struct {
	Reason string
	// Busy: no bid, but some node could take the job once capacity frees
	// up, or did not answer in time; with Unconfirmed, every node offered
	// the job rejected it as busy (Reject.Busy).
	Busy bool
	// Unconfirmed: nodes bid, but none of those offered the job confirmed
	// (each rejected, failed to answer, or answered too late): a fault of
	// the nodes, not of the job.
	Unconfirmed bool
}

func (Publish) isAction()    {}
func (SendAccept) isAction() {}
func (Release) isAction()    {}
func (Invoke) isAction()     {}
func (Observe) isAction()    {}
func (Placed) isAction()     {}
func (Failed) isAction()     {}

func (p Publish) String() string {
	wide := ""
	if p.Wide {
		wide = " (wide)"
	}
	return fmt.Sprintf("publish %s for %s until %s%s", p.Request.JobID, p.Request.Executor, p.Request.Deadline.Format("15:04:05.000"), wide)
}

func (s SendAccept) String() string {
	return fmt.Sprintf("accept %s -> %s", s.Accept.AllocationID, s.Peer)
}

func (r Release) String() string {
	if r.Cancel.AllocationID == "" {
		return fmt.Sprintf("release the bid for %s on %s: %s", r.Cancel.JobID, r.Peer, r.Cancel.Reason)
	}
	return fmt.Sprintf("release %s on %s: %s", r.Cancel.AllocationID, r.Peer, r.Cancel.Reason)
}

func (i Invoke) String() string {
	return fmt.Sprintf("invoke %s on %s epoch %d", i.Invocation.AllocationID, i.Peer, i.Invocation.Epoch)
}

func (o Observe) String() string { return fmt.Sprintf("observe %s: %s", o.Peer, o.Event) }

func (p Placed) String() string {
	return fmt.Sprintf("placed %s on %s epoch %d", p.Confirm.AllocationID, p.Bid.Node.PeerID, p.Confirm.Epoch)
}

func (f Failed) String() string { return "failed: " + f.Reason }

package node

import (
	"fmt"
	"time"

	"github.com/opendms/dms/types"
)

// Ticket is the shell's name for one request to the Machine (an accept, an
// invocation, a cancel, a status query, a record change): the Reply to it,
// and an invocation's status Notifies, carry the same ticket. The shell
// picks tickets; the machine only hands them back.
type Ticket uint64

// Effect is something the Machine asks its shell to do once the records of
// the step are durable (see Machine.Advance). The set is closed: Send,
// Reply, Notify, Run and Stop.
type Effect interface {
	fmt.Stringer
	isEffect()
}

// Send asks the shell to deliver a bid or a decline to a requester before
// Deadline, and, for a bid it could not deliver, to call BidUndelivered so
// that the hold behind it goes at once. Request is the bid request it
// answers: the shell keeps both in its bid records (BidRecord).
type Send struct {
	To       string
	Addrs    []string
	Msg      types.Message // *types.Bid or *types.Decline
	Deadline time.Time
	Request  *types.BidRequest
}

// Reply answers the request named by Ticket: Msg (nil for a plain "done")
// or Err. Every request gets exactly one Reply.
type Reply struct {
	Ticket Ticket
	Msg    types.Message
	Err    error
}

// Notify passes an allocation's status to the invocation stream named by
// Ticket. Last is the stream's final status: nothing follows it.
type Notify struct {
	Ticket Ticket
	Status types.Status
	Last   bool
}

// Run asks the shell to run a started allocation's task under its locked
// resources and to report its end with RunEnded. Allocation is a copy.
type Run struct {
	Allocation Allocation
}

// Stop asks the shell to stop the run of an allocation; the run still ends
// with RunEnded: cancelled when its requester cancelled it, or, ByNode,
// failed, the node's fault, with Reason (an idle-only node's owner needs
// the host).
type Stop struct {
	AllocationID types.AllocationID
	Reason       string
	ByNode       bool
}

func (Send) isEffect()   {}
func (Reply) isEffect()  {}
func (Notify) isEffect() {}
func (Run) isEffect()    {}
func (Stop) isEffect()   {}

func (s Send) String() string {
	return fmt.Sprintf("send %s to %s", s.Msg.Kind(), s.To)
}

func (r Reply) String() string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("reply %d: error: %v", r.Ticket, r.Err)
	case r.Msg == nil:
		return fmt.Sprintf("reply %d: done", r.Ticket)
	}
	return fmt.Sprintf("reply %d: %s", r.Ticket, r.Msg.Kind())
}

func (n Notify) String() string {
	return fmt.Sprintf("notify %d: %s is %s", n.Ticket, n.Status.AllocationID, n.Status.State)
}

func (r Run) String() string { return "run " + string(r.Allocation.AllocationID) }

func (s Stop) String() string { return fmt.Sprintf("stop %s: %s", s.AllocationID, s.Reason) }

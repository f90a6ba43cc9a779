package types

import (
	"time"
)

// Kind names a protocol message type on the wire.
type Kind string

// The closed set of protocol message kinds.
const (
	KindBidRequest  Kind = "bid_request"
	KindBid         Kind = "bid"
	KindDecline     Kind = "decline"
	KindAccept      Kind = "accept"
	KindConfirm     Kind = "confirm"
	KindReject      Kind = "reject"
	KindInvocation  Kind = "invocation"
	KindStatus      Kind = "status"
	KindCancel      Kind = "cancel"
	KindStatusQuery Kind = "status_query"
	KindBlobRequest Kind = "blob_request"
	KindCapability  Kind = "capability"
	KindReceipt     Kind = "receipt"
)

// Message is one protocol message. The set is closed: only this package's
// types implement it.
type Message interface {
	Kind() Kind
	isMessage()
}

// Constraints narrow which nodes may bid for a job.
type Constraints struct {
	Labels        map[string]string `json:"labels,omitempty"`         // every pair must match the node's labels
	RenewableOnly bool              `json:"renewable_only,omitempty"` // only nodes on renewable energy
	MaxPrice      float64           `json:"max_price,omitempty"`      // credits per core-hour; 0 means no limit
}

// BidRequest asks every node that can run a job to bid. It travels on gossipsub.
type BidRequest struct {
	JobID       JobID       `json:"job_id"`
	Requester   string      `json:"requester"`             // PeerID bids are sent to
	ReplyAddrs  []string    `json:"reply_addrs,omitempty"` // multiaddrs of the requester
	Executor    string      `json:"executor"`
	Resources   Resources   `json:"resources"`
	Constraints Constraints `json:"constraints"`
	Deadline    time.Time   `json:"deadline"`          // the bid window closes here
	Network     bool        `json:"network,omitempty"` // the job asks for a network (docker); nodes that allow none decline
}

// Bid is a node's offer to run a job, sent to the requester over a stream.
// Allocation is the ID the allocation will have if the requester accepts
// the bid: the node chooses it (unguessable, never used before) and honours
// an Accept only from the requester the bid went to, naming this ID, for
// this job and the resources bid, before HoldUntil.
type Bid struct {
	JobID      JobID        `json:"job_id"`
	Allocation AllocationID `json:"allocation"`
	Node       NodeID       `json:"node"`
	Addrs      []string     `json:"addrs,omitempty"`
	Price      float64      `json:"price"`
	Score      float64      `json:"score"`      // capability score (Benchmark.Score)
	Load       float64      `json:"load"`       // share of the offered capability in use, 0..1
	HoldUntil  time.Time    `json:"hold_until"` // the soft reservation behind the bid lasts until then
}

// Decline tells the requester why a node will not bid. Busy means the node
// could run the job once capacity it has lent out frees up, or, on an
// idle-only node, once its owner leaves the host idle: waiting and asking
// again may succeed, unlike for any other reason.
type Decline struct {
	JobID   JobID    `json:"job_id"`
	Node    NodeID   `json:"node"`
	Reasons []string `json:"reasons"`
	Busy    bool     `json:"busy,omitempty"`
}

// Accept asks the winning node to lock capability for a job: the
// allocation the node named in its Bid, for the resources requested.
type Accept struct {
	JobID        JobID        `json:"job_id"`
	AllocationID AllocationID `json:"allocation_id"`
	Resources    Resources    `json:"resources"`
}

// Confirm is the node's answer to Accept: capability is locked under Epoch
// until LockExpiry, unless the invocation arrives first.
type Confirm struct {
	JobID        JobID        `json:"job_id"`
	AllocationID AllocationID `json:"allocation_id"`
	Epoch        uint64       `json:"epoch"`
	LockExpiry   time.Time    `json:"lock_expiry"`
}

// Reject is the node's refusal of an Accept, or of an Invocation, with a reason.
type Reject struct {
	JobID        JobID        `json:"job_id"`
	AllocationID AllocationID `json:"allocation_id"`
	Reason       string       `json:"reason"`
}

// Task is what an executor runs: everything an allocation needs, with the
// program and inputs named by CID so the node fetches and verifies them.
type Task struct {
	Executor  string            `json:"executor"`
	Module    string            `json:"module"` // CID of the program: a Wasm module for "wasm", an image archive (or "") for "docker"
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Stdin     string            `json:"stdin,omitempty"`  // CID of stdin, if any
	Inputs    string            `json:"inputs,omitempty"` // CID of a tar archive unpacked read-only at /inputs
	Resources Resources         `json:"resources"`
	Timeout   time.Duration     `json:"timeout"`
	// For "docker" only: Module, if set, is the CID of a `docker save`
	// archive holding the image.
	Image        string `json:"image,omitempty"`         // image reference (name:tag); may be empty when Module is an archive of one image
	Network      bool   `json:"network,omitempty"`       // the job asks for a network; default none
	WritableRoot bool   `json:"writable_root,omitempty"` // the job asks for a writable root file system; default read-only
	Pids         int    `json:"pids,omitempty"`          // process limit; 0 = the executor's default
	// Warm, when set, makes the allocation a warm instance that serves
	// calls (CallRequest) instead of running the program once.
	Warm *Warm `json:"warm,omitempty"`
	// Files are more inputs, each fetched by CID and placed under /inputs.
	Files []InputFile `json:"files,omitempty"`
}

// InputFile is a file a task finds under /inputs, named by CID: typically an
// output of an earlier job, fetched by the node that runs the task from the
// peers that hold it, never through the requester unless it holds it.
type InputFile struct {
	Path string   `json:"path"`           // slash-separated, relative, clean; under /inputs
	CID  string   `json:"cid"`            // the file's content
	Size int64    `json:"size,omitempty"` // bytes when known (ranking by locality, bytes moved)
	From []string `json:"from,omitempty"` // PeerIDs that hold it (its producers), tried first
}

// Invocation starts a job on a node that confirmed a lock. Epoch must be the
// lock's: an invocation for an expired or superseded lock is rejected.
//
// Lease is how long the requester waits for a frame on the invocation
// stream before it declares the node lost; the node sends a heartbeat (its
// current Status again) at least every Lease/4. Zero: the node's default.
type Invocation struct {
	JobID        JobID         `json:"job_id"`
	AllocationID AllocationID  `json:"allocation_id"`
	Epoch        uint64        `json:"epoch"`
	Task         Task          `json:"task"`
	Lease        time.Duration `json:"lease,omitempty"`
}

// Result names the outputs of a finished allocation by CID.
type Result struct {
	ExitCode        int               `json:"exit_code"`
	Stdout          string            `json:"stdout"` // CID
	Stderr          string            `json:"stderr"` // CID
	StdoutTruncated bool              `json:"stdout_truncated,omitempty"`
	StderrTruncated bool              `json:"stderr_truncated,omitempty"`
	Files           map[string]string `json:"files,omitempty"` // path -> CID
	Sizes           map[string]int64  `json:"sizes,omitempty"` // CID -> bytes, for stdout, stderr and every file
	DurationMillis  int64             `json:"duration_ms"`
}

// Status reports an allocation's state; terminal ones carry Reason or
// Result, and a failed one says whose fault it was.
type Status struct {
	JobID        JobID           `json:"job_id"`
	AllocationID AllocationID    `json:"allocation_id"`
	State        AllocationState `json:"state"`
	Reason       string          `json:"reason,omitempty"`
	Fault        Fault           `json:"fault,omitempty"` // set when State is failed
	Result       *Result         `json:"result,omitempty"`
}

// Cancel asks a node to stop an allocation and release its capability.
// With no AllocationID it withdraws the soft reservation behind the node's
// bid for JobID: the requester placed the job elsewhere.
type Cancel struct {
	JobID        JobID        `json:"job_id"`
	AllocationID AllocationID `json:"allocation_id"`
	Reason       string       `json:"reason"`
}

// Receipt is a provider's account of what one warm instance served in a
// batch of calls: how many, how many failed, and how long they ran, between
// From and To. It is evidence (DESIGN.md, what is signed): it travels as a
// signed envelope to the instance's requester, which keeps it. Seq numbers
// an instance's receipts from 1, so each counts once; Final marks the last,
// sent when the instance ended.
type Receipt struct {
	JobID        JobID        `json:"job_id"`
	AllocationID AllocationID `json:"allocation_id"`
	Requester    string       `json:"requester"`
	Seq          uint64       `json:"seq"`
	Calls        uint64       `json:"calls"`
	Failed       uint64       `json:"failed"`
	BusyMillis   int64        `json:"busy_ms"` // the calls' run time, summed
	From         time.Time    `json:"from"`
	To           time.Time    `json:"to"`
	Final        bool         `json:"final,omitempty"`
}

// StatusQuery asks a node for an allocation's current Status.
type StatusQuery struct {
	JobID        JobID        `json:"job_id"`
	AllocationID AllocationID `json:"allocation_id"`
}

// BlobRequest asks a peer for the blob with this CID.
type BlobRequest struct {
	CID string `json:"cid"`
}

func (*BidRequest) Kind() Kind       { return KindBidRequest }
func (*Bid) Kind() Kind              { return KindBid }
func (*Decline) Kind() Kind          { return KindDecline }
func (*Accept) Kind() Kind           { return KindAccept }
func (*Confirm) Kind() Kind          { return KindConfirm }
func (*Reject) Kind() Kind           { return KindReject }
func (*Invocation) Kind() Kind       { return KindInvocation }
func (*Status) Kind() Kind           { return KindStatus }
func (*Cancel) Kind() Kind           { return KindCancel }
func (*StatusQuery) Kind() Kind      { return KindStatusQuery }
func (*BlobRequest) Kind() Kind      { return KindBlobRequest }
func (*CapabilityRecord) Kind() Kind { return KindCapability }
func (*Receipt) Kind() Kind          { return KindReceipt }
func (*BidRequest) isMessage()       {}
func (*Bid) isMessage()              {}
func (*Decline) isMessage()          {}
func (*Accept) isMessage()           {}
func (*Confirm) isMessage()          {}
func (*Reject) isMessage()           {}
func (*Invocation) isMessage()       {}
func (*Status) isMessage()           {}
func (*Cancel) isMessage()           {}
func (*StatusQuery) isMessage()      {}
func (*BlobRequest) isMessage()      {}
func (*CapabilityRecord) isMessage() {}
func (*Receipt) isMessage()          {}

// newMessage returns an empty message of kind k, for decoding.
func newMessage(k Kind) (Message, bool) {
	switch k {
	case KindBidRequest:
		return &BidRequest{}, true
	case KindBid:
		return &Bid{}, true
	case KindDecline:
		return &Decline{}, true
	case KindAccept:
		return &Accept{}, true
	case KindConfirm:
		return &Confirm{}, true
	case KindReject:
		return &Reject{}, true
	case KindInvocation:
		return &Invocation{}, true
	case KindStatus:
		return &Status{}, true
	case KindCancel:
		return &Cancel{}, true
	case KindStatusQuery:
		return &StatusQuery{}, true
	case KindBlobRequest:
		return &BlobRequest{}, true
	case KindCapability:
		return &CapabilityRecord{}, true
	case KindReceipt:
		return &Receipt{}, true
	}
	return nil, false
}

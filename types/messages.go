package types

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Kind names a protocol message type on the wire.
type Kind string

// The closed set of protocol message kinds.
const (
	KindBidRequest  Kind = "bid_request"
	KindBidRequests Kind = "bid_requests"
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
	KindReceiptAck  Kind = "receipt_ack"
	KindTraceQuery  Kind = "trace_query"
	KindTraceSpans  Kind = "trace_spans"
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
	MaxPrice      Credits           `json:"max_price,omitempty"`      // per core-hour; 0 means no limit
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
	Trace       string      `json:"trace,omitempty"`   // W3C traceparent of the requester's auction span (trace.go)
}

// BidRequests is several bid requests of one requester in one message, as
// a requester publishes them under load: one signature, one gossip
// message, one verification at each node for them all. Each is a bid
// request of its own to the nodes, and each names the publisher as
// requester. It holds 1 to MaxBidRequests.
type BidRequests struct {
	Requests []BidRequest `json:"requests"`
}

// MaxBidRequests bounds the requests of one BidRequests.
const MaxBidRequests = 64

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
	Price      Credits      `json:"price"`      // per core-hour
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
	Trace        string       `json:"trace,omitempty"` // W3C traceparent of the requester's accept span (trace.go)
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
	// Busy marks an Accept refused only for now, as a busy Decline: the
	// bid's hold was given up for a requester within its share (fair
	// share). It is not the node's fault, nor the job's.
	Busy bool `json:"busy,omitempty"`
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
	// Account names the account the requester bills the task to; its
	// provider's receipts name it. "" for none (the requester's own).
	Account string `json:"account,omitempty"`
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
	Trace        string        `json:"trace,omitempty"` // W3C traceparent of the requester's invoke span (trace.go)
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
	// Usage is what the allocation used, as its node's executor measured
	// it (a warm instance: over its whole life); nil from a node that
	// does not meter.
	Usage *Usage `json:"usage,omitempty"`
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

// Receipt is a provider's signed account of one allocation's run, or of
// one period of a warm instance's life: what ran, for whom, on what
// resources, for how long, what it used, and what it costs. It is evidence
// (DESIGN.md, what is signed): it travels as a signed envelope to the
// allocation's requester, which checks it against its own view and
// countersigns it (ReceiptAck) or refuses it (Reject); docs/accounting.md
// says how.
//
// ID is AllocationID/Seq: it names the receipt for good, so a receipt
// counts once however often it is sent. A run has one receipt, Seq 1 and
// Final; a warm instance numbers its receipts from 1, Final marking the
// last, sent when it ended. Amount is Bill(), Cost(Price, Resources.CPU, Span()):
// capacity reserved for a time, like a virtual machine; Usage is reported,
// not billed (a warm instance's calls are counted).
type Receipt struct {
	ID           string       `json:"id"`
	JobID        JobID        `json:"job_id"`
	AllocationID AllocationID `json:"allocation_id"`
	Requester    string       `json:"requester"`
	Account      string       `json:"account,omitempty"` // the task's Account
	Seq          uint64       `json:"seq"`
	Calls        uint64       `json:"calls"`
	Failed       uint64       `json:"failed"`
	BusyMillis   int64        `json:"busy_ms"` // the calls' run time, summed
	From         time.Time    `json:"from"`
	To           time.Time    `json:"to"`
	Final        bool         `json:"final,omitempty"`
	// Resources are those locked for the allocation.
	Resources Resources `json:"resources"`
	// Price is the provider's bid for the allocation, per core-hour;
	// Amount what the receipt bills.
	Price  Credits `json:"price"`
	Amount Credits `json:"amount"`
	// Usage is what the allocation used between From and To, as its
	// executor measured it (a warm instance's: Usage.Since its last
	// receipt, its memory peak the peak since it began). nil from a node
	// that does not meter.
	Usage *Usage `json:"usage,omitempty"`
}

// Span is the time a receipt bills, To − From on the wall clock: the
// monotonic readings a time.Time may carry never travel, so a provider
// that subtracted them could bill a micro-credit its requester's sum of
// the same receipt does not come to.
func (r *Receipt) Span() time.Duration { return r.To.Round(0).Sub(r.From.Round(0)) }

// Bill is what a receipt's figures come to: Cost(Price, Resources.CPU,
// Span()). Amount must equal it.
func (r *Receipt) Bill() (Credits, error) { return Cost(r.Price, r.Resources.CPU, r.Span()) }

// ReceiptID is the ID of an allocation's receipt number seq.
func ReceiptID(alloc AllocationID, seq uint64) string {
	return fmt.Sprintf("%s/%d", alloc, seq)
}

// ReceiptAck is a requester's countersignature of a receipt: it accepted
// the receipt whose signed body (the envelope's Body, the same in every
// envelope that carries this receipt) has SHA-256 Digest, and counted
// Amount once. It travels signed: the provider keeps it as evidence.
type ReceiptAck struct {
	ReceiptID string  `json:"receipt_id"`
	Digest    string  `json:"digest"` // hex
	Amount    Credits `json:"amount"`
}

// ReceiptDigest is the digest a ReceiptAck names for a receipt's signed
// body.
func ReceiptDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
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
func (*BidRequests) Kind() Kind      { return KindBidRequests }
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
func (*ReceiptAck) Kind() Kind       { return KindReceiptAck }
func (*TraceQuery) Kind() Kind       { return KindTraceQuery }
func (*TraceSpans) Kind() Kind       { return KindTraceSpans }
func (*BidRequest) isMessage()       {}
func (*BidRequests) isMessage()      {}
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
func (*ReceiptAck) isMessage()       {}
func (*TraceQuery) isMessage()       {}
func (*TraceSpans) isMessage()       {}

// newMessage returns an empty message of kind k, for decoding.
func newMessage(k Kind) (Message, bool) {
	switch k {
	case KindBidRequest:
		return &BidRequest{}, true
	case KindBidRequests:
		return &BidRequests{}, true
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
	case KindReceiptAck:
		return &ReceiptAck{}, true
	case KindTraceQuery:
		return &TraceQuery{}, true
	case KindTraceSpans:
		return &TraceSpans{}, true
	}
	return nil, false
}

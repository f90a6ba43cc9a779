package gateway

import (
	"io"
	"net/http"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Header names the gateway sets on a call's response.
const (
	// HeaderTask carries the ID of the task a call made: present on every
	// response that came from a function, absent from the gateway's own
	// errors before a task existed.
	HeaderTask = "DMS-Task"
	// HeaderError marks a response the gateway wrote itself (a JSON error
	// body), so a caller can tell it from a function's own error status.
	HeaderError = "DMS-Error"
	// HeaderAccount names the account the node's admin token acts as on
	// the local API.
	HeaderAccount = "DMS-Account"
)

// Account owns functions, endpoints, tags and tasks.
type Account struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Keys      int       `json:"keys"` // keys not revoked
	// Credits are its standing in credits (credits.go), read from the
	// ledger (what an account record holds of them is not read).
	Credits Credits `json:"credits"`
}

// Key is an API key as listed: its ID, never its secret.
type Key struct {
	ID        string     `json:"id"`
	Account   string     `json:"account"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// NewKey is a key just made. Secret is the whole API key, to send as
// "Authorization: Bearer SECRET"; it is shown this once and never stored.
type NewKey struct {
	Key
	Secret string `json:"secret"`
}

// Deploy is what a deploy sends: it makes the function's next revision
// (the function itself on its first deploy).
type Deploy struct {
	Name      string            `json:"name"`
	Executor  string            `json:"executor"`        // wasm (default) or docker
	Module    string            `json:"module"`          // CID: the Wasm module, or for docker the image archive (may be "" with Image)
	Image     string            `json:"image,omitempty"` // docker: image name:tag
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Resources types.Resources   `json:"resources"` // zero: the job defaults
	Timeout   jobs.Duration     `json:"timeout"`   // zero: DefaultTimeout
	MaxBody   types.Bytes       `json:"max_body"`  // zero: DefaultMaxBody
	// Tags, when not nil, replace the function's tags.
	Tags map[string]string `json:"tags,omitempty"`
	// NoDefault leaves the default revision as it is (the first revision
	// always becomes the default).
	NoDefault bool `json:"no_default,omitempty"`
	// Scaling, when not nil, replaces the function's scaling (its zero
	// fields take the defaults).
	Scaling *Scaling `json:"scaling,omitempty"`
}

// Scaling says how a function's warm instances follow its load: at
// least MinInstances stay warm (0: scale to zero), at most MaxInstances
// run, each serves Concurrency calls at once and is released after
// KeepAlive without a call; at most MaxQueue calls wait for a free
// instance. Zero fields (but MinInstances) take the defaults.
type Scaling struct {
	MinInstances int           `json:"min_instances"`
	MaxInstances int           `json:"max_instances"`
	Concurrency  int           `json:"concurrency"`
	KeepAlive    jobs.Duration `json:"keep_alive"`
	MaxQueue     int           `json:"max_queue"`
}

// Instance is a warm instance of a function's revision, as its gateway
// sees it.
type Instance struct {
	Function  string    `json:"function"`
	Revision  int       `json:"revision"`
	Job       string    `json:"job"`  // the job that holds it
	Node      string    `json:"node"` // the provider's peer ID
	InFlight  int       `json:"in_flight"`
	Calls     int64     `json:"calls"`
	StartedAt time.Time `json:"started_at"`
	LastCall  time.Time `json:"last_call,omitzero"`
}

// Function is a deployed function.
type Function struct {
	Name            string            `json:"name"`
	Account         string            `json:"account"`
	DefaultRevision int               `json:"default_revision"`
	LatestRevision  int               `json:"latest_revision"`
	Tags            map[string]string `json:"tags,omitempty"`
	Scaling         Scaling           `json:"scaling"`
	Calls           int64             `json:"calls"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
}

// Revision is one immutable version of a function.
type Revision struct {
	Function  string            `json:"function"`
	Number    int               `json:"revision"`
	Executor  string            `json:"executor"`
	Module    string            `json:"module"`
	Image     string            `json:"image,omitempty"`
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Resources types.Resources   `json:"resources"`
	Timeout   jobs.Duration     `json:"timeout"`
	MaxBody   types.Bytes       `json:"max_body"`
	CreatedAt time.Time         `json:"created_at"`
}

// EndpointSpec is what an endpoint is made or updated from.
type EndpointSpec struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	Revision int    `json:"revision,omitempty"` // 0: the function's default revision at each call
	// AllowIPs are CIDRs (or bare addresses) a caller must be in; empty:
	// any.
	AllowIPs []string `json:"allow_ips,omitempty"`
	// Windows are weekly openings, "Mon-Fri 08:00-18:00 Europe/Berlin";
	// empty: always open.
	Windows    []string `json:"windows,omitempty"`
	DailyQuota int      `json:"daily_quota,omitempty"` // 0: none
	// Zone is the IANA time zone whose midnight resets the quota; "": the
	// first window's zone, else UTC.
	Zone string            `json:"zone,omitempty"`
	Auth string            `json:"auth"` // "none" (default) or "key": a key of the endpoint's account
	Tags map[string]string `json:"tags,omitempty"`
}

// Endpoint is a published endpoint: /e/NAME/... on the gateway.
type Endpoint struct {
	EndpointSpec
	Account   string    `json:"account"`
	Path      string    `json:"path"` // "/e/NAME/"
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Today is the calls counted in the current quota day, Remaining what
	// the quota leaves of it (nil without a quota), ResetsAt the next
	// midnight of the quota's zone.
	Today     int       `json:"today"`
	Remaining *int      `json:"remaining,omitempty"`
	ResetsAt  time.Time `json:"resets_at"`
}

// Query filters, searches and sorts a list of functions or endpoints.
type Query struct {
	Tags   map[string]string `json:"tags,omitempty"`   // every tag must match
	Search string            `json:"search,omitempty"` // case-insensitive substring of the name, a tag key or value
	Sort   string            `json:"sort,omitempty"`   // name (default), created or calls
}

// Tag is one key=value in use in an account, with what carries it.
type Tag struct {
	Key       string `json:"key"`
	Value     string `json:"value"`
	Functions int    `json:"functions"`
	Endpoints int    `json:"endpoints"`
}

// TaskState is where a call stands (Galago's task states).
type TaskState string

// Task states. Completed, Failed and Stopped are terminal.
const (
	TaskScheduled TaskState = "scheduled" // accepted, being placed
	TaskRunning   TaskState = "running"   // a provider runs it
	TaskCompleted TaskState = "completed" // the function answered (any status it chose)
	TaskFailed    TaskState = "failed"    // it could not be placed or run to an answer; Reason says why
	TaskStopped   TaskState = "stopped"   // stopped by its account or its caller leaving
)

// Task is one call of a function.
type Task struct {
	ID       string `json:"id"`
	Account  string `json:"account"`
	Function string `json:"function"`
	Revision int    `json:"revision"`
	Endpoint string `json:"endpoint,omitempty"` // the endpoint called through, if any
	Async    bool   `json:"async,omitempty"`
	// Idempotency is the Idempotency-Key the call came with: a later
	// call with the same key gets this task's answer instead of running.
	Idempotency string    `json:"idempotency_key,omitempty"`
	State       TaskState `json:"state"`
	Reason      string    `json:"reason,omitempty"`
	Job         string    `json:"job,omitempty"`  // the job of the warm instance that ran it
	Node        string    `json:"node,omitempty"` // the provider's peer ID (an identity, not an address)
	ExitCode    *int      `json:"exit_code,omitempty"`
	Status      int       `json:"status,omitempty"`   // the HTTP status answered
	Response    string    `json:"response,omitempty"` // CID of the function's output (headers and body)

	CreatedAt time.Time  `json:"created_at"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

// TaskQuery filters a task list; zero fields match everything.
type TaskQuery struct {
	Function string    `json:"function,omitempty"`
	State    TaskState `json:"state,omitempty"`
	Limit    int       `json:"limit,omitempty"` // newest first; 0: DefaultTaskLimit
}

// Call is an HTTP call of a function, as the gateway hands it on.
type Call struct {
	Revision int         // 0: the default revision (endpoints set their own)
	Method   string      // GET when empty
	Path     string      // the escaped path (URL.EscapedPath) after the function's prefix: "" or "/..."; cgi decodes PATH_INFO
	RawQuery string      // without the gateway's own parameters (rev, async)
	Header   http.Header // the caller's headers (Authorization never reaches a function)
	Body     io.Reader   // nil: empty; read up to the revision's MaxBody
	// IdempotencyKey, when set, makes the call run once: a call with a
	// key an earlier call of the account used gets that call's answer.
	IdempotencyKey string
	// Set by the HTTP layer: how the call came in.
	Host, Scheme, Proto, ClientIP string
}

// Response is a function's answer: its status, headers and body.
type Response struct {
	Status int         `json:"status"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
	Task   string      `json:"task"`
}

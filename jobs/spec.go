package jobs

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/opendms/dms/types"
)

// Defaults and limits of a job spec.
const (
	DefaultExecutor   = "wasm"
	DefaultCPU        = types.MilliCPU(1000)
	DefaultMemory     = types.Bytes(64 << 20)
	DefaultTimeout    = 5 * time.Minute
	MaxTimeout        = 24 * time.Hour
	MaxRetries        = 10
	DefaultBidWindow  = 2 * time.Second
	MinBidWindow      = 10 * time.Millisecond
	MaxBidWindow      = 5 * time.Minute
	DefaultEnoughBids = 3
	// DefaultQueueTimeout is how long a job waits for busy nodes to free
	// capacity before it fails.
	DefaultQueueTimeout = 5 * time.Minute
	MaxQueueTimeout     = 24 * time.Hour
	MaxEnoughBids       = 100
	// DefaultReschedule is how many times a job is placed again after a
	// fault that is not its program's, unless its spec says otherwise.
	DefaultReschedule = Reschedule(3)
	MaxReschedule     = Reschedule(10)
	// MaxDeadline bounds a job's overall deadline (default none).
	MaxDeadline = 7 * 24 * time.Hour
	// MaxStdin bounds the literal stdin text.
	MaxStdin = 1 << 20
	// MaxArgsEnv bounds args and env together (bytes of every arg, name and
	// value), so the task always fits in one protocol message.
	MaxArgsEnv = 64 << 10
	// MaxSpecSize bounds a spec document (stdin may be escaped in it).
	MaxSpecSize = 8 << 20
	// DefaultPids and MaxPids bound the processes (and threads) of a docker job.
	DefaultPids = 256
	MaxPids     = 32768
)

// executors lists the executor names a spec may ask for.
var executors = []string{"wasm", "docker"}

// Spec is a job as its submitter writes it, in YAML or JSON. The YAML keys
// are the JSON names below. Parse fills in defaults and validates; a Spec
// marshals to JSON that Parse reads back to an equal Spec.
type Spec struct {
	Name     string `json:"name"`
	Executor string `json:"executor"`
	// Account names the account the job bills: its providers' receipts
	// name it, and its requester charges it (docs/accounting.md). "" for
	// none: the requester's own.
	Account string `json:"account,omitempty"`
	Module  string `json:"module,omitempty"` // wasm: a local path, or the CID of the module

	// For docker. Image names an image present on the node (name:tag), or
	// the one to run from ImageArchive, a `docker save` archive given as a
	// local path or a CID. Nodes load an archive once and never pull.
	Image        string `json:"image,omitempty"`
	ImageArchive string `json:"image_archive,omitempty"`
	Network      bool   `json:"network,omitempty"`       // give the job a network (default none)
	WritableRoot bool   `json:"writable_root,omitempty"` // a writable root file system (default read-only)
	Pids         int    `json:"pids,omitempty"`          // process limit, DefaultPids when not given

	Args     []string          `json:"args,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Stdin    string            `json:"stdin,omitempty"`     // literal stdin text
	InputDir string            `json:"input_dir,omitempty"` // local directory mounted at /inputs
	// InputFiles are more files under /inputs, by CID (a workflow's step
	// names its predecessors' outputs so), fetched by the node that runs
	// the job from the peers of their From, this node, or the DHT's
	// providers; at most types.MaxInputFiles (CheckInputFiles).
	InputFiles  []types.InputFile `json:"input_files,omitempty"`
	Resources   types.Resources   `json:"resources"`
	Constraints types.Constraints `json:"constraints"`
	Timeout     Duration          `json:"timeout"`
	Retries     int               `json:"retries"`     // runs again after the program failed or exited non-zero
	BidWindow   Duration          `json:"bid_window"`  // the bid window closes at the latest after this
	EnoughBids  int               `json:"enough_bids"` // ... or as soon as this many bids are in
	// Reschedule is how many times the job is placed again after a fault
	// that is not its program's: its node lost, unable to run it, or
	// refusing it. 0 (never): such a fault fails the job.
	Reschedule Reschedule `json:"reschedule"`
	// QueueTimeout bounds how long the job waits while every node that could
	// run it is busy; 0 fails at once when they are.
	QueueTimeout Duration `json:"queue_timeout"`
	// Deadline bounds the whole job, from its submission: bidding, queueing,
	// every attempt and retry. A job still unfinished then fails, and the node
	// running it is told to stop. 0: no deadline.
	Deadline Duration `json:"deadline,omitempty"`
	// Replication runs the job on this many distinct nodes and keeps the
	// result Quorum of them agree on, as a batch's unit (docs/batches.md):
	// the result no longer rests on one provider's word. 0 or 1: one run.
	Replication int `json:"replication,omitempty"`
	// Quorum is how many equal results decide; 0: a majority.
	Quorum int `json:"quorum,omitempty"`
	// Warm, set by the gateway (never read from a document), makes the
	// job a warm instance of a function: it serves calls instead of
	// running once (types.Warm).
	Warm *types.Warm `json:"-"`

	dir string // directory of the spec file; relative paths resolve against it
}

// defaultSpec returns a Spec holding every default; decoding overwrites the
// fields a document gives.
func defaultSpec() *Spec {
	return &Spec{
		Executor:     DefaultExecutor,
		Resources:    types.Resources{CPU: DefaultCPU, Memory: DefaultMemory},
		Timeout:      Duration(DefaultTimeout),
		BidWindow:    Duration(DefaultBidWindow),
		EnoughBids:   DefaultEnoughBids,
		QueueTimeout: Duration(DefaultQueueTimeout),
		Reschedule:   DefaultReschedule,
	}
}

// normalize makes empty lists and maps nil, so a spec and its JSON form,
// which omits them, compare equal.
func (s *Spec) normalize() {
	if len(s.Args) == 0 {
		s.Args = nil
	}
	if len(s.Env) == 0 {
		s.Env = nil
	}
	if len(s.Constraints.Labels) == 0 {
		s.Constraints.Labels = nil
	}
	if len(s.InputFiles) == 0 {
		s.InputFiles = nil
	}
	for i := range s.InputFiles {
		if len(s.InputFiles[i].From) == 0 {
			s.InputFiles[i].From = nil
		}
	}
	if s.Executor == "docker" && s.Pids == 0 {
		s.Pids = DefaultPids
	}
}

// ModuleCID returns the module's CID when Module is one.
func (s *Spec) ModuleCID() (cid.Cid, bool) { return asCID(s.Module) }

// ModulePath returns the module's local file, resolved against the spec
// file's directory; "" when Module is a CID or not given.
func (s *Spec) ModulePath() string { return s.localPath(s.Module) }

// Blobs lists the content the job runs from: its program (module or
// image archive), input archive and input files, as the spec names them.
func (s *Spec) Blobs() []string {
	var out []string
	for _, c := range []string{s.Module, s.ImageArchive, s.InputDir} {
		if c != "" {
			out = append(out, c)
		}
	}
	for _, f := range s.InputFiles {
		out = append(out, f.CID)
	}
	return out
}

// ImageArchiveCID returns the image archive's CID when ImageArchive is one.
func (s *Spec) ImageArchiveCID() (cid.Cid, bool) { return asCID(s.ImageArchive) }

// ImageArchivePath returns the image archive's local file, resolved against
// the spec file's directory; "" when ImageArchive is a CID or not given.
func (s *Spec) ImageArchivePath() string { return s.localPath(s.ImageArchive) }

func asCID(s string) (cid.Cid, bool) {
	c, err := cid.Decode(s)
	return c, err == nil
}

// localPath resolves p when it is a local path, and returns "" for a CID.
func (s *Spec) localPath(p string) string {
	if _, ok := asCID(p); ok {
		return ""
	}
	return s.resolve(p)
}

// InputDirPath returns the input directory resolved against the spec file's
// directory; "" when the job has none.
func (s *Spec) InputDirPath() string { return s.resolve(s.InputDir) }

func (s *Spec) resolve(p string) string {
	if p == "" || s.dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.dir, filepath.FromSlash(p))
}

// Task returns what a node runs for this spec, with the program (the Wasm
// module, or the docker image archive), stdin and input archive named by the
// CIDs the submitter uploaded ("" for none).
func (s *Spec) Task(moduleCID, stdinCID, inputsCID string) types.Task {
	return types.Task{
		Executor:     s.Executor,
		Module:       moduleCID,
		Args:         slices.Clone(s.Args),
		Env:          maps.Clone(s.Env),
		Stdin:        stdinCID,
		Inputs:       inputsCID,
		Resources:    s.Resources,
		Timeout:      time.Duration(s.Timeout),
		Image:        s.Image,
		Network:      s.Network,
		WritableRoot: s.WritableRoot,
		Pids:         s.Pids,
		Warm:         s.Warm,
		Files:        types.CloneInputFiles(s.InputFiles),
		Account:      s.Account,
	}
}

// Duration is a time.Duration that reads and writes as a Go duration
// string ("30s", "5m", "1h30m") in both YAML and JSON.
type Duration time.Duration

// String formats d without zero trailing units: "5m", not "5m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// MarshalText writes d as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration; a bare number has no unit and is an error.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%w: %q (want a number with a unit such as 30s, 5m or 1h30m)", ErrBadDuration, b)
	}
	*d = Duration(v)
	return nil
}

// Reschedule is a count of placements after faults that are not the
// program's. It reads and writes as a whole number, and 0 also as never:
// `reschedule: never` is what a job that must not run twice says.
type Reschedule int

// String writes r as a number, or never for 0.
func (r Reschedule) String() string {
	if r == 0 {
		return "never"
	}
	return strconv.Itoa(int(r))
}

// MarshalJSON writes r as a number, or as the string "never" for 0.
func (r Reschedule) MarshalJSON() ([]byte, error) {
	if r == 0 {
		return []byte(`"never"`), nil
	}
	return []byte(strconv.Itoa(int(r))), nil
}

// UnmarshalText reads a whole number, or never (0).
func (r *Reschedule) UnmarshalText(b []byte) error {
	if string(b) == "never" {
		*r = 0
		return nil
	}
	v, err := strconv.Atoi(string(b))
	if err != nil {
		return fmt.Errorf("%w: %q (want a whole number such as 3, or never)", ErrBadReschedule, b)
	}
	*r = Reschedule(v)
	return nil
}

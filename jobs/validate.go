package jobs

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/opendms/dms/orchestrator/quorum"
	"github.com/opendms/dms/types"
)

// FieldError is one problem with one field of a spec. Field is the path of
// the field ("resources.memory"), "" for the document as a whole.
type FieldError struct {
	Field   string
	Problem string
}

func (e FieldError) String() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// SpecError lists every problem found in a spec. It matches ErrInvalidSpec.
type SpecError struct {
	Problems []FieldError
	Doc      string // what was read: "job spec" when empty, "flow spec"
}

func (e *SpecError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	doc := e.Doc
	if doc == "" {
		doc = "job spec"
	}
	return doc + ": " + strings.Join(parts, "; ")
}

// Is reports whether target is ErrInvalidSpec.
func (e *SpecError) Is(target error) bool { return target == ErrInvalidSpec }

// problems collects FieldErrors.
type problems []FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

// err returns nil when there are no problems, else a *SpecError.
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &SpecError{Problems: p}
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	// accountRE is a gateway account's name (dms/gateway).
	accountRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	envKeyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// imageRE is the grammar of a docker image reference
	// ([registry[:port]/]path[:tag][@digest]), as the engine reads it.
	imageRE = regexp.MustCompile(`^` +
		`(?:(?:\[[0-9a-fA-F:]+\]|(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*)(?::[0-9]+)?/)?` + // registry
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` + // path
		`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?` + // tag
		`(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`) // digest
)

// maxImageRef bounds an image reference.
const maxImageRef = 512

// Validate checks every field and reports all problems in one *SpecError.
func (s *Spec) Validate() error { return s.check().err() }

func (s *Spec) check() problems {
	var p problems
	s.checkIdentity(&p)
	s.checkExecutable(&p)
	s.checkProgram(&p)
	s.checkResources(&p)
	s.checkConstraints(&p)
	s.checkSchedule(&p)
	return p
}

func (s *Spec) checkIdentity(p *problems) {
	switch {
	case s.Name == "":
		p.add("name", "required")
	case !nameRE.MatchString(s.Name):
		p.add("name", "%s must be 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", clip(s.Name))
	}
	if !slices.Contains(executors, s.Executor) {
		p.add("executor", "unknown executor %s (known: %s)", clip(s.Executor), strings.Join(executors, ", "))
	}
	if s.Account != "" && !accountRE.MatchString(s.Account) {
		p.add("account", "%s must be 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit", clip(s.Account))
	}
	checkText(p, "input_dir", s.InputDir, false)
	checkInputFiles(p, s.InputFiles)
}

// CheckInputFiles checks a job's input files as Validate does: a spec
// built by a program rather than parsed (a workflow's step) is checked so
// before it is submitted. The error is a *SpecError naming input_files.
func CheckInputFiles(files []types.InputFile) error {
	var p problems
	checkInputFiles(&p, files)
	return p.err()
}

func checkInputFiles(p *problems, files []types.InputFile) {
	for _, ip := range types.InputFileProblems(files) {
		p.add("input_files"+ip.Field, "%s", ip.Problem)
	}
}

// checkExecutable checks what names the program: a module for wasm, an
// image (named, or shipped as an archive) for docker. Each executor refuses
// the other's fields, so a spec never carries a field that has no effect.
func (s *Spec) checkExecutable(p *problems) {
	checkText(p, "module", s.Module, false)
	checkText(p, "image_archive", s.ImageArchive, false)
	switch s.Executor {
	case "wasm":
		if s.Module == "" {
			p.add("module", "required: a local path or a CID")
		}
		for _, f := range s.dockerFields() {
			p.add(f, "only for the docker executor")
		}
	case "docker":
		if s.Module != "" {
			p.add("module", "only for the wasm executor: a docker job names its image with image, or ships it with image_archive")
		}
		switch {
		case s.Image == "" && s.ImageArchive == "":
			p.add("image", "required: an image on the node (name:tag), or image_archive")
		case s.Image != "" && (len(s.Image) > maxImageRef || !imageRE.MatchString(s.Image)):
			p.add("image", "%s is not an image reference such as alpine:3.20 (lowercase name, optional :tag)", clip(s.Image))
		}
		checkRange(p, "pids", s.Pids, 1, MaxPids)
	}
}

// dockerFields names the docker-only fields s sets.
func (s *Spec) dockerFields() []string {
	var set []string
	for f, on := range map[string]bool{
		"image": s.Image != "", "image_archive": s.ImageArchive != "",
		"network": s.Network, "writable_root": s.WritableRoot, "pids": s.Pids != 0,
	} {
		if on {
			set = append(set, f)
		}
	}
	slices.Sort(set)
	return set
}

func (s *Spec) checkProgram(p *problems) {
	size := 0
	for i, a := range s.Args {
		checkText(p, fmt.Sprintf("args[%d]", i), a, false)
		size += len(a)
	}
	for _, k := range sortedKeys(s.Env) {
		if !envKeyRE.MatchString(k) {
			p.add("env", "bad name %s (want letters, digits and '_', not starting with a digit)", clip(k))
		}
		checkText(p, "env."+k, s.Env[k], false)
		size += len(k) + len(s.Env[k])
	}
	if size > MaxArgsEnv {
		p.add("args", "args and env hold %d bytes together; the limit is %d", size, MaxArgsEnv)
	}
	if len(s.Stdin) > MaxStdin {
		p.add("stdin", "%d bytes; the limit is %d", len(s.Stdin), MaxStdin)
	}
	checkText(p, "stdin", s.Stdin, true)
}

// checkText reports text that is not UTF-8, or that holds NUL bytes where
// the guest will see it as a C string.
func checkText(p *problems, field, s string, nulOK bool) {
	if !utf8.ValidString(s) {
		p.add(field, "must be UTF-8 text")
	}
	if !nulOK && strings.ContainsRune(s, 0) {
		p.add(field, "must not contain NUL bytes")
	}
}

func (s *Spec) checkResources(p *problems) {
	r := s.Resources
	if r.CPU <= 0 {
		p.add("resources.cpu", "must be positive")
	}
	if r.Memory <= 0 {
		p.add("resources.memory", "must be positive")
	}
	if r.Disk < 0 {
		p.add("resources.disk", "must not be negative")
	}
	if r.GPUs != 0 && slices.Contains(executors, s.Executor) {
		p.add("resources.gpus", "must be 0: the %s executor has no GPUs", s.Executor)
	}
}

func (s *Spec) checkConstraints(p *problems) {
	c := s.Constraints
	if c.MaxPrice < 0 {
		p.add("constraints.max_price", "must be 0 (no limit) or more")
	}
	for _, k := range sortedKeys(c.Labels) {
		if k == "" {
			p.add("constraints.labels", "label names must not be empty")
		}
		checkText(p, "constraints.labels."+k, k+c.Labels[k], false)
	}
}

func (s *Spec) checkSchedule(p *problems) {
	if s.Warm != nil {
		if err := s.Warm.Check(); err != nil {
			p.add("warm", "%s", err.Error())
		}
	}
	if s.Timeout <= 0 {
		p.add("timeout", "must be positive")
	} else {
		checkRange(p, "timeout", s.Timeout, 0, Duration(MaxTimeout))
	}
	checkRange(p, "retries", s.Retries, 0, MaxRetries)
	checkRange(p, "reschedule", int(s.Reschedule), 0, int(MaxReschedule))
	checkRange(p, "bid_window", s.BidWindow, Duration(MinBidWindow), Duration(MaxBidWindow))
	checkRange(p, "enough_bids", s.EnoughBids, 1, MaxEnoughBids)
	checkRange(p, "queue_timeout", s.QueueTimeout, 0, Duration(MaxQueueTimeout))
	checkRange(p, "deadline", s.Deadline, 0, Duration(MaxDeadline))
	checkRange(p, "replication", s.Replication, 0, quorum.MaxReplication)
	switch {
	case s.Quorum < 0 || s.Quorum > max(s.Replication, 1):
		p.add("quorum", "must be between 1 and the replication (%d)", max(s.Replication, 1))
	case s.Replication > 1 && s.Warm != nil:
		p.add("replication", "a warm instance serves calls: it is not replicated")
	}
}

// Replicated reports whether the job runs on several nodes, its result
// decided by a quorum.
func (s *Spec) Replicated() bool { return s.Replication > 1 }

// checkRange reports v outside [lo, hi].
func checkRange[T int | Duration](p *problems, field string, v, lo, hi T) {
	switch {
	case v < lo:
		p.add(field, "must be at least %v", lo)
	case v > hi:
		p.add(field, "must be at most %v", hi)
	}
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

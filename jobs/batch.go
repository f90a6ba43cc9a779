package jobs

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/orchestrator/quorum"
	"github.com/opendms/dms/types"
)

// Limits and defaults of a batch spec.
const (
	MaxUnits = 100_000
	// DefaultDeadlineFactor: a replica's deadline is, by default, this
	// many times the template's timeout (it also waits for a bid).
	DefaultDeadlineFactor = 2
)

// Batch is many units of one job (docs/batches.md): a template job spec
// and the units, each of which runs the template with its own arguments,
// environment or input file, replicated on distinct providers and decided
// by a quorum of their results. ParseBatch fills in defaults and
// validates; a Batch marshals to JSON that ParseBatch reads back to an
// equal Batch.
type Batch struct {
	Name string `json:"name"`
	// Template is the job each unit runs; "{{unit}}" and "{{index}}" in
	// its args and env are replaced with the unit's value and number.
	Template Spec  `json:"template"`
	Units    Units `json:"units"`
	// Replication, Quorum, MaxReplicas and Adaptive decide each unit's
	// result (quorum.Policy).
	Replication int  `json:"replication"`
	Quorum      int  `json:"quorum"`
	MaxReplicas int  `json:"max_replicas"`
	Adaptive    bool `json:"adaptive,omitempty"`
	// Deadline is how long a replica may take, from its issue, before
	// another is issued in its stead (its result still counts).
	Deadline Duration `json:"deadline"`
	// Parallel bounds the replicas under way at once.
	Parallel int `json:"parallel"`
	// Managers run the batch for its submitter, which may then go offline
	// (docs/batches.md); none: the submitter runs it.
	Managers Managers `json:"managers,omitzero"`

	dir string // directory of the batch file
}

// Units are a batch's units: exactly one of Range, Params, Dir or Files.
type Units struct {
	// Range: one unit per number, {{unit}} the number.
	Range *Range `json:"range,omitempty"`
	// Params: one unit per item, {{unit}} its index; an item's args
	// replace the template's, its env adds to the template's.
	Params []Param `json:"params,omitempty"`
	// Dir: one unit per file of a local directory (not in subdirectories),
	// which the client uploads and turns into Files.
	Dir string `json:"dir,omitempty"`
	// Files: one unit per file, by name and CID, in name order: the file is
	// at /inputs/NAME, and {{unit}} is NAME.
	Files map[string]string `json:"files,omitempty"`
}

// MaxManagers bounds a batch's managers: a raft group of them.
const MaxManagers = 7

// Managers are the nodes a batch is handed to, written as a count
// ("managers: 3", chosen by the submitter among its peers) or a list of
// PeerIDs.
type Managers struct {
	Count int
	Peers []string
}

// Len is how many managers there are to be.
func (m Managers) Len() int { return max(m.Count, len(m.Peers)) }

// IsZero reports whether the batch has no managers: its submitter runs it.
func (m Managers) IsZero() bool { return m.Len() == 0 }

// MarshalJSON writes the list when there is one, else the count.
func (m Managers) MarshalJSON() ([]byte, error) {
	if m.Peers != nil {
		return json.Marshal(m.Peers)
	}
	return json.Marshal(m.Count)
}

// UnmarshalYAML reads a whole number or a list of PeerIDs.
func (m *Managers) UnmarshalYAML(n *yaml.Node) error {
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int":
		var c int
		if err := n.Decode(&c); err != nil {
			return err
		}
		*m = Managers{Count: c}
		return nil
	case n.Kind == yaml.SequenceNode:
		var peers []string
		if err := n.Decode(&peers); err != nil {
			return fmt.Errorf("want a list of PeerIDs: %w", err)
		}
		*m = Managers{Peers: peers}
		return nil
	}
	return fmt.Errorf("want a number of managers or a list of PeerIDs, got %s", describe(n))
}

// Param is one unit's arguments and environment.
type Param struct {
	// Args, when not null, replace the template's: [] runs with none.
	Args []string          `json:"args"`
	Env  map[string]string `json:"env,omitempty"`
}

// Range is the numbers From, From+Step, ... up to To, written
// "FROM..TO" or "FROM..TO/STEP".
type Range struct {
	From, To, Step int
}

// Len is how many numbers r holds.
func (r Range) Len() int {
	if r.Step <= 0 || r.To < r.From {
		return 0
	}
	return (r.To-r.From)/r.Step + 1
}

func (r Range) String() string {
	if r.Step == 1 {
		return fmt.Sprintf("%d..%d", r.From, r.To)
	}
	return fmt.Sprintf("%d..%d/%d", r.From, r.To, r.Step)
}

// MarshalText writes r as UnmarshalText reads it.
func (r Range) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalYAML takes a scalar only: a mapping would fill the fields
// without the checks of UnmarshalText.
func (r *Range) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want FROM..TO or FROM..TO/STEP, got %s", describe(n))
	}
	return r.UnmarshalText([]byte(n.Value))
}

// UnmarshalText reads "FROM..TO" or "FROM..TO/STEP".
func (r *Range) UnmarshalText(b []byte) error {
	s := string(b)
	bad := fmt.Errorf("%q is not FROM..TO or FROM..TO/STEP", clip(s))
	from, rest, ok := strings.Cut(s, "..")
	if !ok {
		return bad
	}
	to, step, stepped := strings.Cut(rest, "/")
	var err error
	v := Range{Step: 1}
	if v.From, err = strconv.Atoi(from); err != nil {
		return bad
	}
	if v.To, err = strconv.Atoi(to); err != nil {
		return bad
	}
	if stepped {
		if v.Step, err = strconv.Atoi(step); err != nil {
			return bad
		}
	}
	switch {
	case v.Step < 1:
		return fmt.Errorf("%s: the step must be at least 1", clip(s))
	case v.To < v.From:
		return fmt.Errorf("%s: TO is below FROM", clip(s))
	case (v.To-v.From)/v.Step >= MaxUnits:
		return fmt.Errorf("%s: more than %d units", clip(s), MaxUnits)
	}
	*r = v
	return nil
}

// Len is how many units the batch has.
func (b *Batch) Len() int {
	u := b.Units
	switch {
	case u.Range != nil:
		return u.Range.Len()
	case u.Params != nil:
		return len(u.Params)
	}
	return len(u.Files)
}

// Policy is how the batch decides a unit's result.
func (b *Batch) Policy() quorum.Policy {
	return quorum.Policy{Replication: b.Replication, Quorum: b.Quorum, MaxReplicas: b.MaxReplicas, Adaptive: b.Adaptive}
}

// Unit returns the job unit i runs, named NAME-i, and its value (what
// {{unit}} stands for). Files must be set (Dir uploaded) for a batch over
// a directory.
func (b *Batch) Unit(i int) (*Spec, string, error) {
	if i < 0 || i >= b.Len() {
		return nil, "", fmt.Errorf("batch %s: no unit %d", b.Name, i)
	}
	s := b.Template
	s.Args, s.Env = slices.Clone(s.Args), maps.Clone(s.Env)
	s.InputFiles = slices.Clone(s.InputFiles)
	var value string
	switch u := b.Units; {
	case u.Range != nil:
		value = strconv.Itoa(u.Range.From + i*u.Range.Step)
	case u.Params != nil:
		value = strconv.Itoa(i)
		p := u.Params[i]
		if p.Args != nil {
			s.Args = slices.Clone(p.Args)
		}
		if len(p.Env) > 0 && s.Env == nil {
			s.Env = map[string]string{}
		}
		maps.Copy(s.Env, p.Env)
	default:
		names := slices.Sorted(maps.Keys(u.Files))
		value = names[i]
		s.InputFiles = append(s.InputFiles, types.InputFile{Path: value, CID: u.Files[value]})
	}
	r := strings.NewReplacer("{{unit}}", value, "{{index}}", strconv.Itoa(i))
	for k, a := range s.Args {
		s.Args[k] = r.Replace(a)
	}
	for k, v := range s.Env {
		s.Env[k] = r.Replace(v)
	}
	s.Name = instanceName(b.Name, i)
	return &s, value, nil
}

// Blobs lists, sorted and once each, the content the batch's units run
// from: the template's program (module or image archive), input archive
// and input files, and the units' files. Whoever runs the batch must be
// able to serve them.
func (b *Batch) Blobs() []string {
	out := b.Template.Blobs()
	for _, c := range b.Units.Files {
		out = append(out, c)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// instanceName names unit i's job: the batch's name with its index,
// within a job name's 63 characters.
func instanceName(name string, i int) string {
	suffix := "-" + strconv.Itoa(i)
	return name[:min(len(name), 63-len(suffix))] + suffix
}

// DirPath returns the units' directory resolved against the batch file's
// directory ("" when the units are not a directory).
func (b *Batch) DirPath() string {
	return (&Spec{dir: b.dir}).resolve(b.Units.Dir)
}

// SetDir sets the directory relative paths resolve against: the
// template's module, input_dir and image archive, and the units' dir.
func (b *Batch) SetDir(dir string) {
	b.dir, b.Template.dir = dir, dir
}

// ParseBatch reads a batch spec, as JSON when its first non-space byte is
// '{' and as YAML otherwise. Every error is a *SpecError listing all
// problems found, with their lines.
func ParseBatch(data []byte) (*Batch, error) {
	fail := func(p problems) (*Batch, error) { return nil, &SpecError{Problems: p, Doc: "batch spec"} }
	if len(data) > MaxSpecSize {
		return fail(problems{{Problem: fmt.Sprintf("%d bytes; the limit is %d", len(data), MaxSpecSize)}})
	}
	root, err := parseTree(data)
	if err != nil {
		return fail(problems{{Problem: err.Error()}})
	}
	b := &Batch{Template: *defaultSpec(), Parallel: DefaultParallel}
	var bind binder
	bind.object("", root, reflect.ValueOf(b).Elem())
	b.Template.normalize()
	for i := range b.Units.Params {
		if len(b.Units.Params[i].Env) == 0 {
			b.Units.Params[i].Env = nil
		}
	}
	if b.Template.Name == "" && nameRE.MatchString(b.Name) {
		b.Template.Name = b.Name
	}
	p := bind.problems.merge(b.check())
	if len(p) > 0 {
		return fail(p)
	}
	return b, nil
}

// ParseBatchFile reads and parses the batch at path; relative paths in it
// resolve against the file's directory.
func ParseBatchFile(p string) (*Batch, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("batch spec: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("batch spec: reading %s: %w", p, err)
	}
	b, err := ParseBatch(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	b.SetDir(filepath.Dir(p))
	return b, nil
}

// check fills in the defaults that depend on other fields and lists what
// is wrong.
func (b *Batch) check() problems {
	var p problems
	switch {
	case b.Name == "":
		p.add("name", "required")
	case !nameRE.MatchString(b.Name):
		p.add("name", "%s must be 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", clip(b.Name))
	}
	p = append(p, prefixed("template", b.Template.check())...)
	if b.Template.Replication != 0 || b.Template.Quorum != 0 {
		p.add("template.replication", "a batch replicates its units by its own replication and quorum, at the top level")
	}
	if b.Template.Warm != nil {
		p.add("template", "a batch's units run once: no warm instances")
	}
	u := b.Units
	given := 0
	for _, set := range []bool{u.Range != nil, u.Params != nil, u.Dir != "", u.Files != nil} {
		if set {
			given++
		}
	}
	switch {
	case given != 1:
		p.add("units", "give exactly one of range, params, dir or files")
	case u.Params != nil && len(u.Params) == 0, u.Files != nil && len(u.Files) == 0:
		p.add("units", "no units: a batch of nothing")
	case len(u.Params) > MaxUnits || len(u.Files) > MaxUnits:
		p.add("units", "%d units; the limit is %d", max(len(u.Params), len(u.Files)), MaxUnits)
	}
	for name, c := range u.Files {
		if err := types.CheckInputPath(name); err != nil || strings.Contains(name, "/") {
			p.add("units.files", "%s: a unit's file is named by a plain file name", clip(name))
		} else if _, err := cid.Decode(c); err != nil {
			p.add("units.files."+name, "%s is not a CID", clip(c))
		}
	}
	if b.Replication == 0 {
		b.Replication = 1
	}
	if b.Quorum == 0 {
		b.Quorum = b.Replication/2 + 1
	}
	if b.MaxReplicas == 0 {
		b.MaxReplicas = min(2*b.Replication+1, quorum.MaxReplicas)
	}
	if b.Deadline == 0 {
		b.Deadline = DefaultDeadlineFactor * b.Template.Timeout
	}
	if err := b.Policy().Check(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			field, problem, _ := strings.Cut(line, ": ")
			p.add(field, "%s", problem)
		}
	}
	checkRange(&p, "deadline", b.Deadline, Duration(time.Second), Duration(MaxTimeout))
	checkRange(&p, "parallel", b.Parallel, 1, MaxParallel)
	m := b.Managers
	checkRange(&p, "managers", m.Len(), 0, MaxManagers)
	if m.Peers != nil && len(m.Peers) == 0 {
		p.add("managers", "an empty list: name the managers, or give their number")
	}
	for i, id := range m.Peers {
		if err := types.CheckPeerID(id); err != nil {
			p.add(fmt.Sprintf("managers[%d]", i), "%v", err)
		} else if slices.Index(m.Peers, id) != i {
			p.add(fmt.Sprintf("managers[%d]", i), "%s is named twice", clip(id))
		}
	}
	return p
}

// UnmarshalJSON reads a batch as ParseBatch does: a stored or received
// batch is checked like a written one.
func (b *Batch) UnmarshalJSON(data []byte) error {
	c, err := ParseBatch(data)
	if err != nil {
		return err
	}
	*b = *c
	return nil
}

// MarshalJSON writes the batch in the form ParseBatch reads.
func (b *Batch) MarshalJSON() ([]byte, error) {
	type plain Batch // without the methods
	return json.Marshal((*plain)(b))
}

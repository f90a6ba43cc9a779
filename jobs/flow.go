package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/graph"
)

// Limits of a flow spec.
const (
	DefaultParallel = 64
	MaxParallel     = 10_000
	MaxSteps        = 1_000
	// MaxItems bounds the items of one for_each: the instances of a step.
	MaxItems = 100_000
)

// Flow is a workflow as its submitter writes it: named steps, each a job
// or a call of a deployed function, whose inputs may name other steps'
// outputs (docs/workflows.md). ParseFlow fills in defaults and validates;
// a Flow marshals to JSON that ParseFlow reads back to an equal Flow.
type Flow struct {
	Name string
	// Parallel bounds the step instances running at once.
	Parallel int
	Steps    []*Step // in document order
	// Outputs are what the flow answers with; by default the stdout of
	// every step that no step needs.
	Outputs []Ref
	dir     string // directory of the flow file
}

// Step is one step of a flow: a job (Job set) or a function call (Call
// set), run once, or once per item of ForEach.
type Step struct {
	Name string
	// Needs are the steps that must complete first: those given in needs,
	// and those the step's references name. Sorted.
	Needs   []string
	ForEach *ForEach
	Inputs  map[string]Ref // a path under /inputs ("dir/" for several files) -> what it holds
	// Cache lets an instance reuse the result of an earlier identical
	// run; false runs it every time. Calls are never cached.
	Cache bool
	Job   *Spec
	Call  *Call
	Line  int // where the step starts in its document; 0 when unknown
}

// Call is a step that calls a function deployed on this node's gateway,
// as one of its accounts. Body (literal) or BodyFrom (a reference) is the
// request body; the response body is the step's stdout.
type Call struct {
	Function string
	Account  string
	Body     string
	BodyFrom *Ref
	Timeout  Duration // one call's time limit
	Retries  int      // calls again after a failed call
}

// ForEach makes a step a fan-out: one instance per item. Exactly one field
// is set. Items are strings (an instance's {{item}}); From names other
// steps' outputs, one instance per blob; Dir is a local directory whose
// files the submitter uploads into Files (file name -> CID).
type ForEach struct {
	Items []string
	From  *Ref
	Dir   string
	Files map[string]string
}

// RefKind is what a Ref names of its step.
type RefKind string

// The kinds of reference.
const (
	RefStdout RefKind = "stdout" // STEP.stdout
	RefStderr RefKind = "stderr" // STEP.stderr
	RefFile   RefKind = "file"   // STEP/PATH: one output file
	RefFiles  RefKind = "files"  // STEP/*: every output file
	RefItem   RefKind = "item"   // item: this instance's for_each item
)

// Ref names outputs of a step: STEP.stdout, STEP.stderr, STEP/PATH,
// STEP/*, or the current for_each item.
type Ref struct {
	Step string
	Kind RefKind
	Path string // for RefFile
}

var (
	stepNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	refRE      = regexp.MustCompile(`^([a-z0-9][a-z0-9_-]{0,62})(?:\.(stdout|stderr)|/(.+))$`)
)

// ParseRef reads a reference.
func ParseRef(s string) (Ref, error) {
	if s == "item" {
		return Ref{Kind: RefItem}, nil
	}
	m := refRE.FindStringSubmatch(s)
	switch {
	case m == nil:
		return Ref{}, fmt.Errorf("%s is not a reference: want STEP.stdout, STEP.stderr, STEP/PATH, STEP/* or item", clip(s))
	case m[2] != "":
		return Ref{Step: m[1], Kind: RefKind(m[2])}, nil
	case m[3] == "*":
		return Ref{Step: m[1], Kind: RefFiles}, nil
	}
	if err := checkRelPath(m[3]); err != nil {
		return Ref{}, fmt.Errorf("%s: %w", clip(s), err)
	}
	return Ref{Step: m[1], Kind: RefFile, Path: m[3]}, nil
}

func (r Ref) String() string {
	switch r.Kind {
	case RefItem:
		return "item"
	case RefFiles:
		return r.Step + "/*"
	case RefFile:
		return r.Step + "/" + r.Path
	}
	return r.Step + "." + string(r.Kind)
}

// checkRelPath accepts a clean, relative, slash-separated path.
func checkRelPath(p string) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("empty path")
	case strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\\'):
		return fmt.Errorf("path %s holds a NUL byte or a backslash", clip(p))
	case path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("path %s must be relative and clean (no leading /, no .., no //)", clip(p))
	}
	return nil
}

// flowKeys are the fields of a step that are not a job spec's.
var flowKeys = []string{"needs", "for_each", "inputs", "cache", "call", "account", "body", "body_from"}

// callJobKeys are the job fields a call step may give.
var callJobKeys = []string{"timeout", "retries"}

// ParseFlow reads a flow spec, as JSON when its first non-space byte is '{'
// and as YAML otherwise, fills in defaults and validates it. Every error is
// a *SpecError listing all problems found, with their lines.
func ParseFlow(data []byte) (*Flow, error) {
	fail := func(p problems) (*Flow, error) { return nil, &SpecError{Problems: p, Doc: "flow spec"} }
	if len(data) > MaxSpecSize {
		return fail(problems{{Problem: fmt.Sprintf("%d bytes; the limit is %d", len(data), MaxSpecSize)}})
	}
	root, err := parseTree(data)
	if err != nil {
		return fail(problems{{Problem: err.Error()}})
	}
	fp := flowParser{f: &Flow{Parallel: DefaultParallel}}
	fp.document(root)
	if len(fp.problems) == 0 {
		fp.check()
	}
	if len(fp.problems) > 0 {
		return fail(fp.problems)
	}
	return fp.f, nil
}

// ParseFlowFile reads and parses the flow at path. Relative paths in it
// (modules, input directories, for_each directories) resolve against the
// file's directory.
func ParseFlowFile(p string) (*Flow, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("flow spec: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("flow spec: reading %s: %w", p, err)
	}
	f, err := ParseFlow(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	f.SetDir(filepath.Dir(p))
	return f, nil
}

// SetDir sets the directory relative paths resolve against.
func (f *Flow) SetDir(dir string) {
	f.dir = dir
	for _, s := range f.Steps {
		if s.Job != nil {
			s.Job.dir = dir
		}
	}
}

// Blobs lists, sorted and once each, the content the flow's steps run
// from: each job step's blobs (Spec.Blobs) and the files of each
// for_each over files. Whoever runs the flow must keep them until it ends.
func (f *Flow) Blobs() []string {
	var out []string
	for _, s := range f.Steps {
		if s.Job != nil {
			out = append(out, s.Job.Blobs()...)
		}
		if s.ForEach != nil {
			for _, c := range s.ForEach.Files {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Step returns the step named name, or nil.
func (f *Flow) Step(name string) *Step {
	for _, s := range f.Steps {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ForEachDirPath returns a for_each directory resolved against the flow
// file's directory.
func (f *Flow) ForEachDirPath(s *Step) string {
	if s.ForEach == nil {
		return ""
	}
	return (&Spec{dir: f.dir}).resolve(s.ForEach.Dir)
}

// Graph returns the steps' dependencies: an edge from each need to its step.
func (f *Flow) Graph() *graph.DAG[string] {
	g := graph.New[string]()
	for _, s := range f.Steps {
		g.AddNode(s.Name)
		for _, n := range s.Needs {
			g.AddEdge(n, s.Name)
		}
	}
	return g
}

// Refs lists every reference the step makes: inputs (sorted by key),
// body_from, for_each.
func (s *Step) Refs() []Ref {
	var out []Ref
	for _, k := range slices.Sorted(maps.Keys(s.Inputs)) {
		out = append(out, s.Inputs[k])
	}
	for _, r := range []*Ref{s.callBody(), s.forEachFrom()} {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out
}

func (s *Step) callBody() *Ref {
	if s.Call == nil {
		return nil
	}
	return s.Call.BodyFrom
}

func (s *Step) forEachFrom() *Ref {
	if s.ForEach == nil {
		return nil
	}
	return s.ForEach.From
}

// FanOut reports whether the step runs once per item.
func (s *Step) FanOut() bool { return s.ForEach != nil }

// flowParser collects the problems of one flow document.
type flowParser struct {
	f        *Flow
	problems problems
	lines    map[string]int // step -> line
}

func (p *flowParser) add(field string, n *yaml.Node, format string, args ...any) {
	p.problems.add(field, "%s%s", fmt.Sprintf(format, args...), at(n))
}

func (p *flowParser) document(root *yaml.Node) {
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		p.add("", root, "want a mapping with name and steps, got %s", describe(root))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], deref(root.Content[i+1])
		if seen[key.Value] != nil {
			p.add(key.Value, key, "given twice, first at line %d", seen[key.Value].Line)
			continue
		}
		seen[key.Value] = key
		switch key.Value {
		case "name":
			p.scalar("name", val, &p.f.Name)
		case "parallel":
			if err := val.Decode(&p.f.Parallel); err != nil || val.ShortTag() != "!!int" {
				p.add("parallel", val, "want a whole number, got %s", describe(val))
			}
		case "steps":
			p.steps(val)
		case "outputs":
			for _, s := range p.strings("outputs", val) {
				r, err := ParseRef(s.Value)
				if err != nil {
					p.add("outputs", s, "%s", err.Error())
					continue
				}
				p.f.Outputs = append(p.f.Outputs, r)
			}
		default:
			p.problems.add("", "unknown field %s%s; known fields: name, parallel, steps, outputs", clip(key.Value), at(key))
		}
	}
	switch {
	case p.f.Name == "":
		p.problems.add("name", "required")
	case !nameRE.MatchString(p.f.Name):
		p.problems.add("name", "%s must be 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", clip(p.f.Name))
	}
	if seen["steps"] == nil {
		p.problems.add("steps", "required: a mapping of step names to steps")
	}
	checkRange(&p.problems, "parallel", p.f.Parallel, 1, MaxParallel)
}

func (p *flowParser) scalar(field string, n *yaml.Node, dst *string) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		p.add(field, n, "want a string, got %s", describe(n))
		return false
	}
	*dst = n.Value
	return true
}

// strings reads a list of strings.
func (p *flowParser) strings(field string, n *yaml.Node) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.add(field, n, "want a list, got %s", describe(n))
		return nil
	}
	var out []*yaml.Node
	for _, item := range n.Content {
		item = deref(item)
		if item.Kind != yaml.ScalarNode {
			p.add(field, item, "want a string, got %s", describe(item))
			continue
		}
		out = append(out, item)
	}
	return out
}

func (p *flowParser) steps(n *yaml.Node) {
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		p.add("steps", n, "want a mapping of step names to steps, got %s", describe(n))
		return
	}
	p.lines = map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], deref(n.Content[i+1])
		name := key.Value
		field := "steps." + name
		switch {
		case key.Kind != yaml.ScalarNode || !stepNameRE.MatchString(name):
			p.add("steps", key, "step name %s must be 1 to 63 of a-z, 0-9, '_', '-', starting with a letter or digit", clip(name))
			continue
		case name == "item":
			p.add("steps", key, "item is a reference of its own and cannot name a step")
			continue
		case p.lines[name] != 0:
			p.add(field, key, "given twice, first at line %d", p.lines[name])
			continue
		}
		p.lines[name] = key.Line
		if len(p.f.Steps) == MaxSteps {
			p.add("steps", key, "more than %d steps", MaxSteps)
			return
		}
		if s := p.step(field, name, val); s != nil {
			s.Line = key.Line
			p.f.Steps = append(p.f.Steps, s)
		}
	}
}

// step reads one step: its flow fields here, the rest as a job spec.
func (p *flowParser) step(field, name string, n *yaml.Node) *Step {
	if n.Kind != yaml.MappingNode {
		p.add(field, n, "want a mapping of fields, got %s", describe(n))
		return nil
	}
	s := &Step{Name: name, Cache: true}
	job := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line}
	var jobKeys []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], deref(n.Content[i+1])
		f := field + "." + key.Value
		if !slices.Contains(flowKeys, key.Value) {
			if key.Value == "name" {
				p.add(f, key, "a step is named by its key in steps")
				continue
			}
			job.Content = append(job.Content, key, val)
			jobKeys = append(jobKeys, key)
			continue
		}
		p.flowField(s, f, key, val)
	}
	if s.Call != nil {
		for _, k := range jobKeys {
			if !slices.Contains(callJobKeys, k.Value) {
				p.add(field+"."+k.Value, k, "a call step runs a function: it takes only %s of a job's fields", strings.Join(callJobKeys, ", "))
			}
		}
		if s.Call.Account == "" {
			p.add(field+".account", n, "required in a call step: the gateway account the call is made as")
		}
		if s.Call.Body != "" && s.Call.BodyFrom != nil {
			p.add(field+".body", n, "give body or body_from, not both")
		}
		spec := defaultSpec()
		var b binder
		b.object(field, job, reflect.ValueOf(spec).Elem())
		p.problems = append(p.problems, b.problems...)
		s.Job = nil
		s.Call.Timeout, s.Call.Retries = spec.Timeout, spec.Retries
		checkRange(&p.problems, field+".retries", spec.Retries, 0, MaxRetries)
		if spec.Timeout <= 0 || spec.Timeout > Duration(MaxTimeout) {
			p.add(field+".timeout", n, "must be positive and at most %v", Duration(MaxTimeout))
		}
		return s
	}
	nameKey := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "name"}
	nameVal := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}
	job.Content = append(job.Content, nameKey, nameVal)
	spec := defaultSpec()
	var b binder
	b.object(field, job, reflect.ValueOf(spec).Elem())
	spec.normalize()
	p.problems = append(p.problems, b.problems.merge(prefixed(field, spec.check()))...)
	s.Job = spec
	return s
}

// prefixed puts a step's path before the fields of its job's problems.
func prefixed(field string, ps problems) problems {
	for i := range ps {
		ps[i].Field = join(field, ps[i].Field)
	}
	return ps
}

func (p *flowParser) flowField(s *Step, f string, key, val *yaml.Node) {
	ref := func() *Ref {
		var v string
		if !p.scalar(f, val, &v) {
			return nil
		}
		r, err := ParseRef(v)
		if err != nil {
			p.add(f, val, "%s", err.Error())
			return nil
		}
		return &r
	}
	call := func() *Call {
		if s.Call == nil {
			s.Call = &Call{}
		}
		return s.Call
	}
	switch key.Value {
	case "needs":
		for _, n := range p.strings(f, val) {
			s.Needs = append(s.Needs, n.Value)
		}
	case "for_each":
		p.forEach(s, f, val)
	case "inputs":
		if val.Kind != yaml.MappingNode {
			p.add(f, val, "want a mapping of paths under /inputs to references, got %s", describe(val))
			return
		}
		s.Inputs = map[string]Ref{}
		for i := 0; i+1 < len(val.Content); i += 2 {
			k, v := val.Content[i], deref(val.Content[i+1])
			if err := checkRelPath(strings.TrimSuffix(k.Value, "/")); err != nil {
				p.add(f, k, "%s", err.Error())
				continue
			}
			if _, dup := s.Inputs[k.Value]; dup {
				p.add(f+"."+k.Value, k, "given twice")
				continue
			}
			var str string
			if !p.scalar(f+"."+k.Value, v, &str) {
				continue
			}
			r, err := ParseRef(str)
			if err != nil {
				p.add(f+"."+k.Value, v, "%s", err.Error())
				continue
			}
			s.Inputs[k.Value] = r
		}
	case "cache":
		if err := val.Decode(&s.Cache); err != nil || val.ShortTag() != "!!bool" {
			p.add(f, val, "want true or false, got %s", describe(val))
		}
	case "call":
		p.scalar(f, val, &call().Function)
	case "account":
		p.scalar(f, val, &call().Account)
	case "body":
		p.scalar(f, val, &call().Body)
	case "body_from":
		call().BodyFrom = ref()
	}
}

func (p *flowParser) forEach(s *Step, f string, n *yaml.Node) {
	fe := &ForEach{}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range p.strings(f, n) {
			fe.Items = append(fe.Items, item.Value)
		}
		if len(n.Content) == 0 {
			p.add(f, n, "an empty list: a step with no items would never run")
		}
		if len(fe.Items) > MaxItems {
			p.add(f, n, "%d items; the limit is %d", len(fe.Items), MaxItems)
		}
	case yaml.ScalarNode:
		r, err := ParseRef(n.Value)
		switch {
		case err != nil:
			p.add(f, n, "%s", err.Error())
		case r.Kind == RefItem:
			p.add(f, n, "item names an item of this step: for_each takes a list, another step's outputs or {dir: PATH}")
		default:
			fe.From = &r
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], deref(n.Content[i+1])
			switch k.Value {
			case "dir":
				p.scalar(f+".dir", v, &fe.Dir)
			case "files":
				if v.Kind != yaml.MappingNode {
					p.add(f+".files", v, "want a mapping of file names to CIDs, got %s", describe(v))
					continue
				}
				fe.Files = map[string]string{}
				for j := 0; j+1 < len(v.Content); j += 2 {
					name, c := v.Content[j], deref(v.Content[j+1])
					if err := checkRelPath(name.Value); err != nil {
						p.add(f+".files", name, "%s", err.Error())
						continue
					}
					if _, err := cid.Decode(c.Value); err != nil {
						p.add(f+".files."+name.Value, c, "%s is not a CID", clip(c.Value))
						continue
					}
					fe.Files[name.Value] = c.Value
				}
				if len(fe.Files) > MaxItems {
					p.add(f+".files", v, "%d files; the limit is %d", len(fe.Files), MaxItems)
				}
			default:
				p.add(f, k, "unknown field %s; for_each takes a list, a reference (STEP/*), {dir: PATH} or {files: {NAME: CID}}", clip(k.Value))
			}
		}
		if (fe.Dir == "") == (fe.Files == nil) {
			p.add(f, n, "give dir or files")
		}
	default:
		p.add(f, n, "want a list, a reference or {dir: PATH}, got %s", describe(n))
	}
	s.ForEach = fe
}

// check validates what spans steps: references, needs, cycles, outputs.
func (p *flowParser) check() {
	f := p.f
	byName := map[string]*Step{}
	for _, s := range f.Steps {
		byName[s.Name] = s
	}
	for _, s := range f.Steps {
		field := "steps." + s.Name
		line := fmt.Sprintf(" (step at line %d)", s.Line)
		needs := map[string]bool{}
		for _, n := range s.Needs {
			switch {
			case byName[n] == nil:
				p.problems.add(field+".needs", "no step %s%s", clip(n), line)
			case n == s.Name:
				p.problems.add(field+".needs", "a step cannot need itself%s", line)
			}
			needs[n] = true
		}
		for _, k := range slices.Sorted(maps.Keys(s.Inputs)) {
			p.checkRef(s, field+".inputs."+k, s.Inputs[k], strings.HasSuffix(k, "/"), byName, line)
		}
		if r := s.callBody(); r != nil {
			p.checkRef(s, field+".body_from", *r, false, byName, line)
		}
		if r := s.forEachFrom(); r != nil {
			p.checkRef(s, field+".for_each", *r, true, byName, line)
		}
		for _, r := range s.Refs() {
			if r.Kind != RefItem && byName[r.Step] != nil && r.Step != s.Name {
				needs[r.Step] = true
			}
		}
		delete(needs, s.Name)
		s.Needs = slices.Sorted(maps.Keys(needs))
		if s.Call != nil && s.Call.Function == "" {
			p.problems.add(field+".call", "required: the function to call%s", line)
		}
		if s.Call != nil && s.ForEach != nil && s.ForEach.Dir != "" {
			p.problems.add(field+".for_each", "a call step takes a list or another step's outputs%s", line)
		}
	}
	for _, r := range f.Outputs {
		if r.Kind == RefItem || byName[r.Step] == nil {
			p.problems.add("outputs", "%s names no step", r)
		}
	}
	if len(p.problems) > 0 {
		return
	}
	if cyc := f.Graph().Cycle(); cyc != nil {
		p.problems.add("steps", "cycle: %s (line %d)", strings.Join(cyc, " -> "), p.lines[cyc[0]])
	}
	if f.Outputs == nil {
		g := f.Graph()
		for _, s := range f.Steps {
			if len(g.Succs(s.Name)) == 0 {
				f.Outputs = append(f.Outputs, Ref{Step: s.Name, Kind: RefStdout})
			}
		}
	}
}

func (p *flowParser) checkRef(s *Step, field string, r Ref, many bool, byName map[string]*Step, line string) {
	if r.Kind == RefItem {
		if s.ForEach == nil {
			p.problems.add(field, "item is only in a step with for_each%s", line)
		}
		if many {
			p.problems.add(field, "item is one file: its key must not end in /%s", line)
		}
		return
	}
	from := byName[r.Step]
	switch {
	case from == nil:
		p.problems.add(field, "%s names no step%s", r, line)
	case from == s:
		p.problems.add(field, "%s names the step itself%s", r, line)
	case !many && (r.Kind == RefFiles || from.FanOut()):
		why := "names every output file of " + r.Step
		if from.FanOut() {
			why = "names an output of every instance of " + r.Step + " (it has for_each)"
		}
		p.problems.add(field, "%s %s: give it a key ending in / (a directory)%s", r, why, line)
	case many && !strings.HasSuffix(field, ".for_each") && r.Kind != RefFiles && !from.FanOut():
		p.problems.add(field, "%s is one file: its key must not end in /%s", r, line)
	}
}

// UnmarshalJSON reads a flow as ParseFlow does: a stored or received flow
// is checked like a written one.
func (f *Flow) UnmarshalJSON(data []byte) error {
	g, err := ParseFlow(data)
	if err != nil {
		return err
	}
	*f = *g
	return nil
}

// MarshalJSON writes the flow in the form ParseFlow reads, steps in their
// order.
func (f *Flow) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	name, _ := json.Marshal(f.Name)
	fmt.Fprintf(&b, `{"name":%s,"parallel":%d,"steps":{`, name, f.Parallel)
	for i, s := range f.Steps {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(s.Name)
		v, err := s.marshal()
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteString(`}`)
	if f.Outputs != nil {
		outs := make([]string, len(f.Outputs))
		for i, r := range f.Outputs {
			outs[i] = r.String()
		}
		o, _ := json.Marshal(outs)
		b.WriteString(`,"outputs":`)
		b.Write(o)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (s *Step) marshal() ([]byte, error) {
	m := map[string]any{}
	if s.Job != nil {
		data, err := json.Marshal(s.Job)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		delete(m, "name")
	}
	if c := s.Call; c != nil {
		m["call"], m["account"] = c.Function, c.Account
		if c.Body != "" {
			m["body"] = c.Body
		}
		if c.BodyFrom != nil {
			m["body_from"] = c.BodyFrom.String()
		}
		m["timeout"], m["retries"] = c.Timeout, c.Retries
	}
	if len(s.Needs) > 0 {
		m["needs"] = s.Needs
	}
	if fe := s.ForEach; fe != nil {
		switch {
		case fe.Items != nil:
			m["for_each"] = fe.Items
		case fe.From != nil:
			m["for_each"] = fe.From.String()
		case fe.Files != nil:
			m["for_each"] = map[string]any{"files": fe.Files}
		default:
			m["for_each"] = map[string]any{"dir": fe.Dir}
		}
	}
	if len(s.Inputs) > 0 {
		in := map[string]string{}
		for k, r := range s.Inputs {
			in[k] = r.String()
		}
		m["inputs"] = in
	}
	if !s.Cache && s.Call == nil {
		m["cache"] = false
	}
	return json.Marshal(m)
}

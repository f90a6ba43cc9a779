package flow

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/opendms/dms/graph"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Outcome is what a finished instance produced: its result, the node that
// ran it ("" for a call: the gateway answered), whether the result came
// from the cache, and the node whose shared cache gave it ("" for one this
// node ran).
type Outcome struct {
	Result     *types.Result `json:"result"`
	Node       string        `json:"node,omitempty"`
	Cached     bool          `json:"cached,omitempty"`
	CachedFrom string        `json:"cached_from,omitempty"`
}

// Task is one instance of a step, ready to run: the shell runs Spec as a
// job, or makes Call, after storing Blobs (literal items) in its store.
type Task struct {
	Step  string
	Index int
	Key   string // the instance's name: the index, or its file item's name
	Spec  *jobs.Spec
	Call  *CallTask
	Blobs map[string][]byte // CID -> bytes the shell must hold before running
	// CacheKey identifies the run's inputs; "" when the step is not
	// cached. Equal keys give equal results.
	CacheKey string
}

// CallTask is a function call to make. The body is Body, or the blob
// BodyFile names.
type CallTask struct {
	Function, Account string
	Body              string
	BodyFile          *types.InputFile
}

// Plan follows one flow: which steps may start, what each instance of a
// started step runs with, as instances finish. It is pure: the shell runs
// tasks and reports their outcomes; a restarted shell replays the outcomes
// it persisted. Not safe for concurrent use.
type Plan struct {
	f      *jobs.Flow
	ready  *graph.Ready[string]
	steps  map[string]*stepState
	failed string // why the flow failed; "" while it has not
}

type stepState struct {
	s        *jobs.Step
	tasks    []Task     // the instances, once expanded
	outcomes []*Outcome // by index; nil while running
	left     int        // instances not finished
}

// New plans f, which must have passed jobs.ParseFlow (or Validate).
func New(f *jobs.Flow) (*Plan, error) {
	g := f.Graph()
	ready, err := g.Ready()
	if err != nil {
		return nil, err
	}
	p := &Plan{f: f, ready: ready, steps: map[string]*stepState{}}
	for _, s := range f.Steps {
		p.steps[s.Name] = &stepState{s: s}
	}
	if err := p.checkFanIns(); err != nil {
		return nil, err
	}
	return p, nil
}

// checkFanIns refuses a flow in which some step would take more input
// files than a task may name (types.MaxInputFiles, MaxInputFilesSize),
// counting the instances known so far: a list's or an uploaded
// directory's items at once, another step's outputs once that step has
// expanded. It runs before the instances that would feed such a step
// start, so no work is done for a step that could never run.
func (p *Plan) checkFanIns() error {
	for _, s := range p.f.Steps {
		if p.steps[s.Name].tasks != nil {
			continue // expanded: its tasks were checked as they were made
		}
		files, size := 0, 0
		for _, key := range slices.Sorted(maps.Keys(s.Inputs)) {
			n := 1
			if r := s.Inputs[key]; r.Kind == jobs.RefFiles {
				n = 0 // an instance may write no file
			} else if r.Kind != jobs.RefItem {
				n = p.instances(r.Step)
			}
			files += n
			size += n * (minFileJSON + len(key))
		}
		if files > types.MaxInputFiles || size > types.MaxInputFilesSize {
			return fmt.Errorf("step %s would take at least %d input files (%d bytes as JSON); a task takes at most %d (%d bytes): split the fan-in",
				s.Name, files, size, types.MaxInputFiles, types.MaxInputFilesSize)
		}
	}
	return nil
}

// minFileJSON is the least an input file takes as JSON beside its path:
// its CID, a size and the braces and names of its fields.
var minFileJSON = func() int {
	b, _ := json.Marshal(types.InputFile{CID: types.CIDOf(nil).String()})
	return len(b)
}()

// instances counts the instances of a step as far as known now: 0 while
// it depends on outputs not yet made (a lower bound: the check above
// never refuses a flow that fits).
func (p *Plan) instances(step string) int {
	st := p.steps[step]
	fe := st.s.ForEach
	switch {
	case st.tasks != nil:
		return len(st.tasks)
	case fe == nil:
		return 1
	case fe.Items != nil:
		return len(fe.Items)
	case fe.Files != nil:
		return len(fe.Files)
	case fe.From != nil && fe.From.Kind != jobs.RefFiles:
		return p.instances(fe.From.Step)
	}
	return 0
}

// Start returns the instances of the steps that became ready since the
// last call: every instance of each, in index order. A step whose items
// cannot be resolved fails the flow (see Failed).
func (p *Plan) Start() []Task {
	var out []Task
	for _, name := range p.ready.Take() {
		st := p.steps[name]
		tasks, err := p.expand(st.s)
		if err != nil {
			p.fail(fmt.Sprintf("step %s: %v", name, err))
			return nil
		}
		st.tasks, st.outcomes, st.left = tasks, make([]*Outcome, len(tasks)), len(tasks)
		if err := p.checkFanIns(); err != nil {
			p.fail(err.Error())
			return nil
		}
		if len(tasks) == 0 { // a fan-out over no files
			_ = p.ready.Done(name)
			out = append(out, p.Start()...)
			continue
		}
		out = append(out, tasks...)
	}
	return out
}

// Finish records an instance's outcome. It returns whether this finished
// its step. A finished instance reported again is ignored.
func (p *Plan) Finish(step string, index int, o Outcome) (bool, error) {
	st := p.steps[step]
	if st == nil || index < 0 || index >= len(st.outcomes) {
		return false, fmt.Errorf("flow: no instance %s[%d] started", step, index)
	}
	if st.outcomes[index] != nil {
		return false, nil
	}
	st.outcomes[index] = &o
	if st.left--; st.left > 0 {
		return false, nil
	}
	return true, p.ready.Done(step)
}

// fail marks the flow failed, for reason; the first reason stands.
func (p *Plan) fail(reason string) {
	if p.failed == "" {
		p.failed = reason
	}
}

// Failed says why the flow failed, or "".
func (p *Plan) Failed() string { return p.failed }

// Done reports whether every step finished.
func (p *Plan) Done() bool { return p.ready.Remaining() == 0 }

// Outputs resolves the flow's outputs: the blobs its Outputs name, by
// name (STEP.stdout, STEP.stdout/KEY for a fan-out, ...). Valid once Done.
func (p *Plan) Outputs() ([]types.InputFile, error) {
	var out []types.InputFile
	for _, r := range p.f.Outputs {
		key := r.String() + "/"
		if r.Kind == jobs.RefFiles {
			key = r.Step + "/" // split/part-0.txt, not split/*/part-0.txt
		}
		files, err := p.resolve(r, key, nil)
		if err != nil {
			return nil, err
		}
		if !p.steps[r.Step].s.FanOut() && r.Kind != jobs.RefFiles && len(files) == 1 {
			files[0].Path = r.String()
		}
		out = append(out, files...)
	}
	return out, nil
}

// item is one for_each item.
type item struct {
	key   string
	value string           // {{item}}
	file  *types.InputFile // the item as a file; nil for a list item until made
}

// expand makes the instances of a step whose needs are all done.
func (p *Plan) expand(s *jobs.Step) ([]Task, error) {
	items := []item{{}}
	if fe := s.ForEach; fe != nil {
		var err error
		if items, err = p.items(fe); err != nil {
			return nil, err
		}
	}
	tasks := make([]Task, 0, len(items))
	for i, it := range items {
		t, err := p.task(s, i, it)
		if err != nil {
			return nil, fmt.Errorf("instance %s: %w", it.key, err)
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

func (p *Plan) items(fe *jobs.ForEach) ([]item, error) {
	var out []item
	switch {
	case fe.Items != nil:
		for i, v := range fe.Items {
			out = append(out, item{key: strconv.Itoa(i), value: v})
		}
	case fe.Files != nil:
		for _, name := range slices.Sorted(maps.Keys(fe.Files)) {
			out = append(out, item{key: name, value: name, file: &types.InputFile{Path: name, CID: fe.Files[name]}})
		}
	case fe.From != nil:
		files, err := p.resolve(*fe.From, "", nil)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			out = append(out, item{key: f.Path, value: f.Path, file: &f})
		}
	default:
		return nil, fmt.Errorf("for_each has a directory that was not uploaded")
	}
	if len(out) > jobs.MaxItems {
		return nil, fmt.Errorf("%d items; the limit is %d", len(out), jobs.MaxItems)
	}
	return out, nil
}

// task makes instance i of step s.
func (p *Plan) task(s *jobs.Step, i int, it item) (Task, error) {
	t := Task{Step: s.Name, Index: i, Key: it.key}
	if s.ForEach == nil {
		t.Key = ""
	}
	var files []types.InputFile
	for _, key := range slices.Sorted(maps.Keys(s.Inputs)) {
		got, err := p.resolve(s.Inputs[key], key, &it)
		if err != nil {
			return t, err
		}
		files = append(files, got...)
	}
	for k := range files {
		if files[k].CID == "" { // a list item given as a file
			blob := []byte(it.value)
			c := types.CIDOf(blob).String()
			t.Blobs = map[string][]byte{c: blob}
			files[k].CID, files[k].Size = c, int64(len(blob))
		}
	}
	if s.Call != nil {
		t.Call = &CallTask{Function: s.Call.Function, Account: s.Call.Account, Body: s.Call.Body}
		if r := s.Call.BodyFrom; r != nil && r.Kind == jobs.RefItem && it.file == nil {
			t.Call.Body = it.value // a list item is the body itself
		} else if r != nil {
			got, err := p.resolve(*r, "body", &it)
			if err != nil {
				return t, err
			}
			t.Call.BodyFile = &got[0]
		}
		return t, nil
	}
	spec := *s.Job
	spec.Args = slices.Clone(spec.Args)
	spec.Env = maps.Clone(spec.Env)
	if s.ForEach != nil {
		r := strings.NewReplacer("{{item}}", it.value, "{{index}}", strconv.Itoa(i))
		for k, a := range spec.Args {
			spec.Args[k] = r.Replace(a)
		}
		for k, v := range spec.Env {
			spec.Env[k] = r.Replace(v)
		}
		spec.Name = instanceName(s.Name, i)
	}
	spec.InputFiles = files
	t.Spec = &spec
	if s.Cache && Cacheable(&spec) {
		t.CacheKey = CacheKey(&spec)
	}
	return t, nil
}

// instanceName names instance i's job: the step's name with its index,
// within a job name's 63 characters.
func instanceName(step string, i int) string {
	suffix := "-" + strconv.Itoa(i)
	return step[:min(len(step), 63-len(suffix))] + suffix
}

// resolve lists the files reference r names, under key (a file path, or a
// directory ending in "/"). it is the instance's item for RefItem.
func (p *Plan) resolve(r jobs.Ref, key string, it *item) ([]types.InputFile, error) {
	if r.Kind == jobs.RefItem {
		if it.file != nil {
			f := *it.file
			f.Path = key
			return []types.InputFile{f}, nil
		}
		return []types.InputFile{{Path: key}}, nil // the item's blob: filled by task
	}
	st := p.steps[r.Step]
	fan := st.s.FanOut()
	var out []types.InputFile
	for i, o := range st.outcomes {
		if o == nil || o.Result == nil {
			return nil, fmt.Errorf("%s: instance %d of %s has no result", r, i, r.Step)
		}
		at := key
		if fan {
			at = path.Join(key, st.tasks[i].Key)
		}
		file := func(at, c string) {
			f := types.InputFile{Path: strings.TrimSuffix(at, "/"), CID: c, Size: o.Result.Sizes[c]}
			if o.Node != "" {
				f.From = []string{o.Node}
			}
			out = append(out, f)
		}
		switch r.Kind {
		case jobs.RefStdout:
			file(at, o.Result.Stdout)
		case jobs.RefStderr:
			file(at, o.Result.Stderr)
		case jobs.RefFile:
			c, ok := o.Result.Files[r.Path]
			if !ok {
				return nil, fmt.Errorf("%s: %s wrote no /outputs/%s", r, instanceLabel(st, i), r.Path)
			}
			file(at, c)
		case jobs.RefFiles:
			for _, name := range slices.Sorted(maps.Keys(o.Result.Files)) {
				file(path.Join(at, name), o.Result.Files[name])
			}
		}
	}
	return out, nil
}

func instanceLabel(st *stepState, i int) string {
	if !st.s.FanOut() {
		return "step " + st.s.Name
	}
	return fmt.Sprintf("instance %s of step %s", st.tasks[i].Key, st.s.Name)
}

// Cacheable reports whether a job's result depends only on what CacheKey
// covers: not when it has a network, nor when its docker image is named
// by a tag, which may name other bytes tomorrow.
func Cacheable(s *jobs.Spec) bool {
	return !s.Network && (s.Executor != "docker" || s.ImageArchive != "")
}

// CacheKey identifies what a job computes from: its program, arguments,
// environment and inputs, all by content. Two specs with equal keys run the
// same program on the same bytes. Resources, placement and time limits are
// not part of it: they change where and whether a run ends, not its result.
func CacheKey(s *jobs.Spec) string {
	files := make([][2]string, len(s.InputFiles))
	for i, f := range s.InputFiles {
		files[i] = [2]string{f.Path, f.CID}
	}
	slices.SortFunc(files, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	key := struct {
		V            int               `json:"v"`
		Executor     string            `json:"executor"`
		Module       string            `json:"module,omitempty"`
		Image        string            `json:"image,omitempty"`
		ImageArchive string            `json:"image_archive,omitempty"`
		Network      bool              `json:"network,omitempty"`
		WritableRoot bool              `json:"writable_root,omitempty"`
		Args         []string          `json:"args"`
		Env          map[string]string `json:"env"`
		Stdin        string            `json:"stdin"`
		InputDir     string            `json:"input_dir,omitempty"`
		Files        [][2]string       `json:"files"`
	}{1, s.Executor, s.Module, s.Image, s.ImageArchive, s.Network, s.WritableRoot, s.Args, s.Env, s.Stdin, s.InputDir, files}
	data, _ := json.Marshal(key) // maps marshal with sorted keys
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

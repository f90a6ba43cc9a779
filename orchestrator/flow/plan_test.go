package flow

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

const mod = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"

func parse(t *testing.T, doc string) *jobs.Flow {
	t.Helper()
	f, err := jobs.ParseFlow([]byte(strings.ReplaceAll(doc, "MOD", mod)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// result makes a result whose blobs are named after who made them.
func result(name string, files ...string) *types.Result {
	r := &types.Result{Stdout: "out-" + name, Stderr: "err-" + name, Files: map[string]string{}, Sizes: map[string]int64{"out-" + name: 10}}
	for _, f := range files {
		r.Files[f] = "file-" + name + "-" + f
		r.Sizes["file-"+name+"-"+f] = 100
	}
	return r
}

func keys(ts []Task) []string {
	var out []string
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%s[%s]", t.Step, t.Key))
	}
	return out
}

// TestWordcountPlan: split's files fan out to count, whose stdouts fan in
// to reduce, each input named by CID with the node that holds it.
func TestWordcountPlan(t *testing.T) {
	p, err := New(parse(t, `
name: wc
steps:
  split: {module: MOD, args: [split]}
  count: {for_each: split/*, module: MOD, args: [count, "{{item}}", "{{index}}"], inputs: {part.txt: item}}
  reduce: {module: MOD, inputs: {counts/: count.stdout}}
`))
	if err != nil {
		t.Fatal(err)
	}
	first := p.Start()
	if got := keys(first); !reflect.DeepEqual(got, []string{"split[]"}) {
		t.Fatalf("first tasks %v", got)
	}
	if more := p.Start(); len(more) != 0 {
		t.Fatalf("started again: %v", keys(more))
	}
	if done, err := p.Finish("split", 0, Outcome{Result: result("split", "p1.txt", "p0.txt"), Node: "A"}); !done || err != nil {
		t.Fatalf("split finished: %v %v", done, err)
	}
	counts := p.Start()
	if got := keys(counts); !reflect.DeepEqual(got, []string{"count[p0.txt]", "count[p1.txt]"}) {
		t.Fatalf("count tasks %v", got)
	}
	c0 := counts[0]
	if want := []string{"count", "p0.txt", "0"}; !reflect.DeepEqual(c0.Spec.Args, want) {
		t.Fatalf("args %v, want %v", c0.Spec.Args, want)
	}
	wantIn := []types.InputFile{{Path: "part.txt", CID: "file-split-p0.txt", Size: 100, From: []string{"A"}}}
	if !reflect.DeepEqual(c0.Spec.InputFiles, wantIn) {
		t.Fatalf("inputs %+v, want %+v", c0.Spec.InputFiles, wantIn)
	}
	if c0.Spec.Name != "count-0" || c0.CacheKey == "" || c0.CacheKey == counts[1].CacheKey {
		t.Fatalf("instance name %q, cache keys %q %q", c0.Spec.Name, c0.CacheKey, counts[1].CacheKey)
	}
	if _, err := p.Finish("count", 1, Outcome{Result: result("c1"), Node: "B"}); err != nil {
		t.Fatal(err)
	}
	if got := p.Start(); len(got) != 0 {
		t.Fatalf("reduce started before every count ended: %v", keys(got))
	}
	if done, _ := p.Finish("count", 1, Outcome{Result: result("again")}); done {
		t.Fatal("a finished instance reported again counted")
	}
	if done, _ := p.Finish("count", 0, Outcome{Result: result("c0"), Node: "C", Cached: true}); !done {
		t.Fatal("count not finished")
	}
	reduce := p.Start()
	want := []types.InputFile{
		{Path: "counts/p0.txt", CID: "out-c0", Size: 10, From: []string{"C"}},
		{Path: "counts/p1.txt", CID: "out-c1", Size: 10, From: []string{"B"}},
	}
	if len(reduce) != 1 || !reflect.DeepEqual(reduce[0].Spec.InputFiles, want) {
		t.Fatalf("reduce %+v", reduce)
	}
	if p.Done() {
		t.Fatal("done before reduce")
	}
	p.Finish("reduce", 0, Outcome{Result: result("r"), Node: "A"})
	outs, err := p.Outputs()
	if !p.Done() || err != nil || len(outs) != 1 || outs[0].Path != "reduce.stdout" || outs[0].CID != "out-r" {
		t.Fatalf("outputs %+v %v", outs, err)
	}
	if _, err := p.Finish("nope", 0, Outcome{}); err == nil {
		t.Fatal("an unknown step finished")
	}
}

// TestListItemsAndMissingFile: list items become files when referenced;
// a file a step did not write fails the flow, naming it.
func TestListItemsAndMissingFile(t *testing.T) {
	p, _ := New(parse(t, `
name: f
steps:
  gen: {for_each: [x, y], module: MOD, inputs: {item.txt: item}}
  use: {module: MOD, inputs: {a/: gen/out.txt}}
`))
	gen := p.Start()
	if len(gen) != 2 || gen[0].Blobs == nil || gen[0].Spec.InputFiles[0].CID != types.CIDOf([]byte("x")).String() {
		t.Fatalf("list item as a file: %+v", gen)
	}
	p.Finish("gen", 0, Outcome{Result: result("g0", "out.txt")})
	p.Finish("gen", 1, Outcome{Result: result("g1")})
	if got := p.Start(); got != nil || !strings.Contains(p.Failed(), "instance 1 of step gen wrote no /outputs/out.txt") {
		t.Fatalf("started %v, failed %q", keys(got), p.Failed())
	}
}

// TestCacheKey: what changes the result changes the key; what does not,
// does not.
func TestCacheKey(t *testing.T) {
	base := func() *jobs.Spec {
		return &jobs.Spec{Executor: "wasm", Module: mod, Args: []string{"a"}, Env: map[string]string{"K": "v"},
			InputFiles: []types.InputFile{{Path: "x", CID: "c1", From: []string{"A"}}}, Timeout: 1}
	}
	k := CacheKey(base())
	same := base()
	same.Timeout, same.Retries, same.InputFiles[0].From = 99, 3, []string{"B"}
	if CacheKey(same) != k {
		t.Fatal("time limits or the inputs' holders changed the key")
	}
	for name, change := range map[string]func(*jobs.Spec){
		"args":   func(s *jobs.Spec) { s.Args = []string{"b"} },
		"env":    func(s *jobs.Spec) { s.Env["K"] = "w" },
		"input":  func(s *jobs.Spec) { s.InputFiles[0].CID = "c2" },
		"path":   func(s *jobs.Spec) { s.InputFiles[0].Path = "y" },
		"module": func(s *jobs.Spec) { s.Module = "other" },
		"stdin":  func(s *jobs.Spec) { s.Stdin = "hi" },
	} {
		s := base()
		change(s)
		if CacheKey(s) == k {
			t.Errorf("%s did not change the key", name)
		}
	}
	if Cacheable(&jobs.Spec{Executor: "docker", Image: "x:latest"}) || Cacheable(&jobs.Spec{Executor: "wasm", Network: true}) {
		t.Fatal("a docker image by tag, or a job with a network, is cacheable")
	}
}

// TestEmptyFanOut: a for_each over a step with no files finishes at once
// and lets what needs it start.
func TestEmptyFanOut(t *testing.T) {
	p, _ := New(parse(t, `
name: f
steps:
  a: {module: MOD}
  b: {for_each: a/*, module: MOD}
  c: {module: MOD, inputs: {all/: b.stdout}}
`))
	p.Start()
	p.Finish("a", 0, Outcome{Result: result("a")})
	next := p.Start()
	if got := keys(next); !reflect.DeepEqual(got, []string{"c[]"}) || len(next[0].Spec.InputFiles) != 0 {
		t.Fatalf("after an empty fan-out: %v", got)
	}
}

// TestCallBodyFromListItem: a call step over a list posts each item.
func TestCallBodyFromListItem(t *testing.T) {
	p, _ := New(parse(t, `
name: f
steps:
  hi: {for_each: [ann, bob], call: greet, account: acme, body_from: item}
`))
	tasks := p.Start()
	if len(tasks) != 2 || tasks[1].Call.Body != "bob" || tasks[1].Call.BodyFile != nil {
		t.Fatalf("call tasks %+v", tasks)
	}
}

// TestFanInLimit: a step that would take more input files than a task may
// name is refused before the instances that feed it run: at once when the
// fan-out's items are known, as soon as its producer expands otherwise.
// Fan-ins of two steps add up; a fan-in at the limit is planned.
func TestFanInLimit(t *testing.T) {
	items := func(n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat("x,", n), ",") + "]"
	}
	over := types.MaxInputFiles + 1
	if _, err := New(parse(t, `
name: f
steps:
  a: {for_each: `+items(over)+`, module: MOD}
  b: {module: MOD, inputs: {all/: a.stdout}}
`)); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("step b would take at least %d input files", over)) {
		t.Fatalf("a fan-in of %d stdouts: %v", over, err)
	}
	if _, err := New(parse(t, `
name: f
steps:
  a: {for_each: `+items(6000)+`, module: MOD}
  c: {for_each: `+items(4001)+`, module: MOD}
  b: {module: MOD, inputs: {x/: a.stdout, y/: c.stderr}}
`)); err == nil || !strings.Contains(err.Error(), "at least 10001 input files") {
		t.Fatalf("two fan-ins adding up to 10,001: %v", err)
	}
	p, err := New(parse(t, `
name: f
steps:
  a: {for_each: `+items(types.MaxInputFiles)+`, module: MOD}
  b: {module: MOD, inputs: {all/: a.stdout}}
`))
	if err != nil {
		t.Fatalf("a fan-in at the limit: %v", err)
	}
	if n := len(p.Start()); n != types.MaxInputFiles {
		t.Fatalf("started %d instances", n)
	}

	// The count is known only once split has run: its files are refused
	// before any instance of count starts.
	p, err = New(parse(t, `
name: f
steps:
  split: {module: MOD}
  count: {for_each: split/*, module: MOD}
  reduce: {module: MOD, inputs: {all/: count.stdout}}
`))
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	files := make([]string, over)
	for i := range files {
		files[i] = fmt.Sprintf("part%05d", i)
	}
	p.Finish("split", 0, Outcome{Result: result("split", files...)})
	if next := p.Start(); len(next) != 0 || !strings.Contains(p.Failed(), "step reduce would take at least 10001 input files") {
		t.Fatalf("started %d instances; failed: %q", len(next), p.Failed())
	}
}

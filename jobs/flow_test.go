package jobs

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const wordcountFlow = `
name: wordcount
steps:
  split:
    module: bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy
    args: [split, "4"]
  count:
    for_each: split/*
    module: bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy
    args: [count, "{{item}}"]
    inputs:
      part.txt: item
  reduce:
    module: bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy
    args: [reduce]
    inputs:
      counts/: count.stdout
    cache: false
`

func TestParseFlow(t *testing.T) {
	f, err := ParseFlow([]byte(wordcountFlow))
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "wordcount" || f.Parallel != DefaultParallel || len(f.Steps) != 3 {
		t.Fatalf("flow %+v", f)
	}
	count := f.Step("count")
	if !reflect.DeepEqual(count.Needs, []string{"split"}) || count.ForEach.From.String() != "split/*" || count.Job.Name != "count" {
		t.Fatalf("count step: needs %v for_each %+v job %+v", count.Needs, count.ForEach, count.Job)
	}
	if r := f.Step("reduce"); r.Cache || !reflect.DeepEqual(r.Needs, []string{"count"}) || r.Inputs["counts/"].String() != "count.stdout" {
		t.Fatalf("reduce step %+v", r)
	}
	if len(f.Outputs) != 1 || f.Outputs[0].String() != "reduce.stdout" {
		t.Fatalf("default outputs %v, want the sink's stdout", f.Outputs)
	}
	// The JSON form reads back to the same flow.
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseFlow(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	for _, s := range back.Steps {
		s.Line = 0
	}
	for _, s := range f.Steps {
		s.Line = 0
	}
	if !reflect.DeepEqual(f, back) {
		t.Fatalf("JSON round trip changed the flow:\n%s", data)
	}
}

// TestParseFlowErrors: every problem is named, with the line it is on.
func TestParseFlowErrors(t *testing.T) {
	const m = "module: bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	cases := []struct{ name, doc, want string }{
		{"unknown step field", "name: f\nsteps:\n  a:\n    " + m + "\n    memroy: 1\n", `steps.a: unknown field "memroy" (line 5)`},
		{"unknown top field", "name: f\nstep: {}\n", `unknown field "step" (line 2)`},
		{"missing step", "name: f\nsteps:\n  a:\n    " + m + "\n    inputs: {x: nope.stdout}\n", "steps.a.inputs.x: nope.stdout names no step (step at line 3)"},
		{"missing need", "name: f\nsteps:\n  a:\n    " + m + "\n    needs: [b]\n", `steps.a.needs: no step "b" (step at line 3)`},
		{"cycle", "name: f\nsteps:\n  a: {" + m + ", needs: [c]}\n  b: {" + m + ", needs: [a]}\n  c: {" + m + ", inputs: {x: b.stdout}}\n", "steps: cycle: a -> b -> c -> a (line 3)"},
		{"self", "name: f\nsteps:\n  a: {" + m + ", inputs: {x: a.stdout}}\n", "a.stdout names the step itself"},
		{"bad ref", "name: f\nsteps:\n  a: {" + m + "}\n  b: {" + m + ", inputs: {x: a.stdot}}\n", `"a.stdot" is not a reference`},
		{"many into one", "name: f\nsteps:\n  a: {" + m + "}\n  b: {" + m + ", inputs: {x: a/*}}\n", "give it a key ending in /"},
		{"fan-in into one", "name: f\nsteps:\n  a: {" + m + ", for_each: [p, q]}\n  b: {" + m + ", inputs: {x: a.stdout}}\n", "it has for_each"},
		{"item outside for_each", "name: f\nsteps:\n  a: {" + m + ", inputs: {x: item}}\n", "item is only in a step with for_each"},
		{"escaping path", "name: f\nsteps:\n  a: {" + m + "}\n  b: {" + m + ", inputs: {../x: a.stdout}}\n", "must be relative and clean"},
		{"empty for_each", "name: f\nsteps:\n  a: {" + m + ", for_each: []}\n", "an empty list"},
		{"name in step", "name: f\nsteps:\n  a: {" + m + ", name: b}\n", "a step is named by its key"},
		{"job problem", "name: f\nsteps:\n  a: {module: x.wasm, retries: 99}\n", "steps.a.retries: must be at most 10"},
		{"call with module", "name: f\nsteps:\n  a: {call: fn, account: acme, " + m + "}\n", "a call step runs a function"},
		{"call without account", "name: f\nsteps:\n  a: {call: fn}\n", "steps.a.account: required"},
		{"dup step", "name: f\nsteps:\n  a: {" + m + "}\n  a: {" + m + "}\n", "given twice, first at line 3"},
		{"no steps", "name: f\n", "steps: required"},
		{"bad step name", "name: f\nsteps:\n  A.b: {" + m + "}\n", `step name "A.b"`},
		{"output of nothing", "name: f\nsteps:\n  a: {" + m + "}\noutputs: [b.stdout]\n", "outputs: b.stdout names no step"},
		{"not yaml", "name: [", "YAML syntax"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseFlow([]byte(c.doc))
			if err == nil {
				t.Fatalf("parsed; want %q", c.want)
			}
			if !errors.Is(err, ErrInvalidSpec) || !strings.HasPrefix(err.Error(), "flow spec: ") {
				t.Fatalf("%v: not a flow SpecError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}
}

func FuzzParseFlow(f *testing.F) {
	f.Add([]byte(wordcountFlow))
	f.Add([]byte(`{"name":"f","steps":{"a":{"module":"x","for_each":{"files":{"a":"b"}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fl, err := ParseFlow(data)
		if err != nil {
			return
		}
		out, err := json.Marshal(fl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseFlow(out); err != nil {
			t.Fatalf("a parsed flow's JSON does not parse: %v\n%s", err, out)
		}
	})
}

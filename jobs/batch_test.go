package jobs

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

const batchMod = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"

func TestParseBatch(t *testing.T) {
	b, err := ParseBatch([]byte(`
name: frames
template:
  module: ` + batchMod + `
  args: [--frame, "{{unit}}", "--n={{index}}"]
  env: {MODE: "u{{unit}}"}
  timeout: 1m
units:
  range: 10..20/5
replication: 3
quorum: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	if b.Len() != 3 || b.MaxReplicas != 7 || b.Deadline != Duration(2*time.Minute) || b.Parallel != DefaultParallel || b.Template.Name != "frames" {
		t.Fatalf("defaults: %+v", b)
	}
	s, v, err := b.Unit(2)
	if err != nil || v != "20" || s.Name != "frames-2" || !reflect.DeepEqual(s.Args, []string{"--frame", "20", "--n=2"}) || s.Env["MODE"] != "u20" {
		t.Fatalf("unit 2: %v %q %+v", err, v, s)
	}
	if b.Template.Args[1] != "{{unit}}" {
		t.Fatal("Unit changed the template")
	}
	if _, _, err := b.Unit(3); err == nil {
		t.Fatal("unit 3 of 3")
	}

	// JSON round trip: what the API stores and sends.
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var back Batch
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !reflect.DeepEqual(&back, b) {
		t.Fatalf("round trip:\n%+v\n%+v", &back, b)
	}

	const peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
	for doc, want := range map[string]Managers{"3": {Count: 3}, "[" + peer + "]": {Peers: []string{peer}}} {
		m, err := ParseBatch([]byte("name: m\ntemplate: {module: " + batchMod + "}\nunits: {range: 1..2}\nmanagers: " + doc + "\n"))
		if err != nil || !reflect.DeepEqual(m.Managers, want) {
			t.Fatalf("managers %s: %+v %v", doc, m, err)
		}
		data, _ := json.Marshal(m)
		if back, err := ParseBatch(data); err != nil || !reflect.DeepEqual(back.Managers, want) {
			t.Fatalf("managers %s round trip: %s %v", doc, data, err)
		}
	}
}

func TestBatchParamsAndFiles(t *testing.T) {
	b, err := ParseBatch([]byte(`
name: p
template: {module: ` + batchMod + `, args: [a], env: {K: t, L: t}}
units:
  params:
    - {args: [x, "{{unit}}"]}
    - {env: {K: "{{index}}"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s0, _, _ := b.Unit(0)
	s1, _, _ := b.Unit(1)
	if !reflect.DeepEqual(s0.Args, []string{"x", "0"}) || s0.Env["K"] != "t" || !reflect.DeepEqual(s1.Args, []string{"a"}) || s1.Env["K"] != "1" || s1.Env["L"] != "t" {
		t.Fatalf("params: %+v %+v", s0, s1)
	}
	f, err := ParseBatch([]byte(`{"name":"f","template":{"module":"` + batchMod + `"},"units":{"files":{"b.txt":"` + batchMod + `","a.txt":"` + batchMod + `"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	s, v, _ := f.Unit(0)
	if v != "a.txt" || !reflect.DeepEqual(s.InputFiles, []types.InputFile{{Path: "a.txt", CID: batchMod}}) {
		t.Fatalf("files: %q %+v", v, s.InputFiles)
	}
}

// TestBatchBlobs: a batch names every blob its units run from, once.
func TestBatchBlobs(t *testing.T) {
	const other = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"
	b, err := ParseBatch([]byte(`{"name":"f","template":{"module":"` + batchMod + `","input_files":[{"path":"x","cid":"` + other + `"}]},` +
		`"units":{"files":{"b.txt":"` + batchMod + `","a.txt":"` + other + `"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Blobs(); !reflect.DeepEqual(got, []string{other, batchMod}) {
		t.Fatalf("blobs %v", got)
	}
}

// TestBatchErrors: every problem is named, with its field and line.
func TestBatchErrors(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"name: x\ntemplate: {module: M}\n", "units: give exactly one of range, params, dir or files"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..2, dir: d}\n", "give exactly one"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 5..1}\n", "TO is below FROM"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..200000}\n", "more than 100000 units"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..9/0}\n", "the step must be at least 1"},
		{"name: x\ntemplate: {module: M}\nunits: {range: {from: 1}}\n", "units.range: want"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..3}\nreplication: 2\nquorum: 3\n", "quorum: 3 is outside 1 to the replication (2)"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..3}\nreplication: 40\n", "replication: 40 is outside 1 to 16"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..3}\nreplicaton: 2\n", `unknown field "replicaton" (line 4); did you mean "replication"?`},
		{"name: x\ntemplate: {module: M, bogus: 1}\nunits: {range: 1..3}\n", `template: unknown field "bogus" (line 2)`},
		{"name: x\ntemplate: {module: M}\nunits: {params: [{argz: [a]}]}\n", `units.params[0]: unknown field "argz" (line 3)`},
		{"name: x\ntemplate: {module: M}\nunits: {params: []}\n", "no units"},
		{"name: x\ntemplate: {module: M}\nunits: {files: {../x: M}}\n", "a unit's file is named by a plain file name"},
		{"name: x\ntemplate: {module: M}\nunits: {files: {a: nocid}}\n", `units.files.a: "nocid" is not a CID`},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..3}\ndeadline: 10ms\n", "deadline: must be at least 1s"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..3}\nparallel: 0\n", "parallel: must be at least 1"},
		{"name: X!\ntemplate: {module: M}\nunits: {range: 1..3}\n", `name: "X!" must be`},
		{"name: x\ntemplate: {module: M, timeout: -1s}\nunits: {range: 1..3}\n", "template.timeout"},
		{"name: x\ntemplate: {module: M, replication: 3}\nunits: {range: 1..3}\n", "template.replication: a batch replicates its units by its own replication"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..3}\nmanagers: 9\n", "managers: must be at most 7"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..3}\nmanagers: []\n", "managers: an empty list"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..3}\nmanagers: [nope]\n", "managers[0]:"},
		{"name: x\ntemplate: {module: M}\nunits: {range: 1..3}\nmanagers: {a: 1}\n", "managers: want a number of managers or a list of PeerIDs"},
		{"- a\n", "want a mapping"},
		{"name: x\n\ttab\n", "line 2"},
	} {
		doc := strings.ReplaceAll(c.doc, "{module: M", "{module: "+batchMod)
		doc = strings.ReplaceAll(doc, ": M}", ": "+batchMod+"}")
		_, err := ParseBatch([]byte(doc))
		var se *SpecError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %q", c.doc, err, c.want)
		}
	}
}

func FuzzParseBatch(f *testing.F) {
	f.Add([]byte("name: x\ntemplate: {module: " + batchMod + "}\nunits: {range: 1..3}\nreplication: 3\nquorum: 2\n"))
	f.Add([]byte(`{"name":"f","template":{"module":"` + batchMod + `"},"units":{"params":[{"args":["a"]}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBatch(data)
		if err != nil {
			return
		}
		if n := b.Len(); n < 1 || n > MaxUnits {
			t.Fatalf("%d units", n)
		}
		if err := b.Policy().Check(); err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseBatch(out)
		if err != nil {
			t.Fatalf("its own JSON: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, b) {
			t.Fatalf("round trip:\n%+v\n%+v", back, b)
		}
		if _, _, err := b.Unit(b.Len() - 1); err != nil {
			t.Fatal(err)
		}
	})
}

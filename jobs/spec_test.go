package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/types"
)

const fullYAML = `
name: hello
executor: wasm
module: hello.wasm
args: [a, b]
env: {GREETING: hi, _X1: "2"}
stdin: "some text"
input_dir: ./data
resources: {cpu: 0.5, memory: 128MiB, disk: 1GiB}
constraints:
  labels: {region: eu}
  renewable_only: true
  max_price: 1.5
timeout: 30s
retries: 2
reschedule: 5
bid_window: 500ms
enough_bids: 5
queue_timeout: 1m
deadline: 2h
`

func fullSpec() *Spec {
	return &Spec{
		Name: "hello", Executor: "wasm", Module: "hello.wasm",
		Args: []string{"a", "b"}, Env: map[string]string{"GREETING": "hi", "_X1": "2"},
		Stdin: "some text", InputDir: "./data",
		Resources:   types.Resources{CPU: 500, Memory: 128 << 20, Disk: 1 << 30},
		Constraints: types.Constraints{Labels: map[string]string{"region": "eu"}, RenewableOnly: true, MaxPrice: 1_500_000},
		Timeout:     Duration(30 * time.Second), Retries: 2, Reschedule: 5,
		BidWindow: Duration(500 * time.Millisecond), EnoughBids: 5,
		QueueTimeout: Duration(time.Minute), Deadline: Duration(2 * time.Hour),
	}
}

func TestParseFullYAML(t *testing.T) {
	s, err := Parse([]byte(fullYAML))
	if err != nil {
		t.Fatal(err)
	}
	if want := fullSpec(); !reflect.DeepEqual(s, want) {
		t.Fatalf("parsed\n%+v\nwant\n%+v", s, want)
	}
}

func TestParseDefaults(t *testing.T) {
	s, err := Parse([]byte("name: x\nmodule: x.wasm\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{
		Name: "x", Module: "x.wasm", Executor: "wasm",
		Resources: types.Resources{CPU: 1000, Memory: 64 << 20},
		Timeout:   Duration(5 * time.Minute), BidWindow: Duration(2 * time.Second), EnoughBids: 3,
		QueueTimeout: Duration(5 * time.Minute), Reschedule: 3,
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
}

// TestParseQuantities checks that sizes, CPU quantities and durations read
// the same in every form YAML and JSON can give them.
func TestParseQuantities(t *testing.T) {
	cases := []struct {
		doc  string
		cpu  types.MilliCPU
		mem  types.Bytes
		time time.Duration
	}{
		{"resources: {cpu: 0.5, memory: 64MiB}\ntimeout: 30s", 500, 64 << 20, 30 * time.Second},
		{"resources: {cpu: 2, memory: 1048576}\ntimeout: 1h30m", 2000, 1 << 20, 90 * time.Minute},
		{"resources: {cpu: \"500m\", memory: \"1.5GiB\"}\ntimeout: \"10ms\"", 500, 3 << 29, 10 * time.Millisecond},
		{`{"name":"x","module":"m","resources":{"cpu":0.25,"memory":"64MiB"},"timeout":"2m"}`, 250, 64 << 20, 2 * time.Minute},
		{`{"name":"x","module":"m","resources":{"cpu":"1500m","memory":4096},"timeout":"1s"}`, 1500, 4096, time.Second},
	}
	for _, c := range cases {
		doc := c.doc
		if !strings.HasPrefix(doc, "{") {
			doc = "name: x\nmodule: m\n" + doc
		}
		s, err := Parse([]byte(doc))
		if err != nil {
			t.Errorf("%s: %v", c.doc, err)
			continue
		}
		if s.Resources.CPU != c.cpu || s.Resources.Memory != c.mem || time.Duration(s.Timeout) != c.time {
			t.Errorf("%s: cpu %d memory %d timeout %s", c.doc, s.Resources.CPU, s.Resources.Memory, time.Duration(s.Timeout))
		}
	}
}

func TestParseJSONEqualsYAML(t *testing.T) {
	b, err := json.Marshal(fullSpec())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if want := fullSpec(); !reflect.DeepEqual(s, want) {
		t.Fatalf("from JSON %s\ngot  %+v\nwant %+v", b, s, want)
	}
}

// TestParseMaxPrice reads a max price written as a YAML or JSON number,
// as specs did before prices were exact, or as a string, all to the
// micro-credit.
func TestParseMaxPrice(t *testing.T) {
	for _, doc := range []string{
		"name: x\nmodule: m\nconstraints: {max_price: 2.000001}\n",
		"name: x\nmodule: m\nconstraints: {max_price: \"2.000001\"}\n",
		`{"name":"x","module":"m","constraints":{"max_price":2.000001}}`,
		`{"name":"x","module":"m","constraints":{"max_price":"2.000001"}}`,
	} {
		s, err := Parse([]byte(doc))
		if err != nil || s.Constraints.MaxPrice != 2_000_001 {
			t.Errorf("%s: max price %v, %v; want 2.000001", doc, s.Constraints.MaxPrice, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		doc  string
		want []string // each must appear in the error
	}{
		{"name: x\nmodule: m\nresources:\n  memroy: 64MiB\n", []string{`resources: unknown field "memroy" (line 4); did you mean "memory"?`}},
		{"name: x\nmodule: m\nresources: {ram: 1}\n", []string{`resources: unknown field "ram" (line 3); known fields: cpu, memory, disk, gpus`}},
		{"nmae: x\nmodule: m\n", []string{`unknown field "nmae"`, "(line 1)", "name: required"}},
		{`{"name":"x","module":"m","resources":{"memroy":1}}`, []string{`resources: unknown field "memroy"`, "(line 1)"}},
		{"name: x\nmodule: m\nresources: {memory: 64 parsecs}\ntimeout: 25h\n", []string{
			`job spec: resources.memory: bad size: "64 parsecs" (want a number with an optional unit such as 64MiB or 2GB) (line 3); timeout: must be at most 24h`,
		}},
		{"name: Bad Name\nmodule: m\n", []string{`name: "Bad Name" must be`}},
		{"name: x\n", []string{"module: required"}},
		{"name: x\nmodule: m\nexecutor: lxc\n", []string{`executor: unknown executor "lxc" (known: wasm, docker)`}},
		{"name: x\nmodule: m\nenv: {1X: a, OK: b}\n", []string{`env: bad name "1X"`}},
		{"name: x\nmodule: m\nargs: [\"a\\0b\"]\n", []string{"args[0]: must not contain NUL bytes"}},
		{"name: x\nmodule: m\nargs: a\n", []string{`args: want a list of strings, got "a" (line 3)`}},
		{"name: x\nmodule: m\nargs: [a, {b: c}]\n", []string{"args: want a list of strings, got an item that is not a string"}},
		{"name: x\nmodule: m\nretries: 1.5\n", []string{`retries: want a whole number, got "1.5"`}},
		{"name: x\nmodule: m\nretries: 11\nenough_bids: 0\n", []string{"retries: must be at most 10", "enough_bids: must be at least 1"}},
		{"name: x\nmodule: m\nreplication: 17\n", []string{"replication: must be at most 16"}},
		{"name: x\nmodule: m\nreplication: 2\nquorum: 3\n", []string{"quorum: must be between 1 and the replication (2)"}},
		{"name: x\nmodule: m\nquorum: 2\n", []string{"quorum: must be between 1 and the replication (1)"}},
		{"name: x\nmodule: m\nreplication: -1\n", []string{"replication: must be at least 0"}},
		{"name: x\nmodule: m\nreschedule: 11\n", []string{"reschedule: must be at most 10"}},
		{"name: x\nmodule: m\nreschedule: -1\n", []string{"reschedule: must be at least 0"}},
		{"name: x\nmodule: m\nreschedule: sometimes\n", []string{`reschedule: bad reschedule: "sometimes" (want a whole number such as 3, or never) (line 3)`}},
		{"name: x\nmodule: m\nreschedule: 1.5\n", []string{`reschedule: bad reschedule: "1.5"`}},
		{"name: x\nmodule: m\nreschedule: [3]\n", []string{`reschedule: want a whole number such as 3, or never, got a list (line 3)`}},
		{`{"name":"x","module":"m","reschedule":true}`, []string{`reschedule: bad reschedule: "true"`}},
		{"name: x\nmodule: m\ntimeout: 30\n", []string{`timeout: bad duration: "30" (want a number with a unit`}},
		{"name: x\nmodule: m\ntimeout: 0s\n", []string{"timeout: must be positive"}},
		{"name: x\nmodule: m\nbid_window: 1ms\n", []string{"bid_window: must be at least 10ms"}},
		{"name: x\nmodule: m\nbid_window: 6m\n", []string{"bid_window: must be at most 5m"}},
		{"name: x\nmodule: m\ndeadline: 169h\n", []string{"deadline: must be at most 168h"}},
		{"name: x\nmodule: m\ndeadline: -1s\n", []string{"deadline: must be at least 0s"}},
		{"name: x\nmodule: m\nresources: {cpu: 0, memory: 0, gpus: 1}\n", []string{"resources.cpu: must be positive", "resources.memory: must be positive", "resources.gpus: must be 0"}},
		{"name: x\nmodule: m\nconstraints: {max_price: -1}\n", []string{"constraints.max_price: must be"}},
		{"name: x\nmodule: m\nconstraints: {max_price: .nan}\n", []string{`constraints.max_price: bad amount of credits: ".nan" (want a decimal number of credits such as 2.5 or 0.000001) (line 3)`}},
		{"name: x\nmodule: m\nconstraints: {max_price: 0.1234567}\n", []string{`constraints.max_price: bad amount of credits: "0.1234567" has more than 6 decimals`}},
		{"name: x\nmodule: m\nconstraints: {max_price: [1]}\n", []string{`constraints.max_price: want an amount of credits such as 2.5 or 0.000001, got a list (line 3)`}},
		{"name: x\nmodule: m\nstdin: " + strings.Repeat("a", MaxStdin+1) + "\n", []string{"stdin: 1048577 bytes; the limit is 1048576"}},
		{"name: x\nname: y\nmodule: m\n", []string{"name: given twice, first at line 1 (line 2)"}},
		{"name: x\nmodule: m\n---\nname: y\n", []string{"more than one YAML document"}},
		{"", []string{"job spec: empty document"}},
		{"- a\n- b\n", []string{"want a mapping of fields, got a list (line 1)"}},
		{"name: [\n", []string{"job spec: YAML syntax: "}},
		{"{\"name\": \"x\",\n \"module\": }", []string{"job spec: JSON syntax: line 2: invalid character '}'"}},
		{`{"name":"x","module":"m"} {}`, []string{"data after the end of the object"}},
		{`{"name":"x","module":"m","args":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, []string{"nested too deeply"}},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc))
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%.60q: err = %v, want ErrInvalidSpec", c.doc, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%.60q:\n error %.300s\n lacks %s", c.doc, err, w)
			}
		}
	}
}

func TestSpecErrorLists(t *testing.T) {
	_, err := Parse([]byte("name: x\nmodule: m\nresources: {memory: lots}\nretries: -1\ntimeout: 48h\n"))
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v", err)
	}
	var fields []string
	for _, p := range se.Problems {
		fields = append(fields, p.Field)
	}
	if want := []string{"resources.memory", "timeout", "retries"}; !reflect.DeepEqual(fields, want) {
		t.Fatalf("problem fields %q, want %q", fields, want)
	}
}

func TestParseFileResolvesPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(path, []byte("name: x\nmodule: bin/x.wasm\ninput_dir: data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.ModulePath(), filepath.Join(dir, "bin", "x.wasm"); got != want {
		t.Errorf("ModulePath = %q, want %q", got, want)
	}
	if got, want := s.InputDirPath(), filepath.Join(dir, "data"); got != want {
		t.Errorf("InputDirPath = %q, want %q", got, want)
	}
	if _, err := ParseFile(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestModuleCID(t *testing.T) {
	c := types.CIDOf([]byte("module bytes"))
	s, err := Parse([]byte("name: x\nmodule: " + c.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.ModuleCID(); !ok || got != c {
		t.Fatalf("ModuleCID = %s, %v", got, ok)
	}
	if s.ModulePath() != "" {
		t.Fatalf("ModulePath of a CID = %q", s.ModulePath())
	}
	if _, ok := fullSpec().ModuleCID(); ok {
		t.Fatal("hello.wasm parsed as a CID")
	}
}

func TestTask(t *testing.T) {
	s := fullSpec()
	task := s.Task("bafymodule", "bafystdin", "bafyinputs")
	want := types.Task{
		Executor: "wasm", Module: "bafymodule", Args: s.Args, Env: s.Env, Stdin: "bafystdin", Inputs: "bafyinputs",
		Resources: s.Resources, Timeout: 30 * time.Second,
	}
	if !reflect.DeepEqual(task, want) {
		t.Fatalf("Task = %+v\nwant %+v", task, want)
	}
	task.Args[0] = "changed"
	if s.Args[0] != "a" {
		t.Fatal("Task shares its args with the spec")
	}
}

// A spec without a deadline has none, and its JSON form does not name the
// field, so daemons that predate it still read the spec.
func TestDeadlineIsOptional(t *testing.T) {
	s, err := Parse([]byte("name: x\nmodule: m\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if s.Deadline != 0 || strings.Contains(string(b), "deadline") {
		t.Fatalf("deadline %s, JSON %s", s.Deadline, b)
	}
	s, err = Parse([]byte(`{"name":"x","module":"m","deadline":"90s"}`))
	if err != nil || time.Duration(s.Deadline) != 90*time.Second {
		t.Fatalf("deadline %v, %v", s, err)
	}
}

// reschedule reads as a number or as never, in YAML and JSON; the JSON
// form writes never for 0 and the number otherwise, and reads back equal.
func TestReschedule(t *testing.T) {
	for doc, want := range map[string]Reschedule{
		"name: x\nmodule: m\n":                           DefaultReschedule,
		"name: x\nmodule: m\nreschedule: never\n":        0,
		"name: x\nmodule: m\nreschedule: 0\n":            0,
		"name: x\nmodule: m\nreschedule: 10\n":           10,
		"name: x\nmodule: m\nreschedule: \"2\"\n":        2,
		"name: x\nmodule: m\nreschedule:\n":              DefaultReschedule,
		`{"name":"x","module":"m","reschedule":"never"}`: 0,
		`{"name":"x","module":"m","reschedule":1}`:       1,
	} {
		s, err := Parse([]byte(doc))
		if err != nil || s.Reschedule != want {
			t.Errorf("%q: reschedule %v, %v; want %v", doc, s, err, want)
			continue
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		wantJSON := fmt.Sprintf(`"reschedule":%d`, want)
		if want == 0 {
			wantJSON = `"reschedule":"never"`
		}
		back, err := Parse(b)
		if !strings.Contains(string(b), wantJSON) || err != nil || !reflect.DeepEqual(back, s) {
			t.Errorf("%q: JSON %s reads back as %+v, %v", doc, b, back, err)
		}
	}
}

func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{5 * time.Minute: "5m", 24 * time.Hour: "24h", 90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s", 0: "0s"} {
		b, _ := Duration(d).MarshalText()
		var back Duration
		if string(b) != want || back.UnmarshalText(b) != nil || time.Duration(back) != d {
			t.Errorf("Duration(%s) -> %q -> %s", d, b, time.Duration(back))
		}
	}
}

const dockerYAML = `
name: web
executor: docker
image: registry.local:5000/team/app:1.2
image_archive: app.tar
network: true
writable_root: true
pids: 64
resources: {cpu: 0.5, memory: 64MiB}
`

func dockerSpec() *Spec {
	return &Spec{
		Name: "web", Executor: "docker", Image: "registry.local:5000/team/app:1.2", ImageArchive: "app.tar",
		Network: true, WritableRoot: true, Pids: 64,
		Resources: types.Resources{CPU: 500, Memory: 64 << 20},
		Timeout:   Duration(5 * time.Minute), BidWindow: Duration(2 * time.Second), EnoughBids: 3,
		QueueTimeout: Duration(5 * time.Minute), Reschedule: 3,
	}
}

func TestParseDocker(t *testing.T) {
	s, err := Parse([]byte(dockerYAML))
	if err != nil {
		t.Fatal(err)
	}
	if want := dockerSpec(); !reflect.DeepEqual(s, want) {
		t.Fatalf("parsed\n%+v\nwant\n%+v", s, want)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := Parse(b); err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("JSON round trip %s: %+v, %v", b, back, err)
	}
}

// A docker job's defaults: no network, a read-only root, DefaultPids; the
// JSON form carries the pids limit, and no module.
func TestParseDockerDefaults(t *testing.T) {
	s, err := Parse([]byte("name: x\nexecutor: docker\nimage: alpine\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Network || s.WritableRoot || s.Pids != DefaultPids || s.ImageArchive != "" {
		t.Fatalf("defaults %+v", s)
	}
	b, _ := json.Marshal(s)
	if !strings.Contains(string(b), `"pids":256`) || strings.Contains(string(b), `"module"`) {
		t.Fatalf("JSON %s", b)
	}
}

func TestParseDockerErrors(t *testing.T) {
	cases := []struct {
		doc  string
		want []string
	}{
		{"name: x\nexecutor: docker\n", []string{"image: required: an image on the node (name:tag), or image_archive"}},
		{"name: x\nexecutor: docker\nimage: a\nmodule: m.wasm\n", []string{"module: only for the wasm executor"}},
		{"name: x\nmodule: m\nimage: a\nimage_archive: a.tar\nnetwork: true\nwritable_root: true\npids: 3\n", []string{
			"image: only for the docker executor; image_archive: only for the docker executor; network: only for the docker executor; " +
				"pids: only for the docker executor; writable_root: only for the docker executor",
		}},
		{"name: x\nexecutor: docker\nimage: Alpine:3\n", []string{`image: "Alpine:3" is not an image reference`}},
		{"name: x\nexecutor: docker\nimage: \"a b\"\n", []string{`image: "a b" is not an image reference`}},
		{"name: x\nexecutor: docker\nimage: \"a:\"\n", []string{`image: "a:" is not an image reference`}},
		{"name: x\nexecutor: docker\nimage: a\npids: 40000\n", []string{"pids: must be at most 32768"}},
		{"name: x\nexecutor: docker\nimage: a\npids: -1\n", []string{"pids: must be at least 1"}},
		{"name: x\nexecutor: docker\nimage: a\nnetwork: yes please\n", []string{`network: want true or false, got "yes please"`}},
		{"name: x\nexecutor: docker\nimage: a\nresources: {gpus: 1}\n", []string{"resources.gpus: must be 0: the docker executor has no GPUs"}},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc))
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%q: err = %v, want ErrInvalidSpec", c.doc, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q:\n error %s\n lacks %s", c.doc, err, w)
			}
		}
	}
}

func TestImageReferences(t *testing.T) {
	good := []string{
		"alpine", "alpine:3.20", "dms-docker-hello:latest", "library/alpine", "docker.io/library/alpine:3",
		"localhost:5000/a/b_c__d-e:V1.0", "[::1]:5000/a", "a@sha256:" + strings.Repeat("0", 64),
		"a:1@sha256:" + strings.Repeat("f", 64),
	}
	bad := []string{"", "Alpine", "a:", ":a", "a::b", "a/", "/a", "a b", "a:" + strings.Repeat("t", 129), "a@sha256:12", "-a", "a_"}
	for _, ref := range good {
		if !imageRE.MatchString(ref) {
			t.Errorf("%q refused", ref)
		}
	}
	for _, ref := range bad {
		if imageRE.MatchString(ref) {
			t.Errorf("%q accepted", ref)
		}
	}
}

func TestImageArchivePathAndCID(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(path, []byte("name: x\nexecutor: docker\nimage_archive: img/app.tar\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.ImageArchivePath(), filepath.Join(dir, "img", "app.tar"); got != want {
		t.Errorf("ImageArchivePath = %q, want %q", got, want)
	}
	if _, ok := s.ImageArchiveCID(); ok || s.ModulePath() != "" {
		t.Errorf("a path read as a CID, or a module path from nothing: %q", s.ModulePath())
	}
	c := types.CIDOf([]byte("archive bytes"))
	s.ImageArchive = c.String()
	if got, ok := s.ImageArchiveCID(); !ok || got != c || s.ImageArchivePath() != "" {
		t.Errorf("ImageArchiveCID = %s, %v; path %q", got, ok, s.ImageArchivePath())
	}
}

func TestDockerTask(t *testing.T) {
	task := dockerSpec().Task("bafyarchive", "", "")
	want := types.Task{
		Executor: "docker", Module: "bafyarchive", Resources: types.Resources{CPU: 500, Memory: 64 << 20}, Timeout: 5 * time.Minute,
		Image: "registry.local:5000/team/app:1.2", Network: true, WritableRoot: true, Pids: 64,
	}
	if !reflect.DeepEqual(task, want) {
		t.Fatalf("Task = %+v\nwant %+v", task, want)
	}
}

package node

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// catExec prints every file under /inputs as "path=content (mode)", in
// path order, and copies them all, concatenated, to /outputs/all.
type catExec struct{}

func (catExec) Name() string { return "wasm" }

func (catExec) Run(_ context.Context, in jobs.Input) (*jobs.Output, error) {
	var out, all bytes.Buffer
	if in.InputDir != "" {
		err := filepath.WalkDir(in.InputDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info, _ := d.Info()
			rel, _ := filepath.Rel(in.InputDir, p)
			fmt.Fprintf(&out, "%s=%s (%v)\n", filepath.ToSlash(rel), data, info.Mode().Perm())
			all.Write(data)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(in.OutputDir, "all"), all.Bytes(), 0o600); err != nil {
		return nil, err
	}
	return &jobs.Output{Stdout: out.Bytes()}, nil
}

// Three producers of outputs, DMS PeerIDs.
var (
	producer1 = types.PeerIDFromPublicKey([]byte(strings.Repeat("1", 32)))
	producer2 = types.PeerIDFromPublicKey([]byte(strings.Repeat("2", 32)))
	producer3 = types.PeerIDFromPublicKey([]byte(strings.Repeat("3", 32)))
)

func catHarness(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	return newHarnessConfig(t, newMemStore(), func(c *Config) {
		c.Executors = map[string]jobs.Executor{"wasm": catExec{}}
		if tweak != nil {
			tweak(c)
		}
	})
}

// run places and runs a task with files (and the input archive, if any)
// and returns its final status.
func (h *harness) run(alloc string, files []types.InputFile, archive string) *types.Status {
	h.t.Helper()
	r := types.Resources{CPU: 1000, Memory: 1 << 20}
	c, ok := h.accept(alloc, r).(*types.Confirm)
	if !ok {
		h.t.Fatalf("%s not confirmed", alloc)
	}
	var last *types.Status
	err := h.node.Invoke(h.ctx(), requester, &types.Invocation{
		JobID: types.JobID(alloc), AllocationID: types.AllocationID(alloc), Epoch: c.Epoch,
		Task: types.Task{Executor: "wasm", Module: h.module, Resources: r, Inputs: archive, Files: files},
	}, func(st *types.Status) error { last = st; return nil })
	if err != nil || last == nil || !last.State.Terminal() {
		h.t.Fatalf("%s: last status %+v, %v", alloc, last, err)
	}
	return last
}

// stdout returns the stdout a completed status names.
func (h *harness) stdout(st *types.Status) string {
	h.t.Helper()
	if st.State != types.AllocCompleted {
		h.t.Fatalf("ended %s (%s, %s)", st.State, st.Fault, st.Reason)
	}
	out, err := h.blobs.Get(st.Result.Stdout)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(out)
}

// TestInputFilesComeFromTheirSources: each file comes from the first
// source that has it: the node's own store, a From peer (the next one
// when the first lacks it), the requester, then a provider the DHT names.
// The requester is not asked for files the producers had, the DHT only
// for the file nobody else had, and every file is kept in the store.
func TestInputFilesComeFromTheirSources(t *testing.T) {
	h := catHarness(t, nil)
	own, _ := h.blobs.Put([]byte("mine"))
	first := h.net.holder(producer1, []byte("from the first producer"))
	second := h.net.holder(producer2, []byte("from the second producer"))
	fromReq, _ := h.net.requester.Put([]byte("from the requester"))
	viaDHT := h.net.holder(producer3, []byte("from a provider"))
	h.net.providers = map[string][]string{viaDHT: {producer3}}
	files := []types.InputFile{
		{Path: "own", CID: own},
		{Path: "a/first", CID: first, From: []string{producer1}},
		{Path: "a/second", CID: second, From: []string{producer1, producer2}},
		{Path: "req", CID: fromReq},
		{Path: "b/c/dht", CID: viaDHT, From: []string{producer1}},
	}
	st := h.run("a1", files, "")
	want := "a/first=from the first producer (-r--------)\na/second=from the second producer (-r--------)\n" +
		"b/c/dht=from a provider (-r--------)\nown=mine (-r--------)\nreq=from the requester (-r--------)\n"
	if got := h.stdout(st); got != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", got, want)
	}
	fetched := h.net.fetched()
	for _, never := range []string{requester + " " + first, requester + " " + second, producer2 + " " + first} {
		if slices.Contains(fetched, never) {
			t.Errorf("fetched %q, though an earlier source had it: %v", never, fetched)
		}
	}
	for _, f := range files {
		if slices.Contains(fetched, h.node.cfg.ID.PeerID+" "+f.CID) {
			t.Errorf("the node asked itself for %s", f.Path)
		}
		if !h.blobs.Has(f.CID) {
			t.Errorf("%s is not kept in the node's store", f.Path)
		}
	}
	h.net.mu.Lock()
	lookups := slices.Clone(h.net.lookups)
	h.net.mu.Unlock()
	if !slices.Equal(lookups, []string{viaDHT}) {
		t.Errorf("looked up providers of %v, want only the file nobody else had", lookups)
	}
	// A second run fetches nothing: every file is in the store.
	before := len(h.net.fetched())
	if got := h.stdout(h.run("a2", files, "")); got != want || len(h.net.fetched()) != before {
		t.Fatalf("second run: %d more fetches, stdout %q", len(h.net.fetched())-before, got)
	}
}

// TestResultSizes: the result names the size of stdout, stderr and
// each output file.
func TestResultSizes(t *testing.T) {
	h := catHarness(t, nil)
	c := h.net.holder(producer1, []byte("12345"))
	st := h.run("a1", []types.InputFile{{Path: "x", CID: c, From: []string{producer1}}}, "")
	r := st.Result
	want := map[string]int64{r.Stdout: int64(len(h.stdout(st))), r.Stderr: 0, r.Files["all"]: 5}
	if len(r.Sizes) != 3 || r.Sizes[r.Stdout] != want[r.Stdout] || r.Sizes[r.Stderr] != 0 || r.Sizes[r.Files["all"]] != 5 {
		t.Fatalf("sizes %v, want %v", r.Sizes, want)
	}
}

// TestInputFileFromALiar: a From peer that sends other bytes than the
// CID names is skipped for the next one.
func TestInputFileFromALiar(t *testing.T) {
	h := catHarness(t, nil)
	c := h.net.holder(producer2, []byte("the truth"))
	h.net.holder(producer1, nil)
	h.net.peers[producer1].m[c] = []byte("a lie")
	st := h.run("a1", []types.InputFile{{Path: "x", CID: c, From: []string{producer1, producer2}}}, "")
	if got := h.stdout(st); got != "x=the truth (-r--------)\n" {
		t.Fatalf("stdout %q", got)
	}
	if got := h.net.fetched(); !slices.Equal(got, []string{producer1 + " " + c, producer2 + " " + c}) {
		t.Fatalf("fetches %v: want the liar, then the honest peer", got)
	}
}

// TestInputFileNobodyHas: a file no source has fails the allocation at
// once (each source answered), the node's fault, with a reason naming
// the file's CID and path and the peers asked.
func TestInputFileNobodyHas(t *testing.T) {
	h := catHarness(t, nil)
	missing := types.CIDOf([]byte("nowhere")).String()
	h.net.holder(producer1, []byte("something else"))
	st := h.run("a1", []types.InputFile{{Path: "gone/x", CID: missing, From: []string{producer1}}}, "")
	if st.State != types.AllocFailed || st.Fault != types.FaultNode {
		t.Fatalf("ended %s, fault %q: %s", st.State, st.Fault, st.Reason)
	}
	t.Logf("reason: %s", st.Reason)
	for _, want := range []string{ErrInputUnavailable.Error(), missing, `"gone/x"`, producer1, requester, "asked 2", "the DHT knows no provider"} {
		if !strings.Contains(st.Reason, want) {
			t.Errorf("reason %q lacks %q", st.Reason, want)
		}
	}
}

// TestInputFileOutlastsAnUnreachableRequester: a source that cannot be
// reached is asked again.
func TestInputFileOutlastsAnUnreachableRequester(t *testing.T) {
	h := catHarness(t, nil)
	c, _ := h.net.requester.Put([]byte("late"))
	h.net.unreached.Store(2)
	if got := h.stdout(h.run("a1", []types.InputFile{{Path: "x", CID: c}}, "")); got != "x=late (-r--------)\n" {
		t.Fatalf("stdout %q", got)
	}
}

// TestInputFilesBadPaths: the node checks the files itself (a requester
// may skip jobs' validation): a hostile path, or too many files, fails the
// allocation as the program's fault, before anything is fetched.
func TestInputFilesBadPaths(t *testing.T) {
	h := catHarness(t, nil)
	c, _ := h.net.requester.Put([]byte("x"))
	many := make([]types.InputFile, types.MaxInputFiles+1)
	for i := range many {
		many[i] = types.InputFile{Path: fmt.Sprint(i), CID: c}
	}
	cases := map[string][]types.InputFile{
		`".." element`:                   {{Path: "../x", CID: c}},
		"absolute":                       {{Path: "/etc", CID: c}},
		`"a/../../b" has a ".." element`: {{Path: "a/../../b", CID: c}},
		"empty path":                     {{Path: "", CID: c}},
		"not a clean path":               {{Path: "a//b", CID: c}},
		"also the path of file 0":        {{Path: "a", CID: c}, {Path: "a", CID: c}},
		"also a directory of file 1":     {{Path: "a", CID: c}, {Path: "a/b", CID: c}},
		"10001 files":                    many,
	}
	i := 0
	for why, files := range cases {
		i++
		before := len(h.net.fetched())
		st := h.run(fmt.Sprintf("bad%d", i), files, "")
		if st.State != types.AllocFailed || st.Fault != types.FaultProgram || !strings.Contains(st.Reason, why) || !strings.Contains(st.Reason, ErrBadInputs.Error()) {
			t.Errorf("%s: ended %s, fault %q: %s", why, st.State, st.Fault, st.Reason)
		}
		if n := len(h.net.fetched()) - before; n != 0 {
			t.Errorf("%s: %d fetches", why, n)
		}
	}
}

// tarOf makes an input archive of directories (names ending in /) and
// files.
func tarOf(t *testing.T, entries map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range entries {
			if !yield(k) {
				return
			}
		}
	}) {
		h := &tar.Header{Name: name, Mode: 0o600, Typeflag: tar.TypeReg, Size: int64(len(entries[name]))}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o700
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(entries[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestInputFilesAfterTheArchive: files are placed beside the archive's,
// in its directories too; a file on a path the archive holds (a file or
// a directory), or under a file of it, is the program's fault.
func TestInputFilesAfterTheArchive(t *testing.T) {
	h := catHarness(t, nil)
	archive, _ := h.net.requester.Put(tarOf(t, map[string]string{"a.txt": "from the archive", "d/": "", "d/e": "e"}))
	c := h.net.holder(producer1, []byte("a file"))
	from := []string{producer1}
	st := h.run("ok", []types.InputFile{{Path: "b.txt", CID: c, From: from}, {Path: "d/f", CID: c, From: from}}, archive)
	want := "a.txt=from the archive (-rw-------)\nb.txt=a file (-r--------)\nd/e=e (-rw-------)\nd/f=a file (-r--------)\n"
	if got := h.stdout(st); got != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", got, want)
	}
	for i, path := range []string{"a.txt", "d", "a.txt/x", "d/e"} {
		st := h.run(fmt.Sprint("clash", i), []types.InputFile{{Path: path, CID: c, From: from}}, archive)
		if st.State != types.AllocFailed || st.Fault != types.FaultProgram || !strings.Contains(st.Reason, fmt.Sprintf("%q", path)) {
			t.Errorf("%s over the archive: ended %s, fault %q: %s", path, st.State, st.Fault, st.Reason)
		}
		t.Logf("%s: %s", path, st.Reason)
	}
}

// TestInputFilesLimits: a file declared or found over MaxBlob, or files
// over MaxInputBytes together, are the program's fault.
func TestInputFilesLimits(t *testing.T) {
	h := catHarness(t, func(c *Config) { c.MaxBlob, c.MaxInputBytes = 100, 150 })
	small := h.net.holder(producer1, bytes.Repeat([]byte("s"), 80))
	other := h.net.holder(producer1, bytes.Repeat([]byte("o"), 80))
	big := h.net.holder(producer1, bytes.Repeat([]byte("b"), 101))
	from := []string{producer1}
	for name, files := range map[string][]types.InputFile{
		"declared over MaxBlob":       {{Path: "x", CID: small, Size: 101, From: from}},
		"over MaxBlob":                {{Path: "x", CID: big, From: from}},
		"declared over MaxInputBytes": {{Path: "x", CID: small, Size: 80, From: from}, {Path: "y", CID: other, Size: 80, From: from}},
		"over MaxInputBytes":          {{Path: "x", CID: small, From: from}, {Path: "y", CID: other, From: from}},
	} {
		st := h.run(strings.ReplaceAll(name, " ", "-"), files, "")
		if st.State != types.AllocFailed || st.Fault != types.FaultProgram || !strings.Contains(st.Reason, "limit") {
			t.Errorf("%s: ended %s, fault %q: %s", name, st.State, st.Fault, st.Reason)
		}
	}
	if got := h.stdout(h.run("fits", []types.InputFile{{Path: "x", CID: small, Size: 80, From: from}}, "")); !strings.HasPrefix(got, "x=sss") {
		t.Fatalf("a file within the limits: %q", got)
	}
	if h.blobs.Has(big) {
		t.Fatal("a file over MaxBlob was kept")
	}
}

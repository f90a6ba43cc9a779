package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFuzzTargets is the short fuzz run of CI: it finds every Fuzz target
// in the module and fuzzes each for DMS_FUZZTIME (default 3s, any value
// -fuzztime takes, such as 30s or 10000x). A target that finds a failure
// fails the test with the fuzzer's output; the input is left in that
// package's testdata/fuzz/<Target> to reproduce it with plain `go test`.
// Run with -v to see the executions of every target. Skipped with -short.
func TestFuzzTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("fuzzes every target for a few seconds; skipped with -short")
	}
	fuzztime := cmp.Or(os.Getenv("DMS_FUZZTIME"), "3s")
	if !validFuzztime(fuzztime) {
		t.Fatalf("DMS_FUZZTIME=%q: want a duration such as 3s, or a count such as 1000x", fuzztime)
	}
	root := moduleRoot(t)
	targets := listFuzzTargets(t, root)
	if len(targets) == 0 {
		t.Fatal("found no Fuzz targets in the module")
	}
	start := time.Now()
	var summary strings.Builder
	for _, ft := range targets {
		name := path.Base(ft.pkg) + "." + ft.name
		t.Run(name, func(t *testing.T) {
			execs, baseline, took := fuzz(t, root, ft, fuzztime)
			line := fmt.Sprintf("%s: %d execs, %s with the build", name, execs, took.Round(100*time.Millisecond))
			if baseline != "" {
				line += " (still replaying the cached corpus: " + baseline + ")"
			}
			t.Log(line)
			summary.WriteString("\n  " + line)
		})
	}
	t.Logf("fuzzed %d targets for %s each in %s:%s", len(targets), fuzztime, time.Since(start).Round(time.Second), summary.String())
}

// fuzzTarget is one Fuzz function and the package that holds it.
type fuzzTarget struct{ pkg, name string }

var fuzztimeRE = regexp.MustCompile(`^[0-9]+x$`)

func validFuzztime(s string) bool {
	d, err := time.ParseDuration(s)
	return (err == nil && d > 0) || fuzztimeRE.MatchString(s)
}

// moduleRoot returns the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: %q, %v", gomod, err)
	}
	return filepath.Dir(gomod)
}

// listFuzzTargets runs `go test -list '^Fuzz'` in root over the packages
// that declare a Fuzz function and returns every target, sorted by package
// and name.
func listFuzzTargets(t *testing.T, root string) []fuzzTarget {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-json", "-list", "^Fuzz"}, fuzzPackages(t, root)...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go test -list: %v\n%s%s", err, stderr.Bytes(), out)
	}
	var targets []fuzzTarget
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var ev struct{ Action, Package, Output string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Action != "output" {
			continue
		}
		if name := strings.TrimSpace(ev.Output); strings.HasPrefix(name, "Fuzz") && !strings.ContainsAny(name, " \t") {
			targets = append(targets, fuzzTarget{pkg: ev.Package, name: name})
		}
	}
	slices.SortFunc(targets, func(a, b fuzzTarget) int {
		return cmp.Or(strings.Compare(a.pkg, b.pkg), strings.Compare(a.name, b.name))
	})
	return targets
}

var fuzzFuncRE = regexp.MustCompile(`(?m)^func Fuzz`)

// fuzzPackages returns the module's packages with a test file that declares
// a Fuzz function: listing only them saves building and linking the test
// binary of every other package (half the time of the listing).
func fuzzPackages(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Dir,TestGoFiles,XTestGoFiles", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath, Dir           string
			TestGoFiles, XTestGoFiles []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list: %v", err)
		}
		for _, f := range append(p.TestGoFiles, p.XTestGoFiles...) {
			if b, err := os.ReadFile(filepath.Join(p.Dir, f)); err == nil && fuzzFuncRE.Match(b) {
				pkgs = append(pkgs, p.ImportPath)
				break
			}
		}
	}
	if len(pkgs) == 0 {
		t.Fatal("no package declares a Fuzz function")
	}
	return pkgs
}

var (
	execsRE    = regexp.MustCompile(`execs: ([0-9]+)`)
	baselineRE = regexp.MustCompile(`gathering baseline coverage: ([0-9]+/[0-9]+)`)
)

// fuzz runs one target for fuzztime and returns the executions the fuzzer
// reported last; when it never got past replaying the inputs it found in
// earlier runs (kept in the build cache), baseline says how far it got. The
// fuzz test binary is built without -race. Inputs are
// not minimized: a worker minimizing each input that finds new coverage
// reports nothing until it is done, which in a run of seconds can be most
// of the run (FuzzUntar went from about 2000 executions to about 100). A
// failing input is written as found.
func fuzz(t *testing.T, root string, ft fuzzTarget, fuzztime string) (execs int64, baseline string, took time.Duration) {
	t.Helper()
	start := time.Now()
	out, err := fuzzRun(root, ft, fuzztime)
	if err != nil && deadlineRace(out) {
		t.Logf("%s: the fuzz coordinator's deadline race (go.dev/issue/75804, fixed in Go 1.27), no input found: once more", ft.name)
		out, err = fuzzRun(root, ft, fuzztime)
	}
	took = time.Since(start)
	if err != nil {
		t.Fatalf("go test -fuzz %s %s: %v\n%s", ft.name, ft.pkg, err, out)
	}
	if m := execsRE.FindAllSubmatch(out, -1); len(m) > 0 {
		execs, _ = strconv.ParseInt(string(m[len(m)-1][1]), 10, 64)
	} else if m := baselineRE.FindAllSubmatch(out, -1); len(m) > 0 {
		baseline = string(m[len(m)-1][1])
	}
	return execs, baseline, took
}

// fuzzRun fuzzes one target for fuzztime.
func fuzzRun(root string, ft fuzzTarget, fuzztime string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-fuzz", "^"+ft.name+"$",
		"-fuzztime", fuzztime, "-fuzzminimizetime", "0s", "-parallel", "2", ft.pkg)
	cmd.Dir = root
	cmd.WaitDelay = 10 * time.Second
	return cmd.CombinedOutput()
}

// deadlineRace reports whether a failed run is Go 1.26's fuzzing
// coordinator reporting its own -fuzztime deadline as a failure
// (go.dev/issue/75804): "context deadline exceeded" and nothing found.
// A real finding always writes its input, and is never retried.
func deadlineRace(out []byte) bool {
	return bytes.Contains(out, []byte("context deadline exceeded")) &&
		!bytes.Contains(out, []byte("Failing input written")) && !bytes.Contains(out, []byte("panic:"))
}

// TestDeadlineRace: only the coordinator's bare deadline is retried; a
// run that found an input, or panicked, never is.
func TestDeadlineRace(t *testing.T) {
	race := "fuzz: elapsed: 3s, execs: 3957 (0/sec), new interesting: 2 (total: 64)\n--- FAIL: FuzzUntar (3.10s)\n    context deadline exceeded\nFAIL\n"
	found := "--- FAIL: FuzzUntar (0.20s)\n    fuzzing process hung or terminated unexpectedly: context deadline exceeded\n    Failing input written to testdata/fuzz/FuzzUntar/abc\n"
	panicked := "--- FAIL: FuzzUntar\n    panic: runtime error: index out of range\n    context deadline exceeded\n"
	other := "--- FAIL: FuzzUntar (0.01s)\n    untar_test.go:40: wrote outside the directory\n"
	for _, tc := range []struct {
		out  string
		want bool
	}{{race, true}, {found, false}, {panicked, false}, {other, false}} {
		if got := deadlineRace([]byte(tc.out)); got != tc.want {
			t.Errorf("deadlineRace(%q) = %v, want %v", tc.out, got, tc.want)
		}
	}
}

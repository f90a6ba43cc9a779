package gateway

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func TestDeployRevisions(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	first := r.deploy(t, r.alice, Deploy{Name: "echo", Env: map[string]string{"MODE": "one"}, Tags: map[string]string{"team": "web"}})
	if first.Number != 1 || first.Executor != "wasm" || first.Resources.CPU != jobs.DefaultCPU ||
		first.Resources.Memory != jobs.DefaultMemory || first.Timeout != jobs.Duration(jobs.DefaultTimeout) || first.MaxBody != DefaultMaxBody {
		t.Fatalf("first revision %+v: want number 1 and the defaults", first)
	}
	r.clock.Add(time.Minute)
	second := r.deploy(t, r.alice, Deploy{Name: "echo", NoDefault: true, Resources: types.Resources{CPU: 500}})
	third := r.deploy(t, r.alice, Deploy{Name: "echo", Timeout: jobs.Duration(time.Second)})
	fn, err := r.alice.GetFunction(ctx, "echo")
	if err != nil || fn.LatestRevision != 3 || fn.DefaultRevision != 3 || fn.Tags["team"] != "web" || !fn.UpdatedAt.After(fn.CreatedAt) {
		t.Fatalf("GetFunction: %+v %v", fn, err)
	}
	if second.Resources.CPU != 500 || second.Resources.Memory != jobs.DefaultMemory || third.Timeout != jobs.Duration(time.Second) {
		t.Errorf("revisions %+v %+v", second, third)
	}

	r.deploy(t, r.alice, Deploy{Name: "echo", NoDefault: true})
	if fn, _ = r.alice.GetFunction(ctx, "echo"); fn.DefaultRevision != 3 || fn.LatestRevision != 4 {
		t.Errorf("after a deploy with NoDefault: default %d, latest %d", fn.DefaultRevision, fn.LatestRevision)
	}
	if fn, err = r.alice.SetDefault(ctx, "echo", 2); err != nil || fn.DefaultRevision != 2 {
		t.Fatalf("SetDefault(2): %+v %v", fn, err)
	}
	for _, n := range []int{0, 5, -1} {
		_, err := r.alice.SetDefault(ctx, "echo", n)
		if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "no revision") {
			t.Errorf("SetDefault(%d): %v", n, err)
		}
	}
	revs, err := r.alice.Revisions(ctx, "echo")
	if err != nil || len(revs) != 4 || revs[0].Env["MODE"] != "one" || revs[3].Number != 4 {
		t.Fatalf("Revisions: %+v %v", revs, err)
	}
	if _, err := r.alice.Revisions(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Revisions(nope): %v", err)
	}
	if _, err := r.alice.GetFunction(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("GetFunction(nope): %v", err)
	}
}

func TestDeployNamesBadFields(t *testing.T) {
	r := newRig(t)
	module := r.f.put([]byte("module"))
	missing := types.CIDOf([]byte("never uploaded")).String()
	tests := []struct {
		d      Deploy
		fields []string
	}{
		{Deploy{Name: "Echo", Module: module}, []string{"name"}},
		{Deploy{Name: "echo"}, []string{"module"}},
		{Deploy{Name: "echo", Module: "./echo.wasm"}, []string{"module"}},
		{Deploy{Name: "echo", Module: missing}, []string{"module"}},
		{Deploy{Name: "echo", Module: module, Executor: "jvm"}, []string{"executor"}},
		{Deploy{Name: "echo", Module: module, Image: "alpine:3"}, []string{"image"}},
		{Deploy{Name: "echo", Executor: "docker", Module: "not-a-cid"}, []string{"module"}},
		{Deploy{Name: "echo", Module: module, Resources: types.Resources{CPU: -1, Memory: -2}}, []string{"resources.cpu", "resources.memory"}},
		{Deploy{Name: "echo", Module: module, Resources: types.Resources{GPUs: 1}}, []string{"resources.gpus"}},
		{Deploy{Name: "echo", Module: module, Timeout: jobs.Duration(48 * time.Hour)}, []string{"timeout"}},
		{Deploy{Name: "echo", Module: module, Timeout: -1}, []string{"timeout"}},
		{Deploy{Name: "echo", Module: module, Env: map[string]string{"1BAD": "x"}}, []string{"env"}},
		{Deploy{Name: "echo", Module: module, Env: map[string]string{"BIG": strings.Repeat("x", 40<<10)}}, []string{"args"}},
		{Deploy{Name: "echo", Module: module, Args: []string{"a\x00b"}}, []string{"args[0]"}},
		{Deploy{Name: "echo", Module: module, MaxBody: jobs.MaxStdin + 1}, []string{"max_body"}},
		{Deploy{Name: "echo", Module: module, MaxBody: -1}, []string{"max_body"}},
		{Deploy{Name: "echo", Module: module, Tags: map[string]string{"": "x", "a b": "c", "k": ""}}, []string{"tags", "tags.a b", "tags.k"}},
	}
	for _, tt := range tests {
		_, err := r.alice.Deploy(t.Context(), tt.d)
		var spec *jobs.SpecError
		if !errors.As(err, &spec) || !errors.Is(err, jobs.ErrInvalidSpec) {
			t.Errorf("Deploy(%+v): %v, want a *jobs.SpecError", tt.d, err)
			continue
		}
		var fields []string
		for _, p := range spec.Problems {
			fields = append(fields, p.Field)
		}
		if !slices.Equal(fields, tt.fields) {
			t.Errorf("Deploy(%+v) names %q, want %q (%v)", tt.d, fields, tt.fields, err)
		}
	}
	_, err := r.alice.Deploy(t.Context(), Deploy{Name: "echo", Module: missing})
	if !strings.Contains(err.Error(), "upload it first") {
		t.Errorf("a missing module: %v", err)
	}
	if fns, _ := r.alice.ListFunctions(t.Context(), Query{}); len(fns) != 0 {
		t.Errorf("bad deploys made functions: %+v", fns)
	}
}

func TestDeployDocker(t *testing.T) {
	r := newRig(t)
	named, err := r.alice.Deploy(t.Context(), Deploy{Name: "img", Executor: "docker", Image: "alpine:3.20"})
	if err != nil {
		t.Fatal(err)
	}
	archive := r.f.put([]byte("docker save"))
	shipped, err := r.alice.Deploy(t.Context(), Deploy{Name: "img", Executor: "docker", Module: archive, Image: "app:1"})
	if err != nil {
		t.Fatal(err)
	}
	if spec := jobSpec(named); spec.Image != "alpine:3.20" || spec.ImageArchive != "" || spec.Module != "" || spec.Pids != jobs.DefaultPids {
		t.Errorf("job of an image named: %+v", spec)
	}
	if spec := jobSpec(shipped); spec.ImageArchive != archive || spec.Module != "" {
		t.Errorf("job of an image shipped: %+v", spec)
	}
	if blobs, _ := r.g.Blobs(); !slices.Equal(blobs, []string{archive}) {
		t.Errorf("Blobs %q, want the archive", blobs)
	}
}

func TestDeleteFunction(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	r.deploy(t, r.alice, Deploy{Name: "other"})
	if _, err := r.alice.CreateEndpoint(ctx, EndpointSpec{Name: "pub", Function: "echo", DailyQuota: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.alice.CreateEndpoint(ctx, EndpointSpec{Name: "keep", Function: "other"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.g.CallEndpoint(ctx, "pub", Call{ClientIP: "10.0.0.1"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := r.alice.DeleteFunction(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.alice.GetFunction(ctx, "echo"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("GetFunction after delete: %v", err)
	}
	if _, err := r.alice.GetEndpoint(ctx, "pub"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("its endpoint after delete: %v", err)
	}
	if _, err := r.alice.GetEndpoint(ctx, "keep"); err != nil {
		t.Errorf("another function's endpoint: %v", err)
	}
	for _, prefix := range []string{revisionsOf("alice", "echo"), quotasOf("pub"), callsKey("alice", "echo")} {
		if left, _ := keys(r.db, prefix); len(left) != 0 {
			t.Errorf("left after delete: %q", left)
		}
	}
	if tasks, _ := r.alice.ListTasks(ctx, TaskQuery{Function: "echo"}); len(tasks) != 1 {
		t.Errorf("its tasks: %d, want them kept", len(tasks))
	}
	fn := r.deploy(t, r.alice, Deploy{Name: "echo"})
	if got, _ := r.alice.GetFunction(ctx, "echo"); fn.Number != 1 || got.Calls != 0 {
		t.Errorf("deployed again: revision %d, %d calls; want a new function", fn.Number, got.Calls)
	}
	if err := r.alice.DeleteFunction(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("DeleteFunction(nope): %v", err)
	}
}

func TestPutModule(t *testing.T) {
	r := newRig(t)
	c, err := r.alice.PutModule(t.Context(), strings.NewReader("wasm"))
	if err != nil || c != types.CIDOf([]byte("wasm")).String() {
		t.Fatalf("PutModule: %q %v", c, err)
	}
	if _, err := r.alice.Deploy(t.Context(), Deploy{Name: "m", Module: c}); err != nil {
		t.Fatal(err)
	}
}

// TestFunctionCacheNeverStale: calls read their function from a cache;
// readers racing with writes never leave it stale: once the writes end,
// every read sees the last one, and a deleted function is gone.
func TestFunctionCacheNeverStale(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	ctx := t.Context()
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := r.alice.GetFunction(ctx, "echo"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 200 {
		if _, err := r.alice.SetTags(ctx, "echo", map[string]string{"n": strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	readers.Wait()
	if fn, err := r.alice.GetFunction(ctx, "echo"); err != nil || fn.Tags["n"] != "199" {
		t.Fatalf("after the writes: %+v, %v", fn.Tags, err)
	}
	if err := r.alice.DeleteFunction(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.alice.GetFunction(ctx, "echo"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("a deleted function: %v", err)
	}
}

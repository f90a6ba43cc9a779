package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/testclock"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

func TestScalingDefaults(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f"})
	fn, err := r.alice.GetFunction(t.Context(), "f")
	want := Scaling{MaxInstances: DefaultMaxInstances, Concurrency: DefaultConcurrency, KeepAlive: jobs.Duration(DefaultKeepAlive), MaxQueue: DefaultMaxQueue}
	if err != nil || fn.Scaling != want {
		t.Fatalf("scaling %+v %v, want the defaults %+v", fn.Scaling, err, want)
	}
	fn, err = r.alice.SetScaling(t.Context(), "f", Scaling{MinInstances: 20})
	if err != nil || fn.Scaling.MaxInstances != 20 {
		t.Fatalf("a minimum over the default maximum: %+v %v", fn.Scaling, err)
	}
}

func TestScalingChecked(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "f"})
	for _, c := range []struct {
		sc    Scaling
		field string
	}{
		{Scaling{MinInstances: -1}, "scaling.min_instances"},
		{Scaling{MinInstances: MaxInstances + 1}, "scaling.min_instances"},
		{Scaling{MaxInstances: MaxInstances + 1}, "scaling.max_instances"},
		{Scaling{MaxInstances: -1}, "scaling.max_instances"},
		{Scaling{MinInstances: 5, MaxInstances: 2}, "scaling.min_instances"},
		{Scaling{Concurrency: types.MaxWarmConcurrency + 1}, "scaling.concurrency"},
		{Scaling{Concurrency: -1}, "scaling.concurrency"},
		{Scaling{KeepAlive: jobs.Duration(types.MinKeepAlive / 2)}, "scaling.keep_alive"},
		{Scaling{KeepAlive: jobs.Duration(types.MaxKeepAlive + time.Second)}, "scaling.keep_alive"},
		{Scaling{MaxQueue: MaxQueue + 1}, "scaling.max_queue"},
		{Scaling{MaxQueue: -1}, "scaling.max_queue"},
	} {
		_, err := r.alice.SetScaling(t.Context(), "f", c.sc)
		var se *jobs.SpecError
		if !errors.As(err, &se) || api.StatusOf(err) != 400 || !strings.Contains(err.Error(), c.field) {
			t.Errorf("SetScaling(%+v): %v, want a 400 naming %s", c.sc, err, c.field)
		}
		sc := c.sc
		if _, err := r.alice.Deploy(t.Context(), Deploy{Name: "f", Module: r.f.put([]byte("m")), Scaling: &sc}); !strings.Contains(fmtErr(err), c.field) {
			t.Errorf("Deploy with %+v: %v, want it to name %s", c.sc, err, c.field)
		}
	}
	if _, err := r.alice.SetScaling(t.Context(), "nope", Scaling{}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("SetScaling of no function: %v", err)
	}
	if fn, _ := r.alice.GetFunction(t.Context(), "f"); fn.LatestRevision != 1 || fn.Scaling.MaxInstances != DefaultMaxInstances {
		t.Errorf("function after refused changes: %+v", fn)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestScalingRoutes: PUT /v1/functions/{name}/scaling and GET
// /v1/functions/{name}/instances, through the handler and the Client.
func TestScalingRoutes(t *testing.T) {
	g := publicGateway(t)
	key := g.r.key
	g.deploy(Deploy{Name: "f"})
	fn := decode[Function](t, g.as(key, "PUT", "/v1/functions/f/scaling", `{"min_instances":1,"max_instances":3,"concurrency":4,"keep_alive":"30s","max_queue":9}`).want(t, 200))
	want := Scaling{MinInstances: 1, MaxInstances: 3, Concurrency: 4, KeepAlive: jobs.Duration(30 * time.Second), MaxQueue: 9}
	if fn.Scaling != want {
		t.Fatalf("scaling %+v, want %+v", fn.Scaling, want)
	}
	g.as(key, "PUT", "/v1/functions/f/scaling", `{"max_queue":0,"concurrency":5000}`).wantError(t, 400, "scaling.concurrency")
	g.as(key, "PUT", "/v1/functions/f/scaling", `{"nope":1}`).wantError(t, 400)
	g.as(key, "PUT", "/v1/functions/nope/scaling", `{}`).wantError(t, 404)
	warmed(t, g.r, "f", 1)
	list := decode[[]Instance](t, g.as(key, "GET", "/v1/functions/f/instances", "").want(t, 200))
	if len(list) != 1 || list[0].Job != "job-1" || list[0].Node != fakeNode || list[0].Revision != 1 || list[0].Function != "f" {
		t.Fatalf("instances %+v", list)
	}
	if spec := g.r.f.spec(1); spec.Warm == nil || spec.Warm.Concurrency != 4 || spec.Warm.KeepAlive != 30*time.Second {
		t.Fatalf("the instance's job %+v, want the function's concurrency and keep-alive", spec.Warm)
	}
	g.as(key, "GET", "/v1/functions/nope/instances", "").wantError(t, 404)

	c := NewClient(g.url, Auth{Key: key}, nil)
	ctx := context.Background()
	fn, err := c.SetScaling(ctx, "f", Scaling{MinInstances: 2, MaxInstances: 2})
	if err != nil || fn.Scaling.MinInstances != 2 || fn.Scaling.Concurrency != DefaultConcurrency {
		t.Fatalf("Client.SetScaling: %+v %v", fn.Scaling, err)
	}
	if _, err := c.SetScaling(ctx, "f", Scaling{MaxQueue: -1}); !errors.As(err, new(*jobs.SpecError)) || !strings.Contains(err.Error(), "scaling.max_queue") {
		t.Fatalf("Client.SetScaling of a bad queue: %v", err)
	}
	eventually(t, "two instances through the Client", func() bool {
		in, err := c.Instances(ctx, "f")
		return err == nil && len(in) == 2
	})
	if _, err := c.Instances(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Client.Instances of no function: %v", err)
	}
}

// TestRestartPrewarmsMinimum: a gateway started again over its database
// starts the instances of a function's minimum at once, with no call.
func TestRestartPrewarmsMinimum(t *testing.T) {
	db := openDisk(t, t.TempDir())
	t.Cleanup(func() { db.Close() })
	f, c := newFakeRunner(), testclock.New(start)
	first := newRigOn(t, db, f, c)
	first.deploy(t, first.alice, Deploy{Name: "warm", Scaling: &Scaling{MinInstances: 2}})
	first.deploy(t, first.alice, Deploy{Name: "cold"})
	f.next(t)
	f.next(t)
	first.g.Close()

	r := newRigOn(t, db, f, c)
	for range 2 {
		f.next(t)
		if name := f.spec(f.submissions()).Name; !strings.HasPrefix(name, "fn:alice/warm@") {
			t.Fatalf("a job after the restart: %s", name)
		}
	}
	eventually(t, "the two instances", func() bool {
		list, err := r.alice.Instances(t.Context(), "warm")
		return err == nil && len(list) == 2
	})
}

package gateway

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

func TestEndpointSpecNamesBadFields(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	tests := []struct {
		spec   EndpointSpec
		fields []string
	}{
		{EndpointSpec{Name: "E!", Function: "echo"}, []string{"name"}},
		{EndpointSpec{Name: "e"}, []string{"function"}},
		{EndpointSpec{Name: "e", Function: "nope"}, []string{"function"}},
		{EndpointSpec{Name: "e", Function: "echo", Revision: 2}, []string{"revision"}},
		{EndpointSpec{Name: "e", Function: "echo", Revision: -1}, []string{"revision"}},
		{EndpointSpec{Name: "e", Function: "echo", AllowIPs: []string{"10.0.0.0/8", "10.1.2.3/8", "nope"}}, []string{"allow_ips[1]", "allow_ips[2]"}},
		{EndpointSpec{Name: "e", Function: "echo", Windows: []string{"Mon-Fri 25:00-26:00", "Sat 08:00-12:00"}}, []string{"windows[0]"}},
		{EndpointSpec{Name: "e", Function: "echo", Zone: "Mars/Olympus"}, []string{"zone"}},
		{EndpointSpec{Name: "e", Function: "echo", DailyQuota: -1}, []string{"daily_quota"}},
		{EndpointSpec{Name: "e", Function: "echo", Auth: "password"}, []string{"auth"}},
		{EndpointSpec{Name: "e", Function: "echo", Tags: map[string]string{"k=v": "x"}}, []string{"tags.k=v"}},
	}
	for _, tt := range tests {
		_, err := r.alice.CreateEndpoint(t.Context(), tt.spec)
		var spec *jobs.SpecError
		if !errors.As(err, &spec) {
			t.Errorf("CreateEndpoint(%+v): %v, want a *jobs.SpecError", tt.spec, err)
			continue
		}
		var fields []string
		for _, p := range spec.Problems {
			fields = append(fields, p.Field)
		}
		if !slices.Equal(fields, tt.fields) {
			t.Errorf("CreateEndpoint(%+v) names %q, want %q (%v)", tt.spec, fields, tt.fields, err)
		}
	}
	_, err := r.alice.CreateEndpoint(t.Context(), EndpointSpec{Name: "e", Function: "echo", AllowIPs: []string{"10.1.2.3/8"}})
	if !strings.Contains(err.Error(), "10.0.0.0/8") || strings.Contains(err.Error(), "policy: invalid") {
		t.Errorf("the problem of a prefix with host bits: %v", err)
	}
}

func TestEndpoints(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	ep, err := r.alice.CreateEndpoint(ctx, EndpointSpec{
		Name: "pub", Function: "echo", DailyQuota: 5, Windows: []string{"Mon-Fri 08:00-18:00 Europe/Berlin"}, Tags: map[string]string{"env": "prod"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resets := time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC) // midnight in Berlin
	if ep.Path != "/e/pub/" || ep.Auth != AuthNone || ep.Account != "alice" || ep.Today != 0 || *ep.Remaining != 5 || !ep.ResetsAt.Equal(resets) {
		t.Fatalf("endpoint %+v", ep)
	}
	if _, err := r.alice.CreateEndpoint(ctx, EndpointSpec{Name: "pub", Function: "echo"}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("the same name twice: %v", err)
	}
	bob, _ := r.account(t, "bob")
	r.deploy(t, bob, Deploy{Name: "echo"})
	_, err = bob.CreateEndpoint(ctx, EndpointSpec{Name: "pub", Function: "echo"})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "endpoint name taken") {
		t.Errorf("another account's name: %v", err)
	}

	r.clock.Add(time.Minute)
	updated, err := r.alice.UpdateEndpoint(ctx, EndpointSpec{Name: "pub", Function: "echo", DailyQuota: 10})
	if err != nil || updated.DailyQuota != 10 || len(updated.Windows) != 0 || !updated.CreatedAt.Equal(ep.CreatedAt) || !updated.UpdatedAt.After(ep.UpdatedAt) {
		t.Fatalf("UpdateEndpoint: %+v %v", updated, err)
	}
	if !updated.ResetsAt.Equal(time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("a quota without a window resets at %s, want midnight UTC", updated.ResetsAt)
	}
	if _, err := r.alice.UpdateEndpoint(ctx, EndpointSpec{Name: "nope", Function: "echo"}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("UpdateEndpoint(nope): %v", err)
	}
	if eps, err := r.alice.ListEndpoints(ctx, Query{}); err != nil || len(eps) != 1 || eps[0].Remaining == nil {
		t.Errorf("ListEndpoints: %+v %v", eps, err)
	}
	if err := r.alice.DeleteEndpoint(ctx, "pub"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.CreateEndpoint(ctx, EndpointSpec{Name: "pub", Function: "echo"}); err != nil {
		t.Errorf("a name freed: %v", err)
	}
}

// publish makes alice's function "echo" and an endpoint of it.
func (r *rig) publish(t *testing.T, spec EndpointSpec) {
	t.Helper()
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	spec.Function = "echo"
	if _, err := r.alice.CreateEndpoint(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
}

func TestQuota(t *testing.T) {
	r := newRig(t)
	r.publish(t, EndpointSpec{Name: "pub", DailyQuota: 5, Zone: "Europe/Berlin"})
	call := Call{ClientIP: "192.0.2.1"}
	for i := range 5 {
		if _, err := r.g.CallEndpoint(t.Context(), "pub", call, ""); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	_, err := r.g.CallEndpoint(t.Context(), "pub", call, "")
	var retry api.Retryer
	midnight := time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC)
	if !errors.Is(err, api.ErrTooManyRequests) || !errors.As(err, &retry) || retry.RetryAfter() != midnight.Sub(start) {
		t.Fatalf("6th call: %v, want 429 with Retry-After %s", err, midnight.Sub(start))
	}
	if n := len(r.f.callsMade()); n != 5 {
		t.Errorf("%d calls, want 5", n)
	}
	ep, _ := r.alice.GetEndpoint(t.Context(), "pub")
	if ep.Today != 5 || *ep.Remaining != 0 {
		t.Errorf("today %d, remaining %d; want 5 and 0 (a refused call does not count)", ep.Today, *ep.Remaining)
	}

	r.clock.Set(midnight)
	if _, err := r.g.CallEndpoint(t.Context(), "pub", call, ""); err != nil {
		t.Fatalf("a call on the next day: %v", err)
	}
	if ep, _ = r.alice.GetEndpoint(t.Context(), "pub"); ep.Today != 1 {
		t.Errorf("today %d on the next day, want 1", ep.Today)
	}
	if left, _ := keys(r.db, quotasOf("pub")); len(left) != 1 {
		t.Errorf("quota counts kept: %q, want today's only", left)
	}
}

func TestQuotaUnderConcurrentCalls(t *testing.T) {
	r := newRig(t)
	r.publish(t, EndpointSpec{Name: "pub", DailyQuota: 5})
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_, err := r.g.CallEndpoint(t.Context(), "pub", Call{ClientIP: "192.0.2.1"}, "")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, api.ErrTooManyRequests):
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 5 || refused.Load() != 45 || len(r.f.callsMade()) != 5 {
		t.Fatalf("%d calls ran, %d refused, %d sent; want 5, 45, 5", ok.Load(), refused.Load(), len(r.f.callsMade()))
	}
}

func TestWindows(t *testing.T) {
	r := newRig(t)
	r.publish(t, EndpointSpec{Name: "pub", Windows: []string{"Mon-Fri 12:00-18:00 Europe/Berlin", "Sat 08:00-09:00 UTC"}})
	_, err := r.g.CallEndpoint(t.Context(), "pub", Call{ClientIP: "192.0.2.1"}, "") // Monday 11:00 in Berlin
	var retry api.Retryer
	if !errors.Is(err, api.ErrForbidden) || !errors.As(err, &retry) || retry.RetryAfter() != time.Hour ||
		!strings.Contains(err.Error(), "2026-12-07T12:00:00+01:00") {
		t.Fatalf("a call before the window: %v, want 403 naming the opening", err)
	}
	r.clock.Add(time.Hour)
	if _, err := r.g.CallEndpoint(t.Context(), "pub", Call{ClientIP: "192.0.2.1"}, ""); err != nil {
		t.Fatalf("a call in the window: %v", err)
	}
	if ep, _ := r.alice.GetEndpoint(t.Context(), "pub"); ep.Today != 1 {
		t.Errorf("today %d, want 1 (the refused call does not count)", ep.Today)
	}
}

func TestAllowIPs(t *testing.T) {
	r := newRig(t)
	r.publish(t, EndpointSpec{Name: "pub", AllowIPs: []string{"10.0.0.0/8", "2001:db8::/32"}})
	for ip, allowed := range map[string]bool{"10.1.2.3": true, "2001:db8::1": true, "::ffff:10.0.0.1": true, "192.0.2.1": false, "": false, "junk": false} {
		_, err := r.g.CallEndpoint(t.Context(), "pub", Call{ClientIP: ip}, "")
		if allowed && err != nil || !allowed && (!errors.Is(err, api.ErrForbidden) || !strings.Contains(err.Error(), "allowlist")) {
			t.Errorf("a call from %q: %v", ip, err)
		}
	}
}

func TestEndpointAuth(t *testing.T) {
	r := newRig(t)
	r.publish(t, EndpointSpec{Name: "pub", Auth: AuthKey})
	_, bobKey := r.account(t, "bob")
	if _, err := r.g.CallEndpoint(t.Context(), "pub", Call{}, ""); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("no key: %v", err)
	}
	_, missing := r.g.CallEndpoint(t.Context(), "nope", Call{}, r.key)
	for _, key := range []string{bobKey, "dms_bad"} {
		_, err := r.g.CallEndpoint(t.Context(), "pub", Call{}, key)
		if !errors.Is(err, api.ErrNotFound) || strings.Replace(err.Error(), "pub", "nope", 1) != missing.Error() {
			t.Errorf("key %q: %v, want the answer of a missing endpoint (%v)", key, err, missing)
		}
	}
	res, err := r.g.CallEndpoint(t.Context(), "pub", Call{Method: http.MethodGet, Path: "/x"}, r.key)
	if err != nil || res.Task == "" {
		t.Fatalf("alice's key: %+v %v", res, err)
	}
	wantEnv(t, r.f.lastCall(t), map[string]string{"SCRIPT_NAME": "/e/pub", "PATH_INFO": "/x"})
	if task, _ := r.alice.GetTask(t.Context(), res.Task); task.Endpoint != "pub" {
		t.Errorf("task %+v, want it through pub", task)
	}
}

func TestEndpointRevision(t *testing.T) {
	r := newRig(t)
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	r.deploy(t, r.alice, Deploy{Name: "echo"})
	for _, spec := range []EndpointSpec{{Name: "pinned", Function: "echo", Revision: 1}, {Name: "latest", Function: "echo"}} {
		if _, err := r.alice.CreateEndpoint(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	call := func(ep string) string {
		if _, err := r.g.CallEndpoint(t.Context(), ep, Call{}, ""); err != nil {
			t.Fatal(err)
		}
		return r.f.lastCall(t).Spec.Name
	}
	if a, b := call("pinned"), call("latest"); a != "fn:alice/echo@1" || b != "fn:alice/echo@2" {
		t.Errorf("pinned ran %q, latest %q", a, b)
	}
	if _, err := r.alice.SetDefault(t.Context(), "echo", 1); err != nil {
		t.Fatal(err)
	}
	if got := call("latest"); got != "fn:alice/echo@1" {
		t.Errorf("after switching the default, the endpoint ran %q", got)
	}
}

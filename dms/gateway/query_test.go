package gateway

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
)

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = name(it)
	}
	return out
}

func fnName(f Function) string { return f.Name }

func TestListFunctions(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	for _, d := range []Deploy{
		{Name: "resize", Tags: map[string]string{"team": "media", "tier": "gold"}},
		{Name: "echo", Tags: map[string]string{"team": "web"}},
		{Name: "thumbs", Tags: map[string]string{"team": "media", "note": "Uses ImageMagick"}},
		{Name: "bare"},
	} {
		r.clock.Add(time.Minute)
		r.deploy(t, r.alice, d)
	}
	for range 2 {
		if _, err := r.alice.Invoke(ctx, "thumbs", Call{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.alice.Invoke(ctx, "echo", Call{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		q    Query
		want []string
	}{
		{Query{}, []string{"bare", "echo", "resize", "thumbs"}},
		{Query{Sort: "created"}, []string{"bare", "thumbs", "echo", "resize"}},
		{Query{Sort: "calls"}, []string{"thumbs", "echo", "bare", "resize"}},
		{Query{Tags: map[string]string{"team": "media"}}, []string{"resize", "thumbs"}},
		{Query{Tags: map[string]string{"team": "media", "tier": "gold"}}, []string{"resize"}},
		{Query{Tags: map[string]string{"team": "nobody"}}, nil},
		{Query{Search: "MAGICK"}, []string{"thumbs"}},
		{Query{Search: "gol"}, []string{"resize"}},
		{Query{Search: "ech"}, []string{"echo"}},
		{Query{Search: "e", Tags: map[string]string{"team": "media"}, Sort: "calls"}, []string{"thumbs", "resize"}},
	}
	for _, tt := range tests {
		fns, err := r.alice.ListFunctions(ctx, tt.q)
		if got := names(fns, fnName); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ListFunctions(%+v): %q %v, want %q", tt.q, got, err, tt.want)
		}
	}
	if _, err := r.alice.ListFunctions(ctx, Query{Sort: "size"}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("an unknown sort: %v", err)
	}
	if _, err := r.alice.ListEndpoints(ctx, Query{Sort: "calls"}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("sorting endpoints by calls: %v", err)
	}

	fn, err := r.alice.SetTags(ctx, "bare", map[string]string{"team": "web"})
	if err != nil || fn.Tags["team"] != "web" {
		t.Fatalf("SetTags: %+v %v", fn, err)
	}
	if _, err := r.alice.SetTags(ctx, "bare", map[string]string{"bad key": "x"}); !errors.Is(err, jobs.ErrInvalidSpec) {
		t.Errorf("SetTags with a bad key: %v", err)
	}
	tags, err := r.alice.ListTags(ctx)
	want := []Tag{
		{Key: "note", Value: "Uses ImageMagick", Functions: 1}, {Key: "team", Value: "media", Functions: 2},
		{Key: "team", Value: "web", Functions: 2}, {Key: "tier", Value: "gold", Functions: 1},
	}
	if err != nil || !slices.Equal(tags, want) {
		t.Errorf("ListTags: %+v %v, want %+v", tags, err, want)
	}
}

func TestGroupBy(t *testing.T) {
	fns := []Function{
		{Name: "a", Tags: map[string]string{"team": "web"}},
		{Name: "b"},
		{Name: "c", Tags: map[string]string{"team": "media"}},
		{Name: "d", Tags: map[string]string{"team": "web"}},
	}
	groups := GroupBy(fns, func(f Function) map[string]string { return f.Tags }, "team")
	var got [][]string
	for _, g := range groups {
		got = append(got, append([]string{g.Value}, names(g.Items, fnName)...))
	}
	want := [][]string{{"media", "c"}, {"web", "a", "d"}, {"", "b"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("GroupBy: %q, want %q", got, want)
	}
	if g := GroupBy([]Function(nil), func(f Function) map[string]string { return f.Tags }, "team"); len(g) != 0 {
		t.Errorf("GroupBy of nothing: %+v", g)
	}
}

func TestListTasks(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.deploy(t, r.alice, Deploy{Name: "a"})
	r.deploy(t, r.alice, Deploy{Name: "b"})
	var ids []string
	for _, fn := range []string{"a", "b", "a"} {
		r.clock.Add(time.Second)
		res, err := r.alice.Invoke(ctx, fn, Call{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Task)
	}
	r.f.replying(exited(1, "x"))
	r.clock.Add(time.Second)
	_, err := r.alice.Invoke(ctx, "b", Call{})
	var ce *CallError
	if !errors.As(err, &ce) {
		t.Fatal(err)
	}
	ids = append(ids, ce.Task)
	tid := func(t Task) string { return t.ID }
	tests := []struct {
		q    TaskQuery
		want []string
	}{
		{TaskQuery{}, []string{ids[3], ids[2], ids[1], ids[0]}},
		{TaskQuery{Limit: 2}, []string{ids[3], ids[2]}},
		{TaskQuery{Function: "a"}, []string{ids[2], ids[0]}},
		{TaskQuery{State: TaskFailed}, []string{ids[3]}},
		{TaskQuery{Function: "b", State: TaskCompleted}, []string{ids[1]}},
	}
	for _, tt := range tests {
		tasks, err := r.alice.ListTasks(ctx, tt.q)
		if got := names(tasks, tid); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ListTasks(%+v): %q %v, want %q", tt.q, got, err, tt.want)
		}
	}
	for _, q := range []TaskQuery{{Limit: -1}, {Limit: MaxTaskLimit + 1}, {State: "done"}} {
		if _, err := r.alice.ListTasks(ctx, q); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("ListTasks(%+v): %v", q, err)
		}
	}
	if _, err := r.alice.GetTask(ctx, "../bob/x"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("GetTask of a malformed ID: %v", err)
	}
}

package dms

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/p2p"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/orchestrator/flow"
	"github.com/opendms/dms/types"
)

const (
	sharedDoc = `
name: shared
steps:
  fan: {for_each: [a, b, c], module: fan.wasm, args: ["{{item}}"], resources: {cpu: 0.1, memory: 16MiB}}
  again: {module: again.wasm, needs: [fan], cache: false, resources: {cpu: 0.1, memory: 16MiB}}
`
	// soloDoc runs sharedDoc's again, cacheable.
	soloDoc = `
name: solo
steps:
  again: {module: again.wasm, resources: {cpu: 0.1, memory: 16MiB}}
`
	freshDoc = `
name: fresh
steps:
  pick: {module: pick.wasm, resources: {cpu: 0.1, memory: 16MiB}}
`
)

// keysOf lists the keys under prefix of d's database, without it:
// cachePrefix for its own flow cache.
func keysOf(t *testing.T, d *DMS, prefix string) []string {
	t.Helper()
	var keys []string
	err := d.db.Scan(prefix, func(key string, _ []byte) error {
		keys = append(keys, strings.TrimPrefix(key, prefix))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// forge has m, a hostile node, publish under its own key a result of its
// choosing for every instance of f's first steps: stdout and stderr the
// blob lie. It returns the cache keys it lied about and the lie's CID.
func forge(t *testing.T, ctx context.Context, m *DMS, f *jobs.Flow, lie string) ([]string, string) {
	t.Helper()
	if err := api.UploadFlow(ctx, m, f); err != nil {
		t.Fatal(err)
	}
	plan, err := flow.New(f)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.blobs.Put([]byte(lie))
	if err != nil {
		t.Fatal(err)
	}
	value, err := json.Marshal(flow.Outcome{Node: m.host.ID(),
		Result: &types.Result{Stdout: c, Stderr: c, Sizes: map[string]int64{c: int64(len(lie))}}})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, task := range plan.Start() {
		if err := m.host.PutCacheRecord(ctx, task.CacheKey, value); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, task.CacheKey)
	}
	return keys, c
}

// awaitRecord waits until reader finds publisher's record of key.
func awaitRecord(t *testing.T, ctx context.Context, reader, publisher *DMS, key string) {
	t.Helper()
	waitFor(t, 30*time.Second, "a shared record", func() bool {
		_, err := reader.host.GetCacheRecord(ctx, key, publisher.host.ID())
		return err == nil
	})
}

// TestSharedFlowCache: A shares its flows' results; B, which trusts A,
// runs A's flow without a job but for its cache: false step; C, which
// does not trust A, runs everything. M, a hostile node, publishes lies
// for the same steps: B, which does not trust M, never takes them, and
// C, which does, takes them only for a step it has not run itself. B
// shares what it ran, never what it took from A; A publishes a result
// again when a hit of its own cache finds its record missing.
func TestSharedFlowCache(t *testing.T) {
	nodes := growNet(t, 5, func(i int) bool { return i == 0 }, func(i int, up []*DMS) []Option {
		switch i {
		case 1, 2: // A, M
			return []Option{WithFlowCache(FlowCacheConfig{Share: true})}
		case 3: // B trusts A, named by its did:key
			return []Option{WithFlowCache(FlowCacheConfig{Share: true, Trust: []string{up[1].host.DID()}, LookupTimeout: 20 * time.Second})}
		case 4: // C trusts M
			return []Option{WithFlowCache(FlowCacheConfig{Trust: []string{up[2].host.ID()}, LookupTimeout: 20 * time.Second})}
		}
		return nil
	})
	a, m, b, c := nodes[1], nodes[2], nodes[3], nodes[4]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mods := map[string]time.Duration{"fan": 0, "again": 0}

	// A runs again on its own (cacheable there), then the flow.
	if solo := awaitFlow(t, ctx, a, runFlow(t, ctx, a, writeFlow(t, soloDoc, mods)).ID); solo.State != api.FlowCompleted {
		t.Fatalf("solo: %s %q", solo.State, solo.Reason)
	}
	start := time.Now()
	first := awaitFlow(t, ctx, a, runFlow(t, ctx, a, writeFlow(t, sharedDoc, mods)).ID)
	ranA := time.Since(start)
	if first.State != api.FlowCompleted || first.Steps[0].Counts.Cached != 0 {
		t.Fatalf("A's run: %s %q, fan %+v", first.State, first.Reason, first.Steps[0].Counts)
	}
	keys := keysOf(t, a, cachePrefix) // fan's three and again's
	if len(keys) != 4 {
		t.Fatalf("A's cache holds %d entries, want 4", len(keys))
	}
	for _, k := range keys {
		awaitRecord(t, ctx, b, a, k)
	}
	start = time.Now()
	if _, ok := b.shared.lookup(ctx, keys[0]); !ok {
		t.Fatal("B's look-up of a record of A's missed")
	}
	hit := time.Since(start)
	start = time.Now()
	if _, ok := b.shared.lookup(ctx, "no such key"); ok {
		t.Fatal("B's look-up of a key nobody shared hit")
	}
	t.Logf("A ran the flow in %s; B's look-up of a shared result: a hit in %s, a miss in %s", ranA, hit, time.Since(start))

	// A hit of A's own cache publishes a result again when its record was
	// never published (here: forgotten); fan's three, not again's.
	waitFor(t, 30*time.Second, "A's publications recorded", func() bool { return len(keysOf(t, a, sharedPrefix)) == 4 })
	for _, k := range keys {
		if err := a.db.Delete(sharedPrefix + k); err != nil {
			t.Fatal(err)
		}
	}
	if rerun := awaitFlow(t, ctx, a, runFlow(t, ctx, a, writeFlow(t, sharedDoc, mods)).ID); rerun.Steps[0].Counts.Cached != 3 {
		t.Fatalf("A's rerun: fan %+v", rerun.Steps[0].Counts)
	}
	waitFor(t, 30*time.Second, "fan's results published again", func() bool { return len(keysOf(t, a, sharedPrefix)) == 3 })

	// C, which does not trust A, runs every instance.
	ofC := awaitFlow(t, ctx, c, runFlow(t, ctx, c, writeFlow(t, sharedDoc, mods)).ID)
	if ofC.State != api.FlowCompleted || ofC.Steps[0].Counts.Cached != 0 {
		t.Fatalf("C's run: %s %q, fan %+v", ofC.State, ofC.Reason, ofC.Steps[0].Counts)
	}
	if runs := runsOf(t, nodes[:1], ofC); len(runs) != 4 {
		t.Fatalf("C's run ran %v, want every instance", runs)
	}

	// M lies about fan's instances and about fresh's pick, which no one ran.
	lied, _ := forge(t, ctx, m, writeFlow(t, sharedDoc, mods), "m's lie\n")
	if !slices.Contains(keys, lied[0]) || len(lied) != 3 {
		t.Fatalf("M lied about %v, not about fan's instances", lied)
	}
	pickKeys, lie := forge(t, ctx, m, writeFlow(t, freshDoc, map[string]time.Duration{"pick": 0}), "m's lie\n")
	for _, k := range append(lied, pickKeys...) {
		awaitRecord(t, ctx, c, m, k)
	}

	// B, which trusts A, takes fan from A and runs again (cache: false,
	// although A shared again's result).
	start = time.Now()
	second := awaitFlow(t, ctx, b, runFlow(t, ctx, b, writeFlow(t, sharedDoc, mods)).ID)
	t.Logf("B ran the flow in %s", time.Since(start))
	fan, again := second.Steps[0], second.Steps[1]
	if second.State != api.FlowCompleted || fan.Counts.Cached != 3 || again.Counts.Cached != 0 {
		t.Fatalf("B's run: %s %q, fan %+v, again %+v", second.State, second.Reason, fan.Counts, again.Counts)
	}
	for i, in := range fan.Instances {
		if in.JobID != "" || !in.Cached || in.CachedFrom != a.host.ID() || in.Result.Stdout != first.Steps[0].Instances[i].Result.Stdout {
			t.Fatalf("B's fan[%d]: %+v, want A's result, cached from A", i, in)
		}
	}
	if runs := runsOf(t, nodes[:1], second); len(runs) != 1 || runs["again[0]"] != 1 {
		t.Fatalf("B's run ran %v, want only again", runs)
	}
	if jobs, err := b.ListJobs(ctx); err != nil || len(jobs) != 1 {
		t.Fatalf("B submitted %d jobs (%v), want again's only", len(jobs), err)
	}
	for _, k := range lied { // kept in B's own cache, with where it came from
		var o flow.Outcome
		if ok, err := b.db.Lookup(cachePrefix+k, &o); err != nil || !ok || o.CachedFrom != a.host.ID() {
			t.Fatalf("B's cache entry %s: %+v, %v %v", k, o, ok, err)
		}
	}

	// C runs the flow again: its own results, not M's, although it trusts M.
	again2 := awaitFlow(t, ctx, c, runFlow(t, ctx, c, writeFlow(t, sharedDoc, mods)).ID)
	for i, in := range again2.Steps[0].Instances {
		if !in.Cached || in.CachedFrom != "" || in.Result.Stdout != ofC.Steps[0].Instances[i].Result.Stdout {
			t.Fatalf("C's second run, fan[%d]: %+v, want its own cached result", i, in)
		}
	}

	// fresh: B runs pick (it does not trust M); C takes M's lie (it does).
	fresh := map[string]time.Duration{"pick": 0}
	ofB := awaitFlow(t, ctx, b, runFlow(t, ctx, b, writeFlow(t, freshDoc, fresh)).ID)
	if in := ofB.Steps[0].Instances[0]; ofB.State != api.FlowCompleted || in.Cached || in.Result.Stdout == lie {
		t.Fatalf("B's fresh: %s %q, %+v", ofB.State, ofB.Reason, in)
	}
	lied2 := awaitFlow(t, ctx, c, runFlow(t, ctx, c, writeFlow(t, freshDoc, fresh)).ID)
	if in := lied2.Steps[0].Instances[0]; in.CachedFrom != m.host.ID() || in.Result.Stdout != lie {
		t.Fatalf("C's fresh: %+v, want M's lie, which C trusts", in)
	}

	// B shared pick, which it ran, and nothing it took from A, not even
	// when it hits its own cache's copy.
	if rerun := awaitFlow(t, ctx, b, runFlow(t, ctx, b, writeFlow(t, sharedDoc, mods)).ID); rerun.Steps[0].Counts.Cached != 3 {
		t.Fatalf("B's rerun: fan %+v", rerun.Steps[0].Counts)
	}
	awaitRecord(t, ctx, a, b, pickKeys[0])
	for _, k := range lied {
		if _, err := a.host.GetCacheRecord(ctx, k, b.host.ID()); !errors.Is(err, p2p.ErrNoRecord) {
			t.Fatalf("B's record of fan, taken from A: %v, want none", err)
		}
	}
}

// TestSharedOutcome: a trusted node's record is used only when it holds a
// completed result whose outputs are CIDs; it is marked cached, from its
// publisher.
func TestSharedOutcome(t *testing.T) {
	c := types.CIDOf([]byte("out")).String()
	ok := `{"result":{"exit_code":0,"stdout":"` + c + `","stderr":"` + c + `","files":{"x":"` + c + `"}},"node":"n"}`
	o, err := sharedOutcome([]byte(ok), "12D3KooWA")
	if err != nil || !o.Cached || o.CachedFrom != "12D3KooWA" || o.Node != "n" || o.Result.Files["x"] != c {
		t.Fatalf("a good record: %+v, %v", o, err)
	}
	for name, value := range map[string]string{
		"garbage":        "not json",
		"no result":      `{"node":"n"}`,
		"a failed run":   `{"result":{"exit_code":1,"stdout":"` + c + `","stderr":"` + c + `"}}`,
		"stdout not CID": `{"result":{"exit_code":0,"stdout":"/etc/passwd","stderr":"` + c + `"}}`,
		"no stderr":      `{"result":{"exit_code":0,"stdout":"` + c + `"}}`,
		"a file not CID": `{"result":{"exit_code":0,"stdout":"` + c + `","stderr":"` + c + `","files":{"x":"nope"}}}`,
	} {
		if _, err := sharedOutcome([]byte(value), "12D3KooWA"); err == nil {
			t.Errorf("%s: used", name)
		}
	}
}

package dms

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// 120 jobs submitted at once to 10 nodes, each of which both computes and
// submits 12 of them, every job asking for a whole core: nodes are full
// most of the time, so jobs queue and auctions overlap. Every job must
// complete, and the providers' own records must show that no node ever held
// more than it offered and that no job was accepted by two nodes.
//
// The timeouts are generous because this test is about capacity, not
// timing: on two cores under -race, shared with other test packages, a
// confirm or a bid can take seconds, and the default one-second lease could
// declare a busy node lost (a job then runs twice, legitimately: the lease
// tests cover that). The retries absorb auctions that time out all the same.
func TestHundredJobsOnTenNodesNeverOversubscribe(t *testing.T) {
	const nodesN, perNode = 10, 12
	began := time.Now()
	nodes := relNet(t, nodesN, func(int) bool { return true }, func(int) []Option {
		return []Option{WithLease(10 * time.Second), WithConfirmTimeout(10 * time.Second)}
	})
	up := time.Since(began)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	spec := tinySpec(t, 0, "done\n")
	spec.Resources.CPU = 1000 // a node offers every core by default: it runs as many of these at once as it has cores
	spec.BidWindow = jobs.Duration(10 * time.Second)
	spec.Retries = 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	var done []api.Job
	var problems []string
	submitted := time.Now()
	for _, d := range nodes {
		for range perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				spec := *spec
				h, err := d.Submit(ctx, &spec)
				if err == nil {
					var j api.Job
					if j, err = h.Wait(ctx); err == nil {
						mu.Lock()
						done = append(done, j)
						mu.Unlock()
						return
					}
				}
				mu.Lock()
				problems = append(problems, err.Error())
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	ran := time.Since(submitted)
	for _, p := range problems {
		t.Error(p)
	}
	for _, j := range done {
		if j.State != types.JobCompleted {
			t.Errorf("job %s %s: %s", j.ID, j.State, j.Reason)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	byJob := map[string][]allocation{}
	where := map[types.AllocationID]string{}
	total, peak := 0, 0
	for _, d := range nodes {
		info, err := d.Node(ctx)
		if err != nil {
			t.Fatal(err)
		}
		allocs := allocations(t, d)
		total += len(allocs)
		for _, a := range allocs {
			byJob[string(a.JobID)] = append(byJob[string(a.JobID)], a)
			where[a.AllocationID] = d.host.ID()
		}
		most := mostAtOnce(allocs)
		peak = max(peak, int(most.CPU/1000))
		if !most.Fits(info.Registered) {
			t.Errorf("node %s held %s at once, offering %s", d.host.ID(), most, info.Registered)
		}
	}
	for _, j := range done {
		var completed, started []allocation
		for _, a := range byJob[j.ID] {
			if a.State == types.AllocCompleted {
				completed = append(completed, a)
			}
			if !a.StartedAt.IsZero() {
				started = append(started, a)
			}
		}
		last := j.Attempts[len(j.Attempts)-1]
		switch {
		case len(completed) != 1:
			t.Errorf("job %s completed %d times: %+v; its attempts: %+v", j.ID, len(completed), completed, j.Attempts)
		case len(started) != 1:
			t.Errorf("job %s was started by %d allocations: %+v; its attempts: %+v", j.ID, len(started), started, j.Attempts)
		case string(completed[0].AllocationID) != last.AllocationID || where[completed[0].AllocationID] != j.Node:
			t.Errorf("job %s says it ran as %s on %s; the completed allocation is %s on %s",
				j.ID, last.AllocationID, j.Node, completed[0].AllocationID, where[completed[0].AllocationID])
		}
	}
	t.Logf("%d nodes up in %s; %d jobs ended in %s; %d allocations locked in all; at most %d cores in use on one node",
		nodesN, up, len(done), ran, total, peak)
}

// mostAtOnce is the most capability a provider's allocations held at once,
// per dimension, from the moment each was locked to the moment it ended. A
// lock that never ended holds until its expiry, or until now if it runs.
func mostAtOnce(allocs []allocation) types.Resources {
	type edge struct {
		at  time.Time
		r   types.Resources
		end bool
	}
	var edges []edge
	for _, a := range allocs {
		end := a.EndedAt
		switch {
		case !end.IsZero():
		case a.State == types.AllocLocked:
			end = a.LockExpiry
		default:
			end = time.Now()
		}
		edges = append(edges, edge{a.LockedAt, a.Resources, false}, edge{end, a.Resources, true})
	}
	// At the same instant, a release happens before a lock: the actor does
	// one thing at a time, and a lock that fit counted the release.
	slices.SortFunc(edges, func(x, y edge) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return cmp.Compare(boolInt(!x.end), boolInt(!y.end))
	})
	var now, most types.Resources
	for _, e := range edges {
		if e.end {
			now = now.Sub(e.r)
			continue
		}
		now = now.Add(e.r)
		most = types.Resources{CPU: max(most.CPU, now.CPU), Memory: max(most.Memory, now.Memory),
			Disk: max(most.Disk, now.Disk), GPUs: max(most.GPUs, now.GPUs)}
	}
	return most
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

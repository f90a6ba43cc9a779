package dms

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// Jobs submitted together must all be placed: a bid that lost its auction
// must not keep capability from the next one.
func TestConcurrentJobsAllComplete(t *testing.T) {
	nodes := testNet(t, 3, func(i int) bool { return i != 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n = 8 // twice what the two nodes can run at once
	var wg sync.WaitGroup
	results := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A tiny module that runs for a while, so the jobs overlap: the
			// 2.5 MB hello module's first compile under -race took most of
			// the minute and a half on a loaded machine (CI at 1b3e174).
			spec := tinySpec(t, 300*time.Millisecond, "hello\n")
			spec.Resources.CPU = 1000
			// The window closes as soon as both nodes answer; a long one
			// only keeps a loaded machine (-race, parallel packages) from
			// closing it before they can.
			spec.BidWindow = jobs.Duration(10 * time.Second)
			h, err := nodes[0].Submit(ctx, spec)
			if err != nil {
				results <- err.Error()
				return
			}
			j, err := h.Wait(ctx)
			if err != nil {
				results <- err.Error()
				return
			}
			if j.State != types.JobCompleted {
				results <- string(j.State) + ": " + j.Reason
				return
			}
			results <- ""
		}()
	}
	wg.Wait()
	close(results)
	failed := 0
	for r := range results {
		if r != "" {
			failed++
			t.Log(r)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent jobs did not complete", failed, n)
	}
}

package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// A real daemon's own views, as the CLI prints them: empty listings,
// its ledger with nothing held, and bad filters, limits and cursors
// refused by the node itself, saying what would do.
func TestNodeViewsOfARealDaemon(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := startNode(ctx, filepath.Join(t.TempDir(), "home"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	home := newDaemon(t, d)
	runCases(t, home, []cliCase{
		{[]string{"node", "allocations"}, 0, "ALLOCATION  JOB  REQUESTER  STATE  RESOURCES  STARTED  ENDED  DURATION  PRICE\n"},
		{[]string{"node", "allocations", "-o", "json"}, 0, `"allocations": []`},
		{[]string{"node", "allocations", "--state", "done"}, 1,
			`dms: api: bad request: node: bad query: state "done": want one of locked, running, completed, failed, cancelled` + "\n"},
		{[]string{"node", "allocations", "--after", "yesterday"}, 1, `cursor "yesterday": want the next value of an earlier page`},
		{[]string{"node", "allocations", "--limit", "0"}, 1, "dms: --limit 0: want 1 to 1000\n"},
		{[]string{"node", "bids", "--limit", "1001"}, 1, "dms: --limit 1001: want 1 to 1000\n"},
		{[]string{"node", "bids", "--outcome", "won"}, 1, `outcome "won": want bid or declined`},
		{[]string{"node", "bids", "-o", "json"}, 0, `"bids": []`},
		{[]string{"node", "locks"}, 0, "no holds or locks\n"},
		{[]string{"node", "locks", "-o", "json"}, 0, `"locks": []`},
	})
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/types"
)

// TestFaultAccountingSurvivesKills bills a job to an account while its
// daemons are killed with kill -9: its first provider mid-run (the job is
// placed again elsewhere), then its requester while the second runs it
// (restarted, it takes the job back). The job completes once, and the
// books agree to the micro-credit: one countersigned receipt, the
// account charged its amount, the provider that ran it credited the same,
// the killed one nothing.
func TestFaultAccountingSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons in network namespaces; skipped with -short")
	}
	lab := newNetlab(t, 3)
	nodes := startLab(t, lab, buildBinary(t), map[int]bool{0: true}, nil)
	req := nodes[0]
	cliOK(t, req.bin, "account", "create", "acme", "--home", req.home)
	cliOK(t, req.bin, "account", "credit", "acme", "100", "--home", req.home)

	module, err := filepath.Abs(filepath.Join("..", "..", "examples", "sleep", "sleep.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("name: billed\nmodule: %s\nargs: [\"4\"]\nresources: {cpu: 1, memory: 64MiB}\ntimeout: 60s\naccount: acme\n", module)
	path := filepath.Join(t.TempDir(), "billed.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	var sub struct{ ID string }
	if err := json.Unmarshal([]byte(cliOK(t, req.bin, "job", "run", path, "--detach", "--home", req.home, "-o", "json")), &sub); err != nil {
		t.Fatal(err)
	}
	var first api.Job
	eventually(t, 30*time.Second, "the job to run", func() bool { first = req.status(t, sub.ID); return first.State == "running" })
	lost := nodeByPeer(t, nodes, first.Node)
	nodes[lost].kill9(t)
	var second api.Job
	eventually(t, 30*time.Second, "the job to run on the other provider", func() bool {
		second = req.status(t, sub.ID)
		return second.State == "running" && second.Node != first.Node
	})
	req.kill9(t)
	req.restart(t)
	done := req.waitEnd(t, sub.ID)
	if done.State != "completed" {
		t.Fatalf("after the kills: %+v", done)
	}
	ran := nodes[nodeByPeer(t, nodes, done.Node)]

	var receipts []api.Receipt
	eventually(t, 30*time.Second, "the receipt countersigned", func() bool {
		out := cliOK(t, req.bin, "job", "receipts", sub.ID, "--home", req.home, "-o", "json")
		return json.Unmarshal([]byte(out), &receipts) == nil && len(receipts) > 0
	})
	time.Sleep(2 * time.Second) // a duplicate would come now, as the provider's retry
	out := cliOK(t, req.bin, "job", "receipts", sub.ID, "--home", req.home, "-o", "json")
	if err := json.Unmarshal([]byte(out), &receipts); err != nil || len(receipts) != 1 {
		t.Fatalf("receipts %s, %v: want one", out, err)
	}
	r := receipts[0]
	if r.Provider != done.Node || r.Amount <= 0 {
		t.Fatalf("receipt %+v: want one of %s's, of some credits", r.Receipt, done.Node)
	}
	var acme gateway.Account
	if err := json.Unmarshal([]byte(cliOK(t, req.bin, "account", "show", "acme", "--home", req.home, "-o", "json")), &acme); err != nil {
		t.Fatal(err)
	}
	if want, _ := (100 * types.Credit).Sub(r.Amount); acme.Credits.Balance != want {
		t.Fatalf("acme's balance %s, want 100 less the receipt's %s", acme.Credits.Balance, r.Amount)
	}
	earned := func(n *labNode) api.Earnings {
		var e api.Earnings
		if err := json.Unmarshal([]byte(cliOK(t, n.bin, "earnings", "--home", n.home, "-o", "json")), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	eventually(t, 10*time.Second, "the provider's earning", func() bool { return earned(ran).Total == r.Amount })
	if e := earned(ran); e.Receipts != 1 {
		t.Fatalf("the provider's earnings: %+v, want one receipt", e)
	}
	nodes[lost].restart(t)
	time.Sleep(2 * time.Second) // what it would send, it sends at start
	if e := earned(nodes[lost]); e.Total != 0 || e.Receipts != 0 {
		t.Fatalf("the provider killed mid-run earned %+v: its run had no end to bill", e)
	}
	if out := cliOK(t, req.bin, "job", "receipts", sub.ID, "--home", req.home, "-o", "json"); json.Unmarshal([]byte(out), &receipts) != nil || len(receipts) != 1 {
		t.Fatalf("after the killed provider's restart: receipts %s", out)
	}
}

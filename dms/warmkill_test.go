package dms_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/types"
)

// Sizes of TestWarmProviderKilled.
const (
	killCallers  = 16                    // calls in flight at once
	killCallTime = 20 * time.Millisecond // each call sleeps this long on its provider
	killTimeout  = 5 * time.Second       // the function's timeout
	killBefore   = 1500 * time.Millisecond
	killAfter    = 3 * time.Second
)

// TestWarmProviderKilled: under a load of calls, the provider that holds
// the function's warm instances is killed with SIGKILL. Every call still
// succeeds (those in flight on the dead provider go to other instances,
// started on the other provider), none waits past the function's timeout
// plus the queue's wait, and the survivor's ledger never holds more than
// it registered.
func TestWarmProviderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons")
	}
	bin := buildDMS(t)
	root := t.TempDir()
	p1 := startDaemonProc(t, bin, filepath.Join(root, "provider1"), "provider1")
	p2 := startDaemonProc(t, bin, filepath.Join(root, "provider2"), "provider2", "--bootstrap", p1.addrs[0])
	gw := startDaemonProc(t, bin, filepath.Join(root, "gateway"), "gateway", "--bootstrap", p1.addrs[0], "--compute=false", "--gateway", "127.0.0.1:0")
	for _, d := range []*daemonProc{p1, p2, gw} {
		eventually(t, 30*time.Second, d.name+" to see the other daemons", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			peers, err := d.client.Peers(ctx)
			return err == nil && len(peers) >= 2
		})
	}
	fn := deploySlow(t, gw)

	// Both instances may be on one provider or one on each: the one that
	// holds the first is killed, with calls in flight.
	var victim *daemonProc
	eventually(t, 30*time.Second, "two warm instances", func() bool {
		list, err := fn.Instances(context.Background(), "slow")
		if err != nil || len(list) < 2 {
			return false
		}
		for _, d := range []*daemonProc{p1, p2} {
			if d.peerID == list[0].Node {
				victim = d
			}
		}
		return victim != nil
	})
	survivor := map[*daemonProc]*daemonProc{p1: p2, p2: p1}[victim]

	var calls, failed atomic.Int64
	var slowest atomic.Int64
	var mu sync.Mutex
	var errs []string
	ctx, cancel := context.WithTimeout(context.Background(), killBefore+killAfter)
	defer cancel()
	var wg sync.WaitGroup
	for i := range killCallers {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				body := fmt.Appendf(nil, "caller %d call %d", i, n)
				began := time.Now()
				// Each call has its own deadline, not the run's: a call cut by
				// the end of the run would count as a failure.
				cctx, ccancel := context.WithTimeout(context.Background(), 2*killTimeout)
				resp, err := fn.Invoke(cctx, "slow", gateway.Call{Method: http.MethodPost, Body: bytes.NewReader(body)})
				ccancel()
				took := time.Since(began)
				calls.Add(1)
				for old := slowest.Load(); int64(took) > old && !slowest.CompareAndSwap(old, int64(took)); old = slowest.Load() {
				}
				if err != nil || resp.Status != http.StatusOK || string(resp.Body) != "ok" {
					failed.Add(1)
					mu.Lock()
					errs = append(errs, fmt.Sprintf("after %s: %d %q %v", took.Round(time.Millisecond), resp.Status, resp.Body, err))
					mu.Unlock()
				}
			}
		})
	}
	ledger := watchLedger(ctx, survivor)
	time.Sleep(killBefore)
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	wg.Wait()
	t.Logf("%d calls, %d failed, the slowest took %s; %s killed %s into the load", calls.Load(), failed.Load(),
		time.Duration(slowest.Load()).Round(time.Millisecond), victim.name, killBefore)
	if failed.Load() > 0 {
		t.Errorf("%d of %d calls failed: %v", failed.Load(), calls.Load(), errs[:min(len(errs), 5)])
	}
	if limit := killTimeout + 5*time.Second; time.Duration(slowest.Load()) > limit {
		t.Errorf("a call took %s, over the function's timeout and the queue's wait (%s)", time.Duration(slowest.Load()), limit)
	}
	if over := ledger(); over != "" {
		t.Errorf("the survivor's ledger: %s", over)
	}
	// New calls went elsewhere at once: the function serves from the
	// survivor only.
	list, err := fn.Instances(context.Background(), "slow")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.Node == victim.peerID {
			t.Errorf("an instance on the killed provider is still listed %s after the kill: %+v", time.Since(killedAt).Round(time.Millisecond), in)
		}
	}
}

// deploySlow makes an account on the gateway daemon and deploys a tiny
// module that sleeps killCallTime, then answers "ok", with two instances
// kept warm; it returns a client of the gateway's HTTP side as that
// account.
func deploySlow(t *testing.T, gw *daemonProc) *gateway.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := api.ReadEndpoint(gw.home)
	if err != nil {
		t.Fatal(err)
	}
	admin := gateway.NewClient("http://"+e.Addr, gateway.Auth{Token: e.Token}, nil)
	_, key, err := admin.CreateAccount(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	info, err := gw.client.Node(ctx)
	if err != nil || info.Gateway == "" {
		t.Fatalf("the gateway's node info %+v: %v", info, err)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: killCallers}}
	fn := gateway.NewClient(info.Gateway, gateway.Auth{Key: key.Secret}, hc)
	module, err := fn.PutModule(ctx, bytes.NewReader(tinywasm.Module(killCallTime, "Content-Type: text/plain\n\nok")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = fn.Deploy(ctx, gateway.Deploy{
		Name: "slow", Module: module, Resources: types.Resources{CPU: 100, Memory: 16 << 20},
		Scaling: &gateway.Scaling{MinInstances: 2, MaxInstances: 6, Concurrency: 8},
	})
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

// watchLedger samples the node's ledger until ctx ends; the returned
// function says how it was ever over its registered capability, or that
// it could not be read ("" if it was read and never over).
func watchLedger(ctx context.Context, d *daemonProc) func() string {
	var over string
	read := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := d.client.Node(c)
			cancel()
			if err == nil {
				read++
			}
			if err == nil && over == "" && !info.Used.Fits(info.Registered) {
				over = fmt.Sprintf("registered %s, used %s", info.Registered, info.Used)
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
	return func() string {
		<-done
		if read == 0 {
			return "never read"
		}
		return over
	}
}

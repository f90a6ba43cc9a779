package dms

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// trapModule is a Wasm command whose _start is `unreachable`: it traps.
var trapModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
	0x03, 0x02, 0x01, 0x00, // function section: one of type 0
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00, // export "_start"
	0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b, // code: unreachable, end
}

// TestFunctionCallsOverTheNetwork drives the gateway's Go API on a real
// two-node network: node 0 is the gateway and computes nothing, node 1 is
// the provider, so every call is auctioned, placed and run across
// libp2p. A call answers what the function printed; a function no node
// can run is 503 with the summed declines, one past its timeout 504, one
// whose module does not compile or that traps 502, each with the task
// that says so.
func TestFunctionCallsOverTheNetwork(t *testing.T) {
	nodes := testNet(t, 2, func(i int) bool { return i == 1 })
	gw, provider := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, _, err := gw.Gateway().CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	svc, err := gw.Gateway().As(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	deploy := func(name string, module []byte, tune func(*gateway.Deploy)) {
		t.Helper()
		c, err := svc.PutModule(ctx, bytes.NewReader(module))
		if err != nil {
			t.Fatal(err)
		}
		d := gateway.Deploy{Name: name, Module: c, Resources: types.Resources{CPU: 100, Memory: 16 << 20}}
		if tune != nil {
			tune(&d)
		}
		if _, err := svc.Deploy(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	deploy("ok", tinywasm.Module(0, "Status: 201 Created\n\nok"), nil)
	deploy("huge", tinywasm.Module(0, "x"), func(d *gateway.Deploy) { d.Resources.Memory = 900 << 40 })
	deploy("slow", tinywasm.Module(time.Minute, "x"), func(d *gateway.Deploy) { d.Timeout = jobs.Duration(300 * time.Millisecond) })
	deploy("broken", []byte("\x00asm but not really"), nil)
	deploy("trap", trapModule, nil)

	okRev, err := svc.Revisions(ctx, "ok")
	if err != nil {
		t.Fatal(err)
	}
	refs, err := gw.gc.references()
	if err != nil || !refs[okRev[0].Module] {
		t.Fatalf("the collector's references lack the revision's module %s: %v", okRev[0].Module, err)
	}
	resp, err := svc.Invoke(ctx, "ok", gateway.Call{Method: http.MethodPost, Body: strings.NewReader("hi")})
	if err != nil || resp.Status != http.StatusCreated || string(resp.Body) != "ok" || resp.Task == "" {
		t.Fatalf("ok: %+v, %v", resp, err)
	}
	task, err := svc.GetTask(ctx, resp.Task)
	if err != nil || task.State != gateway.TaskCompleted || task.Node != provider.ID().PeerID || task.Status != http.StatusCreated {
		t.Fatalf("ok's task: %+v, %v", task, err)
	}
	for _, tc := range []struct {
		name   string
		want   error
		reason string
	}{
		{"huge", api.ErrUnavailable, "memory: need 900 TiB"},
		{"slow", api.ErrGatewayTimeout, "timeout"},
		{"broken", api.ErrBadGateway, "module"},
		{"trap", api.ErrBadGateway, "trapped"},
	} {
		_, err := svc.Invoke(ctx, tc.name, gateway.Call{})
		var ce *gateway.CallError
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.reason) || !errors.As(err, &ce) || ce.Task == "" {
			t.Errorf("%s: %v, want %v saying %q, with its task", tc.name, err, tc.want, tc.reason)
			continue
		}
		if task, err := svc.GetTask(ctx, ce.Task); err != nil || task.State != gateway.TaskFailed || task.Reason == "" {
			t.Errorf("%s's task: %+v, %v", tc.name, task, err)
		}
	}
	if _, err := svc.Invoke(ctx, "missing", gateway.Call{}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("a missing function: %v", err)
	}
	big := strings.NewReader(strings.Repeat("x", int(gateway.DefaultMaxBody)+1))
	if _, err := svc.Invoke(ctx, "ok", gateway.Call{Method: http.MethodPost, Body: big}); !errors.Is(err, api.ErrTooLarge) {
		t.Errorf("a body over the limit: %v", err)
	}
}

// TestGatewayRestartFinishesAsyncCalls: a gateway that stops while an
// async call runs on a warm instance takes the call up again when it
// starts from its home: it runs the call again from its kept input (calls
// are at-least-once), and the task completes with the function's answer,
// the call counted once.
func TestGatewayRestartFinishesAsyncCalls(t *testing.T) {
	nodes := testNet(t, 2, func(i int) bool { return i == 1 })
	gw, provider := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := gw.Gateway().CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	svc, err := gw.Gateway().As(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	module, err := svc.PutModule(ctx, bytes.NewReader(tinywasm.Module(2*time.Second, "Status: 200 OK\n\nlater")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Deploy(ctx, gateway.Deploy{Name: "slow", Module: module, Resources: types.Resources{CPU: 100, Memory: 16 << 20}}); err != nil {
		t.Fatal(err)
	}
	task, err := svc.InvokeAsync(ctx, "slow", gateway.Call{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the call to run on an instance", func() bool {
		list, err := svc.Instances(ctx, "slow")
		return err == nil && len(list) == 1 && list[0].InFlight == 1
	})
	gw.Close()

	back := reopen(t, gw, WithCompute(false), WithBootstrap(provider.host.Addrs()...))
	svc, err = back.Gateway().As(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the task to complete", func() bool {
		got, err := svc.GetTask(ctx, task.ID)
		return err == nil && got.State.Terminal()
	})
	res, err := svc.TaskResult(ctx, task.ID)
	if err != nil || res.Status != 200 || string(res.Body) != "later" {
		t.Fatalf("the resumed call's answer: %+v, %v", res, err)
	}
	if fn, err := svc.GetFunction(ctx, "slow"); err != nil || fn.Calls != 1 {
		t.Fatalf("the function after the restart: %+v, %v", fn, err)
	}
}

// TestWarmInstancesMakeRoom: functions that each need the provider's whole
// capability are called one after another. Each call's instance takes the
// room the previous function's idle instance holds: the provider releases
// it when the new instance's bid request finds the node short of it.
func TestWarmInstancesMakeRoom(t *testing.T) {
	nodes := testNet(t, 2, func(i int) bool { return i == 1 })
	gw, provider := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := provider.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := gw.Gateway().CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	svc, err := gw.Gateway().As(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	module, err := svc.PutModule(ctx, bytes.NewReader(tinywasm.Module(0, "Status: 200 OK\n\nok")))
	if err != nil {
		t.Fatal(err)
	}
	whole := types.Resources{CPU: info.Registered.CPU, Memory: 16 << 20}
	for _, name := range []string{"a", "b", "c", "a"} {
		if _, err := svc.GetFunction(ctx, name); err != nil {
			if _, err := svc.Deploy(ctx, gateway.Deploy{Name: name, Module: module, Resources: whole}); err != nil {
				t.Fatal(err)
			}
		}
		res, err := svc.Invoke(ctx, name, gateway.Call{})
		if err != nil || string(res.Body) != "ok" {
			t.Fatalf("calling %s while the others' instances idle: %+v, %v", name, res, err)
		}
	}
}

// TestReceiptsOfWarmInstances: a provider's signed receipt of an
// instance reaches its requester when the instance ends, which
// countersigns it and charges the function's account in the gateway's
// ledger once, as the provider posts its earning with the
// countersignature; the same receipt again gets the same answer; a
// receipt that names another requester, comes from another node, runs
// backwards or into the future, counts more failures than calls, names no
// job of the requester's, an impossible usage, another price, account or
// resources, an amount that is not the cost, a span already billed, or
// other figures under a counted ID, is refused, counted, and posts
// nothing. The final receipt carries what the instance used.
func TestReceiptsOfWarmInstances(t *testing.T) {
	gw, provider := pricedPair(t, 1000*types.Credit)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := gw.Gateway().CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	_, instance := callWarm(t, ctx, gw, "acme")
	job, err := gw.GetJob(ctx, instance)
	if err != nil {
		t.Fatal(err)
	}

	// Released, the instance sends its final receipt, signed, over the
	// network.
	if err := gw.CancelJob(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	var kept []Receipt
	waitFor(t, 20*time.Second, "the final receipt", func() bool {
		kept, err = gw.Receipts(ctx, job.ID)
		return err == nil && len(kept) == 1
	})
	final := kept[0]
	view, err := gw.receiptView(final.JobID)
	if err != nil {
		t.Fatal(err)
	}
	price := view.Attempts[len(view.Attempts)-1].Price
	amount, _ := types.Cost(price, 100, final.To.Sub(final.From))
	if !final.Final || final.Seq != 1 || final.ID != string(final.AllocationID)+"/1" || final.Calls != 3 || final.Account != "acme" ||
		final.Provider != provider.host.ID() || len(final.Envelope) == 0 || price != 1000*types.Credit || final.Price != price || final.Amount != amount || amount == 0 {
		t.Fatalf("the final receipt: %+v (price %s, amount %s)", final, price, amount)
	}
	if u := final.Usage; u == nil || u.Calls != 3 || u.CPU <= 0 || u.Wall <= 0 || u.MemoryPeak != 64<<10 ||
		u.MemoryLimit != 16<<20 || u.OutputBytes != 3*int64(len("Status: 200 OK\n\nok")) || u.Check() != nil {
		t.Fatalf("the final receipt's usage: %+v", u)
	}
	env, err := types.UnmarshalEnvelope(final.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Verify(time.Now().Add(-time.Minute)); err != nil {
		t.Fatalf("the kept envelope does not verify: %v", err)
	}
	var earned Earned
	waitFor(t, 10*time.Second, "the provider to keep the countersignature", func() bool {
		ok, _ := provider.db.Lookup(earnedPrefix+final.ID, &earned)
		return ok
	})
	if earned.Ack.Digest != final.Digest || earned.Ack.Amount != amount || len(earned.AckEnvelope) == 0 {
		t.Fatalf("the countersignature kept: %+v, want digest %s", earned.Ack, final.Digest)
	}
	ack, err := gw.keepReceipt(ctx, provider.host.ID(), env, &final.Receipt)
	if err != nil || ack.Digest != final.Digest || ack.ReceiptID != final.ID || ack.Amount != amount {
		t.Fatalf("the same receipt again: %+v, %v", ack, err)
	}

	seal := func(r *types.Receipt) *types.Envelope {
		e, err := types.Seal(provider.key, r, time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	recost := func(r *types.Receipt) { r.Amount, _ = types.Cost(r.Price, r.Resources.CPU, r.To.Sub(r.From)) }
	cases := map[string]func(r *types.Receipt) string{
		"another requester": func(r *types.Receipt) string { r.Requester = provider.host.ID(); return provider.host.ID() },
		"another node":      func(r *types.Receipt) string { return gw.host.ID() },
		"backwards":         func(r *types.Receipt) string { r.To = r.From.Add(-time.Second); return provider.host.ID() },
		"from the future":   func(r *types.Receipt) string { r.To = time.Now().Add(time.Hour); recost(r); return provider.host.ID() },
		"failures":          func(r *types.Receipt) string { r.Failed = 4; return provider.host.ID() },
		"sequence 0":        func(r *types.Receipt) string { r.Seq, r.ID = 0, string(r.AllocationID)+"/0"; return provider.host.ID() },
		"an ID not its own": func(r *types.Receipt) string { r.ID = "elsewhere/1"; return provider.host.ID() },
		"an unknown job":    func(r *types.Receipt) string { r.JobID = "nope"; return provider.host.ID() },
		"impossible usage": func(r *types.Receipt) string {
			r.Usage = &types.Usage{Wall: time.Second, MemoryLimit: 1 << 20, LimitMiBms: 1 << 40}
			return provider.host.ID()
		},
		"altered amount":  func(r *types.Receipt) string { r.Amount++; return provider.host.ID() },
		"another price":   func(r *types.Receipt) string { r.Price *= 2; recost(r); return provider.host.ID() },
		"another account": func(r *types.Receipt) string { r.Account = "other"; return provider.host.ID() },
		"more CPU":        func(r *types.Receipt) string { r.Resources.CPU *= 2; recost(r); return provider.host.ID() },
		"a span billed twice": func(r *types.Receipt) string {
			r.Seq, r.ID = 2, string(r.AllocationID)+"/2"
			return provider.host.ID()
		},
		"other figures under its ID": func(r *types.Receipt) string { r.Calls = 2; return provider.host.ID() },
	}
	for name, bad := range cases {
		r := final.Receipt
		from := bad(&r)
		if _, err := gw.keepReceipt(ctx, from, seal(&r), &r); !errors.Is(err, ErrBadReceipt) {
			t.Errorf("%s: %v, want ErrBadReceipt", name, err)
		}
	}
	if n := gw.receiptsRefused.Load(); n != uint64(len(cases)) {
		t.Errorf("%d receipts refused, want %d", n, len(cases))
	}
	// The function's account is the gateway's: its ledger holds the
	// charge, the node's books none; the provider's books the earning.
	if n, m := countEntries(t, gw), countEntries(t, provider); n != 0 || m != 1 {
		t.Errorf("%d entries in the gateway node's books, %d in the provider's; want 0 and 1", n, m)
	}
	acct, err := gw.Gateway().GetAccount(ctx, "acme")
	if err != nil || acct.Credits.Balance != -amount {
		t.Fatalf("the account charged: %+v, %v; want a balance of %s", acct.Credits, err, -amount)
	}
}

// callWarm deploys, as account acct, a function f of one tenth of a core
// that answers "ok", and calls it three times: it returns the account's
// view of the gateway and the job of the warm instance that served them.
func callWarm(t *testing.T, ctx context.Context, gw *DMS, acct string) (gateway.Service, string) {
	t.Helper()
	svc, err := gw.Gateway().As(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	module, err := svc.PutModule(ctx, bytes.NewReader(tinywasm.Module(0, "Status: 200 OK\n\nok")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Deploy(ctx, gateway.Deploy{Name: "f", Module: module, Resources: types.Resources{CPU: 100, Memory: 16 << 20}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := svc.Invoke(ctx, "f", gateway.Call{}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := svc.Instances(ctx, "f")
	if err != nil || len(list) != 1 {
		t.Fatalf("instances: %+v, %v", list, err)
	}
	return svc, list[0].Job
}

// TestCallsRunUntilPaymentRequired: on a gateway that requires credits,
// an account with one credit calls its function; the warm instance's
// receipt bills more than that; the account's next call is refused with
// 402 before anything runs, and its invoice shows the function's line of
// what the receipt charged.
func TestCallsRunUntilPaymentRequired(t *testing.T) {
	gwHome, _ := newHome(t)
	rewriteConfig(t, gwHome, func(c *Config) { c.Gateway.RequireCredits = true })
	provHome, _ := newHome(t)
	rewriteConfig(t, provHome, func(c *Config) { c.Offer.Price = 100000 * types.Credit }) // 0.1 core: about 2.8 credits a second
	gw := startNode(t, gwHome, WithCompute(false), WithLease(10*time.Second))
	startNode(t, provHome, WithLease(10*time.Second), WithBootstrap(gw.host.Addrs()...))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return gw.host.TopicPeers() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := gw.Gateway().CreateAccount(ctx, "thrifty"); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Gateway().Credit(ctx, "thrifty", types.Credit, ""); err != nil {
		t.Fatal(err)
	}
	svc, instance := callWarm(t, ctx, gw, "thrifty")
	time.Sleep(time.Second) // the instance's reserved time passes one credit's worth
	if err := gw.CancelJob(ctx, instance); err != nil {
		t.Fatal(err)
	}
	var kept []Receipt
	var err error
	waitFor(t, 20*time.Second, "the instance's final receipt", func() bool {
		kept, err = gw.Receipts(ctx, instance)
		return err == nil && len(kept) == 1
	})
	charged := kept[0].Amount
	if charged <= types.Credit {
		t.Fatalf("the receipt charged %s: want more than the one credit", charged)
	}
	waitFor(t, 10*time.Second, "the charge on the account", func() bool {
		a, err := gw.Gateway().GetAccount(ctx, "thrifty")
		return err == nil && a.Credits.Balance == types.Credit-charged
	})
	if _, err := svc.Invoke(ctx, "f", gateway.Call{}); !errors.Is(err, api.ErrPaymentRequired) {
		t.Fatalf("a call once the credit is spent: %v", err)
	}
	inv, err := gw.Gateway().Invoice(ctx, "thrifty", kept[0].To.UTC().Format("2006-01"))
	if err != nil || inv.Total != charged || len(inv.Lines) != 1 || inv.Lines[0].Name != "fn:thrifty/f@1" {
		t.Fatalf("invoice %+v, %v; want one line of fn:thrifty/f@1 for %s", inv, err, charged)
	}
}

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
// instance's calls reaches its requester when the instance ends and is
// kept once; a receipt that names another requester, comes from another
// node, runs backwards or into the future, counts more failures than
// calls, or names no job of the requester's, is refused and counted.
func TestReceiptsOfWarmInstances(t *testing.T) {
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
	job, err := gw.GetJob(ctx, list[0].Job)
	if err != nil {
		t.Fatal(err)
	}
	alloc := types.AllocationID(job.Attempts[len(job.Attempts)-1].AllocationID)

	now := time.Now()
	good := types.Receipt{JobID: types.JobID(job.ID), AllocationID: alloc, Requester: gw.host.ID(), Seq: 99, Calls: 2, Failed: 1, From: now.Add(-time.Second), To: now}
	for name, bad := range map[string]func(r *types.Receipt) string{
		"another requester": func(r *types.Receipt) string { r.Requester = provider.host.ID(); return provider.host.ID() },
		"another node":      func(r *types.Receipt) string { return gw.host.ID() },
		"backwards":         func(r *types.Receipt) string { r.To = r.From.Add(-time.Second); return provider.host.ID() },
		"from the future":   func(r *types.Receipt) string { r.To = now.Add(time.Hour); return provider.host.ID() },
		"failures":          func(r *types.Receipt) string { r.Failed = 3; return provider.host.ID() },
		"sequence 0":        func(r *types.Receipt) string { r.Seq = 0; return provider.host.ID() },
		"an unknown job":    func(r *types.Receipt) string { r.JobID = "nope"; return provider.host.ID() },
	} {
		r := good
		from := bad(&r)
		if err := gw.keepReceipt(from, nil, &r); !errors.Is(err, ErrBadReceipt) {
			t.Errorf("%s: %v, want ErrBadReceipt", name, err)
		}
	}
	if n := gw.receiptsRefused.Load(); n != 7 {
		t.Errorf("%d receipts refused, want 7", n)
	}
	for range 2 { // the same receipt again is kept once
		if err := gw.keepReceipt(provider.host.ID(), nil, &good); err != nil {
			t.Fatal(err)
		}
	}

	// Released, the instance sends its final receipt, signed, over the
	// network.
	if err := gw.CancelJob(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	var kept []Receipt
	waitFor(t, 20*time.Second, "the final receipt", func() bool {
		kept, err = gw.Receipts(ctx, job.ID)
		return err == nil && len(kept) == 2
	})
	final := kept[0] // seq 1 sorts before 99
	if !final.Final || final.Seq != 1 || final.Calls != 3 || final.Provider != provider.host.ID() || len(final.Envelope) == 0 {
		t.Fatalf("the final receipt: %+v", final)
	}
	env, err := types.UnmarshalEnvelope(final.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Verify(time.Now().Add(-time.Minute)); err != nil {
		t.Fatalf("the kept envelope does not verify: %v", err)
	}
	if kept[1].Seq != 99 || kept[1].Calls != 2 {
		t.Fatalf("the receipt kept twice: %+v", kept[1])
	}
}

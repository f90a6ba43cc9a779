package dms_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/types"
)

// A gateway node serves a function over HTTP; the call runs on the other
// node, placed by auction. The account's key works over HTTP with the
// gateway's Client, and the Go API acts as the account directly.
func ExampleDMS_Gateway() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root, err := os.MkdirTemp("", "dms-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(root)
	start := func(name string, opts ...dms.Option) *dms.DMS {
		home := filepath.Join(root, name)
		if _, err := dms.Init(ctx, home, dms.InitOptions{BenchDuration: 10 * time.Millisecond}); err != nil {
			panic(err)
		}
		d, err := dms.New(append(opts, dms.WithHome(home), dms.WithAPI(""))...)
		if err != nil {
			panic(err)
		}
		if err := d.Start(ctx); err != nil {
			panic(err)
		}
		return d
	}
	provider := start("provider")
	defer provider.Close()
	info, err := provider.Node(ctx)
	if err != nil {
		panic(err)
	}
	gw := start("gateway", dms.WithCompute(false), dms.WithBootstrap(info.Addrs...), dms.WithGatewayListen("127.0.0.1:0", "", ""))
	defer gw.Close()

	_, key, err := gw.Gateway().CreateAccount(ctx, "acme")
	if err != nil {
		panic(err)
	}
	// Over HTTP, with the account's API key.
	c := gateway.NewClient(gw.GatewayURL(), gateway.Auth{Key: key.Secret}, nil)
	module, err := c.PutModule(ctx, bytes.NewReader(tinywasm.Module(0, "Status: 202 Accepted\n\nhello")))
	if err != nil {
		panic(err)
	}
	rev, err := c.Deploy(ctx, gateway.Deploy{Name: "hello", Module: module, Resources: types.Resources{CPU: 100, Memory: 16 << 20}})
	if err != nil {
		panic(err)
	}
	for { // until the gateway's node knows the provider
		resp, err := c.Invoke(ctx, "hello", gateway.Call{Method: http.MethodPost, Body: strings.NewReader("hi")})
		if err == nil {
			fmt.Println(rev.Number, resp.Status, string(resp.Body))
			break
		}
		if ctx.Err() != nil {
			panic(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// In process, as the account.
	svc, err := gw.Gateway().As(ctx, "acme")
	if err != nil {
		panic(err)
	}
	tasks, err := svc.ListTasks(ctx, gateway.TaskQuery{Function: "hello", State: gateway.TaskCompleted})
	if err != nil {
		panic(err)
	}
	fmt.Println(tasks[0].State, tasks[0].Node == info.PeerID)
	// Output:
	// 1 202 hello
	// completed true
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/gateway"
)

// gwNet is the real network the commands of functions over HTTP run
// against: a provider that computes, and a gateway that computes nothing,
// bootstraps through the provider and has its local API on (so its home's
// api.json serves --account). It is made once per test binary, the first
// time a test asks for it, and closed by TestMain; each test acts as its
// own account, so the tests do not see each other's functions and tasks.
type gwNet struct {
	gw       *dms.DMS
	url      string // the gateway's URL
	home     string // the gateway's home
	echo     string // examples/echo built for wasip1
	greet    string // examples/greet built for wasip1
	root     string // the temporary directory of it all
	provider *dms.DMS
}

var shared struct {
	once sync.Once
	net  *gwNet
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.net != nil {
		shared.net.close()
	}
	os.Exit(code)
}

// sharedNet is the gwNet, started on first use. Its environment has no
// API key or gateway URL of its own.
func sharedNet(t *testing.T) *gwNet {
	t.Helper()
	if testing.Short() {
		t.Skip("builds two Wasm examples and runs a two-node network; skipped with -short")
	}
	t.Setenv(envAPIKey, "")
	t.Setenv(envGateway, "")
	shared.once.Do(func() { shared.net, shared.err = startGwNet() })
	if shared.err != nil {
		t.Fatalf("starting the gateway network: %v", shared.err)
	}
	return shared.net
}

func startGwNet() (_ *gwNet, err error) {
	root, err := os.MkdirTemp("", "dms-gwnet-")
	if err != nil {
		return nil, err
	}
	n := &gwNet{root: root}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	var wg sync.WaitGroup
	var echoErr, greetErr error
	wg.Add(2)
	go func() { defer wg.Done(); n.echo, echoErr = buildWasm(root, "echo") }()
	go func() { defer wg.Done(); n.greet, greetErr = buildWasm(root, "greet") }()
	defer wg.Wait() // on an early return, before close removes root

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if n.provider, err = startNode(ctx, filepath.Join(root, "provider")); err != nil {
		return nil, err
	}
	info, err := n.provider.Node(ctx)
	if err != nil {
		return nil, err
	}
	n.home = filepath.Join(root, "gateway")
	n.gw, err = startNode(ctx, n.home, dms.WithAPI("127.0.0.1:0"), dms.WithCompute(false),
		dms.WithBootstrap(info.Addrs...), dms.WithGatewayListen("127.0.0.1:0", "", ""))
	if err != nil {
		return nil, err
	}
	n.url = n.gw.GatewayURL()
	wg.Wait()
	if err := errors.Join(echoErr, greetErr); err != nil {
		return nil, err
	}
	return n, n.warmUp()
}

// warmUp calls echo until the gateway's node has found the provider, which
// takes a moment, and has the provider compile it once.
func (n *gwNet) warmUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g := n.gw.Gateway()
	if _, _, err := g.CreateAccount(ctx, "warmup"); err != nil {
		return err
	}
	svc, err := g.As(ctx, "warmup")
	if err != nil {
		return err
	}
	module, err := os.Open(n.echo)
	if err != nil {
		return err
	}
	defer module.Close()
	cid, err := svc.PutModule(ctx, module)
	if err != nil {
		return err
	}
	if _, err := svc.Deploy(ctx, gateway.Deploy{Name: "echo", Module: cid}); err != nil {
		return err
	}
	for {
		_, err := svc.Invoke(ctx, "echo", gateway.Call{Method: http.MethodGet})
		if err == nil || ctx.Err() != nil {
			return err
		}
		select { // poll: the node tells no event for a provider found
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startNode makes a home and starts a node on it, its local API off
// unless opts turn it on.
func startNode(ctx context.Context, home string, opts ...dms.Option) (*dms.DMS, error) {
	if _, err := dms.Init(ctx, home, dms.InitOptions{BenchDuration: 10 * time.Millisecond}); err != nil {
		return nil, err
	}
	d, err := dms.New(append([]dms.Option{dms.WithHome(home), dms.WithAPI("")}, opts...)...)
	if err != nil {
		return nil, err
	}
	if err := d.Start(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (n *gwNet) close() {
	for _, d := range []*dms.DMS{n.gw, n.provider} {
		if d != nil {
			d.Close()
		}
	}
	os.RemoveAll(n.root)
}

// account makes an account on the gateway and returns its key's secret.
func (n *gwNet) account(t *testing.T, name string) string {
	t.Helper()
	_, key, err := n.gw.Gateway().CreateAccount(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return key.Secret
}

// buildWasm builds examples/NAME for wasip1 into dir and returns its path.
func buildWasm(dir, name string) (string, error) {
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", out, "../../examples/"+name)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building examples/%s: %w\n%s", name, err, b)
	}
	return out, nil
}

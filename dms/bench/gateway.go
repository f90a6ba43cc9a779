package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/types"
)

func init() {
	register(Scenario{
		Name: "gateway",
		What: "function calls through a gateway daemon to warm instances on 2 provider daemons: latency one at a time, then RSS of the gateway after 10,000 calls",
		Run:  gatewayCalls,
	})
}

const (
	// fnOutput is the tiny function's stdout: a CGI header block and a
	// body, within tinywasm's 32 bytes.
	fnOutput = "Content-Type: text/plain\n\nok"
	gwConc   = 16 // calls in flight during the load phase
	// gwRate is the bid-request rate each daemon accepts from each
	// requester (network.bid_request_rate), raised as for the other
	// scenarios: calls go to warm instances, but their starts are auctions.
	gwRate = 2000
)

// gatewayCalls starts a gateway that computes nothing and two providers,
// reads the gateway's resident memory idle, deploys a tiny function, times
// calls one at a time (warm, after the first), then runs many calls gwConc
// at a time and reads the gateway's memory again once it was idle for a
// while.
func gatewayCalls(ctx context.Context, o Options) (_ map[string]any, err error) {
	seq, n, settle, quiet := 200, 10000, settleFull, settleAfter
	if o.Quick {
		seq, n, settle, quiet = 10, 100, 500*time.Millisecond, 500*time.Millisecond
	}
	bin, err := daemonBinary(o.Bin)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.Dir, "dms-bench-gateway-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if o.Dir == "" {
		defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	}
	gw, stop, err := startGatewayNetwork(ctx, bin, dir)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, err
	}
	idle, err := readMem(gw.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	fn, err := deployTiny(ctx, gw)
	if err != nil {
		return nil, err
	}
	for range 5 { // warm up: connections, compiled module
		if err := fn.call(ctx); err != nil {
			return nil, err
		}
	}
	lat, failed, first := fn.sequential(ctx, seq)
	o.Log.Info("calls one at a time", "p50_ms", lat.pct(50), "failed", failed)
	var peak atomic.Int64
	stopSampling := sampleRSS(gw.cmd.Process.Pid, &peak)
	began := time.Now()
	loadFailed, loadFirst := fn.load(ctx, n, gwConc)
	took := time.Since(began)
	stopSampling()
	if err := sleepCtx(ctx, quiet); err != nil {
		return nil, err
	}
	after, err := readMem(gw.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	res := map[string]any{
		"calls_sequential": seq, "p50_ms": lat.pct(50), "p95_ms": lat.pct(95), "p99_ms": lat.pct(99), "failed_sequential": failed,
		"calls_load": n, "calls_per_s": round3(float64(n) / took.Seconds()), "failed_load": loadFailed,
		"idle_rss_mb": idle.rss, "after_rss_mb": after.rss, "peak_rss_mb": round3(float64(peak.Load()) / 1024),
		"idle_anon_mb": idle.anon, "after_anon_mb": after.anon, "after_file_mb": after.file,
	}
	if e := cmp.Or(first, loadFirst); e != nil {
		res["error"] = e.Error()
	}
	return res, nil
}

// startGatewayNetwork runs three daemons: a gateway that offers no compute
// and two providers that join through it. It returns the gateway and a
// function that stops all three.
func startGatewayNetwork(ctx context.Context, bin, dir string) (*daemon, func() error, error) {
	var started []*daemon
	stop := func() error {
		var err error
		for _, dm := range started {
			err = errors.Join(err, dm.stop())
		}
		return err
	}
	start := func(name string, args ...string) (*daemon, error) {
		home := filepath.Join(dir, name)
		if err := initHome(ctx, bin, home); err != nil {
			return nil, err
		}
		if err := raiseBidRate(home); err != nil {
			return nil, err
		}
		dm, err := runDaemon(ctx, bin, home, args...)
		if err == nil {
			started = append(started, dm)
		}
		return dm, err
	}
	gw, err := start("gateway", "--gateway", "127.0.0.1:0", "--compute=false")
	if err != nil {
		return nil, stop, err
	}
	info, err := gw.client.Node(ctx)
	if err != nil || len(info.Addrs) == 0 || info.Gateway == "" {
		return nil, stop, errors.Join(fmt.Errorf("bench: the gateway's node info: %+v", info), err)
	}
	for _, name := range []string{"provider-1", "provider-2"} {
		if _, err := start(name, "--bootstrap", info.Addrs[0]); err != nil {
			return nil, stop, err
		}
	}
	return gw, stop, waitDaemonPeers(ctx, gw, 2)
}

// raiseBidRate sets network.bid_request_rate and burst in a fresh home's
// config file to gwRate.
func raiseBidRate(home string) error {
	path := filepath.Join(home, "config.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	s := strings.Replace(string(data), "bid_request_rate: 0", fmt.Sprintf("bid_request_rate: %d", gwRate), 1)
	s = strings.Replace(s, "bid_request_burst: 0", fmt.Sprintf("bid_request_burst: %d", gwRate), 1)
	if s == string(data) {
		return fmt.Errorf("bench: %s has no bid_request_rate: 0 to raise", path)
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// waitDaemonPeers waits until the daemon sees n peers.
func waitDaemonPeers(ctx context.Context, dm *daemon, n int) error {
	ctx, cancel := context.WithTimeout(ctx, daemonStart)
	defer cancel()
	for {
		peers, err := dm.client.Peers(ctx)
		if err == nil && len(peers) >= n {
			return nil
		}
		if err := sleepCtx(ctx, readyPoll); err != nil {
			return fmt.Errorf("bench: the gateway sees %d of %d providers: %w", len(peers), n, err)
		}
	}
}

// tinyFunction is the deployed tiny function and a client of the gateway
// acting as its account.
type tinyFunction struct {
	client *gateway.Client
	name   string
	key    string // the account's API key
}

// deployTiny makes an account on the gateway (with its local API's admin
// token), and deploys the tiny module as a function with that account's
// key, over the gateway's HTTP side.
func deployTiny(ctx context.Context, gw *daemon) (*tinyFunction, error) {
	e := gw.api
	info, err := gw.client.Node(ctx)
	if err != nil {
		return nil, err
	}
	admin := gateway.NewClient("http://"+e.Addr, gateway.Auth{Token: e.Token}, nil)
	_, key, err := admin.CreateAccount(ctx, "bench")
	if err != nil {
		return nil, fmt.Errorf("bench: creating the account: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: gwConc}}
	c := gateway.NewClient(info.Gateway, gateway.Auth{Key: key.Secret}, hc)
	module, err := c.PutModule(ctx, bytes.NewReader(tinywasm.Module(0, fnOutput)))
	if err != nil {
		return nil, fmt.Errorf("bench: uploading the module: %w", err)
	}
	// Small resources, as the tiny jobs of the other scenarios: many calls
	// run at once on each provider.
	d := gateway.Deploy{Name: "tiny", Module: module, Resources: types.Resources{CPU: 100, Memory: 16 << 20}}
	if _, err := c.Deploy(ctx, d); err != nil {
		return nil, fmt.Errorf("bench: deploying: %w", err)
	}
	return &tinyFunction{client: c, name: "tiny", key: key.Secret}, nil
}

// via is the function called through another gateway of a group: any of
// them answers for every function of every account.
func (f *tinyFunction) via(ctx context.Context, gw *daemon) (*tinyFunction, error) {
	info, err := gw.client.Node(ctx)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: gwConc}}
	return &tinyFunction{client: gateway.NewClient(info.Gateway, gateway.Auth{Key: f.key}, hc), name: f.name, key: f.key}, nil
}

// warm calls the function until a call is served, for at most probeWait:
// its first call places an instance, and a provider may not have been
// found yet.
func (f *tinyFunction) warm(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	for {
		err := f.call(ctx)
		if err == nil {
			return nil
		}
		if serr := sleepCtx(ctx, 100*time.Millisecond); serr != nil {
			return fmt.Errorf("%w (%w)", err, serr)
		}
	}
}

// call invokes the function once and checks its answer.
func (f *tinyFunction) call(ctx context.Context) error {
	resp, err := f.client.Invoke(ctx, f.name, gateway.Call{Method: http.MethodPost, Body: strings.NewReader("x")})
	switch {
	case err != nil:
		return fmt.Errorf("bench: a call: %w", err)
	case resp.Status != http.StatusOK || string(resp.Body) != "ok":
		return fmt.Errorf("bench: a call answered %d %q (task %s)", resp.Status, resp.Body, resp.Task)
	}
	return nil
}

// sequential times n calls one after another.
func (f *tinyFunction) sequential(ctx context.Context, n int) (d dist, failed int, first error) {
	var took []time.Duration
	for range n {
		start := time.Now()
		if err := f.call(ctx); err != nil {
			failed++
			first = cmp.Or(first, err)
			continue
		}
		took = append(took, time.Since(start))
	}
	return newDist(took), failed, first
}

// load runs n calls, conc at a time.
func (f *tinyFunction) load(ctx context.Context, n, conc int) (failed int64, first error) {
	var next, bad atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if err := f.call(ctx); err != nil {
					bad.Add(1)
					once.Do(func() { first = err })
				}
			}
		})
	}
	wg.Wait()
	return bad.Load(), first
}

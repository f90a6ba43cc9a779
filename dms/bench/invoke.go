package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/jobs/wasm"
	"github.com/opendms/dms/types"
)

func init() {
	register(Scenario{
		Name: "invoke-warm",
		What: "HTTP calls of the tiny echo function through an in-process gateway to a warm instance on one of 2 providers, one at a time: p50, p99",
		Run:  invokeWarm,
	})
	register(Scenario{
		Name: "invoke-throughput",
		What: "64 HTTP clients in a closed loop calling the echo function through the gateway, then through a group of 3 gateways: calls/s and p99 of each, against the ceiling of a plain net/http server calling wazero in process",
		Run:  invokeThroughput,
	})
	register(Scenario{
		Name: "invoke-cold",
		What: "the first call of a function with no instance: an auction, a lock and an instance from the provider's compile cache, p50",
		Run:  invokeCold,
	})
	register(Scenario{
		Name: "invoke-step",
		What: "a step from 10 to 2,000 calls/s: instances over time, time until p99 is back under 50 ms, failed calls",
		Run:  invokeStep,
	})
}

// Sizes of the invoke scenarios.
const (
	invokeClients  = 64                    // invoke-throughput's closed loop
	stepLow        = 10                    // calls/s before the step
	stepHigh       = 2000                  // calls/s after it
	stepGoal       = 50 * time.Millisecond // p99 that counts as recovered
	stepWindow     = 100 * time.Millisecond
	stepSample     = 20 * time.Millisecond // how often instances are counted
	maxOutstanding = 8192                  // calls in flight the step's generator allows
)

// fnNet is an in-process network for the invoke scenarios: nodes 0 to
// gateways-1 gateways that compute nothing, serving HTTP on loopback (a
// group when there are several); the two nodes after them providers.
// clients call as the account "bench", one through each gateway; client is
// gateway 0's, through which the scenarios deploy.
type fnNet struct {
	*Network
	gw      *dms.DMS
	svc     gateway.Service   // gateway 0's, as the account
	svcs    []gateway.Service // every gateway's
	client  *gateway.Client
	clients []*gateway.Client
	module  string        // the echo module's CID
	next    atomic.Uint64 // spreads calls over clients
}

func startFunctionNetwork(ctx context.Context, o Options) (*fnNet, error) {
	return startFunctionGroup(ctx, o, 1)
}

// startFunctionGroup starts a fnNet of gateways gateways.
func startFunctionGroup(ctx context.Context, o Options, gateways int) (_ *fnNet, err error) {
	dir := ""
	if o.Dir != "" {
		if dir, err = os.MkdirTemp(o.Dir, "fn-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	network, err := StartNetwork(ctx, NetworkConfig{Nodes: gateways + 2, Dir: dir, Compute: func(i int) bool { return i >= gateways }, Options: func(i int) []dms.Option {
		opts := []dms.Option{dms.WithBidRequestRate(benchBidRate, benchBidRate)}
		if i < gateways {
			opts = append(opts, dms.WithGatewayListen("127.0.0.1:0", "", ""))
		}
		if o.Quick {
			opts = append(opts, dms.WithLease(quickLease))
		}
		return append(opts, groupOptions(i, gateways)...)
	}})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, network.Close())
		}
	}()
	if err := formGroup(ctx, network, gateways); err != nil {
		return nil, err
	}
	f := &fnNet{Network: network, gw: network.Nodes[0]}
	g := f.gw.Gateway()
	if _, _, err := g.CreateAccount(ctx, "bench"); err != nil {
		return nil, fmt.Errorf("bench: creating the account: %w", err)
	}
	key, err := g.AddKey(ctx, "bench")
	if err != nil {
		return nil, fmt.Errorf("bench: a key: %w", err)
	}
	if f.svc, err = g.As(ctx, "bench"); err != nil {
		return nil, err
	}
	for _, d := range network.Nodes[:gateways] {
		svc, err := d.Gateway().As(ctx, "bench")
		if err != nil {
			return nil, err
		}
		f.svcs = append(f.svcs, svc)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * invokeClients, MaxIdleConns: 4 * invokeClients}}
		f.clients = append(f.clients, gateway.NewClient(d.GatewayURL(), gateway.Auth{Key: key.Secret}, hc))
	}
	f.client = f.clients[0]
	if f.module, err = f.client.PutModule(ctx, bytes.NewReader(tinywasm.Echo())); err != nil {
		return nil, fmt.Errorf("bench: uploading the module: %w", err)
	}
	if err := waitBidders(ctx, f.gw, f.module, 2, probeWait); err != nil {
		return nil, err
	}
	return f, nil
}

// deploy deploys the echo module as function name with sc.
func (f *fnNet) deploy(ctx context.Context, name string, sc gateway.Scaling) error {
	d := gateway.Deploy{Name: name, Module: f.module, Resources: types.Resources{CPU: 100, Memory: 16 << 20}, Scaling: &sc}
	if _, err := f.client.Deploy(ctx, d); err != nil {
		return fmt.Errorf("bench: deploying %s: %w", name, err)
	}
	return nil
}

// call invokes function name with body through gateway 0 and checks that
// it echoed it.
func (f *fnNet) call(ctx context.Context, name string, body []byte) (time.Duration, error) {
	return f.callVia(ctx, f.client, name, body)
}

// callAny is call through the next gateway, in turn.
func (f *fnNet) callAny(ctx context.Context, name string, body []byte) (time.Duration, error) {
	return f.callVia(ctx, f.clients[f.next.Add(1)%uint64(len(f.clients))], name, body)
}

func (f *fnNet) callVia(ctx context.Context, c *gateway.Client, name string, body []byte) (time.Duration, error) {
	began := time.Now()
	resp, err := c.Invoke(ctx, name, gateway.Call{Method: http.MethodPost, Body: bytes.NewReader(body)})
	took := time.Since(began)
	switch {
	case err != nil:
		return took, fmt.Errorf("bench: a call of %s: %w", name, err)
	case resp.Status != http.StatusOK || !bytes.Equal(resp.Body, body):
		return took, fmt.Errorf("bench: a call of %s answered %d %q (task %s)", name, resp.Status, resp.Body, resp.Task)
	}
	return took, nil
}

// instances lists function name's warm instances: those of every
// gateway, since in a group the member that leads its queue holds them.
func (f *fnNet) instances(ctx context.Context, name string) ([]gateway.Instance, error) {
	var all []gateway.Instance
	for _, svc := range f.svcs {
		list, err := svc.Instances(ctx, name)
		if err != nil {
			return nil, err
		}
		all = append(all, list...)
	}
	return all, nil
}

// waitInstances waits until function name has n warm instances.
func (f *fnNet) waitInstances(ctx context.Context, name string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	for {
		list, err := f.instances(ctx, name)
		if err == nil && len(list) >= n {
			return nil
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("bench: %s has %d of %d warm instances: %w", name, len(list), n, err)
		}
	}
}

// invokeWarm times calls one at a time on a warm instance.
func invokeWarm(ctx context.Context, o Options) (_ map[string]any, err error) {
	n, warm := 2000, 200
	if o.Quick {
		n, warm = 30, 10
	}
	f, err := startFunctionNetwork(ctx, o)
	if err != nil {
		return nil, err
	}
	defer closeInto(f, &err)
	if err := f.deploy(ctx, "echo", gateway.Scaling{MinInstances: 1}); err != nil {
		return nil, err
	}
	if err := f.waitInstances(ctx, "echo", 1); err != nil {
		return nil, err
	}
	body := []byte("hello")
	for range warm {
		if _, err := f.call(ctx, "echo", body); err != nil {
			return nil, err
		}
	}
	took := make([]time.Duration, 0, n)
	for range n {
		d, err := f.call(ctx, "echo", body)
		if err != nil {
			return nil, err
		}
		took = append(took, d)
	}
	lat := newDist(took)
	o.Log.Info("warm calls", "p50_ms", lat.pct(50), "p99_ms", lat.pct(99))
	return map[string]any{"calls": n, "p50_ms": lat.pct(50), "p90_ms": lat.pct(90), "p99_ms": lat.pct(99), "max_ms": lat.pct(100)}, nil
}

// closedLoop runs clients that each call, wait for the answer and call
// again, for d: the calls/s, the latencies and the failures.
func closedLoop(ctx context.Context, clients int, d time.Duration, call func(ctx context.Context) (time.Duration, error)) (rate float64, lat dist, failed int64, first error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	var bad atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	began := time.Now()
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				took, err := call(ctx)
				switch {
				case err != nil && ctx.Err() != nil: // cut by the end of the run
				case err != nil:
					bad.Add(1)
					once.Do(func() { first = err })
				default:
					mine = append(mine, took)
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(len(all)) / time.Since(began).Seconds(), newDist(all), bad.Load(), first
}

// invokeThroughput measures calls/s of invokeClients clients through one
// gateway, then through a group of groupSize gateways (the calls spread
// over them), and the same against the ceiling.
func invokeThroughput(ctx context.Context, o Options) (_ map[string]any, err error) {
	d, warm := 10*time.Second, 2*time.Second
	if o.Quick {
		d, warm = time.Second, 500*time.Millisecond
	}
	ceiling, err := ceilingRate(ctx, d)
	if err != nil {
		return nil, err
	}
	o.Log.Info("ceiling", "calls_per_s", ceiling)
	one, err := throughputOf(ctx, o, 1, d, warm)
	if err != nil {
		return nil, err
	}
	o.Log.Info("throughput", "gateways", 1, "calls_per_s", one.rate, "p99_ms", one.lat.pct(99), "ratio", one.rate/ceiling)
	group, err := throughputOf(ctx, o, groupSize, d, warm)
	if err != nil {
		return nil, err
	}
	o.Log.Info("throughput", "gateways", groupSize, "calls_per_s", group.rate, "p99_ms", group.lat.pct(99))
	res := map[string]any{
		"clients": invokeClients, "seconds": d.Seconds(), "calls_per_s": round3(one.rate), "p50_ms": one.lat.pct(50), "p99_ms": one.lat.pct(99),
		"failed": one.failed, "instances": one.instances, "ceiling_calls_per_s": round3(ceiling), "ratio": round3(one.rate / ceiling),
		"throughput_1": round3(one.rate), "throughput_3": round3(group.rate), "ratio_3_to_1": round3(group.rate / one.rate),
		"p50_ms_3": group.lat.pct(50), "p99_ms_3": group.lat.pct(99), "failed_3": group.failed, "instances_3": group.instances,
		"warmup_failed_3": group.warmFailed,
	}
	if first := cmp.Or(one.first, group.first); first != nil {
		res["error"] = first.Error()
	}
	return res, nil
}

// loopRun is one closed loop's outcome.
type loopRun struct {
	rate      float64
	lat       dist
	failed    int64
	first     error
	instances int

	warmFailed int64
}

// throughputOf starts a fnNet of gateways gateways, deploys echo with 2
// instances kept warm, and runs invokeClients clients in a closed loop for
// d after warm of warm-up, each call through the next gateway.
func throughputOf(ctx context.Context, o Options, gateways int, d, warm time.Duration) (_ loopRun, err error) {
	f, err := startFunctionGroup(ctx, o, gateways)
	if err != nil {
		return loopRun{}, err
	}
	defer closeInto(f, &err)
	if err := f.deploy(ctx, "echo", gateway.Scaling{MinInstances: 2}); err != nil {
		return loopRun{}, err
	}
	if err := f.waitInstances(ctx, "echo", 2); err != nil {
		return loopRun{}, err
	}
	body := []byte("hello")
	call := func(ctx context.Context) (time.Duration, error) { return f.callAny(ctx, "echo", body) }
	var t loopRun
	// A group's warm-up may fail calls (what the run measures next):
	// they are counted, not fatal.
	if _, _, t.warmFailed, t.first = closedLoop(ctx, invokeClients, warm, call); t.first != nil && gateways == 1 {
		return loopRun{}, fmt.Errorf("bench: warm-up: %w", t.first)
	}
	var first error
	t.rate, t.lat, t.failed, first = closedLoop(ctx, invokeClients, d, call)
	t.first = cmp.Or(first, t.first)
	instances, _ := f.instances(ctx, "echo")
	t.instances = len(instances)
	return t, nil
}

// ceilingRate is the calls/s of invokeClients clients against a plain
// net/http server on loopback that runs each call on a warm wazero
// instance of the echo module in process: what the machine does with no
// gateway, no network between nodes, no records.
func ceilingRate(ctx context.Context, d time.Duration) (float64, error) {
	exec, err := wasm.New(wasm.Config{})
	if err != nil {
		return 0, err
	}
	defer exec.Close(context.Background())
	inst, err := exec.Warm(ctx, jobs.Input{Module: tinywasm.Echo(), Memory: 16 << 20, Timeout: time.Minute})
	if err != nil {
		return 0, err
	}
	defer inst.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		out, err := inst.Call(r.Context(), jobs.CallInput{Env: map[string]string{"REQUEST_METHOD": r.Method}, Stdin: body})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(bytes.TrimPrefix(out.Stdout, []byte(tinywasm.EchoHeader)))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * invokeClients}}
	url := "http://" + ln.Addr().String() + "/"
	body := []byte("hello")
	rate, _, _, first := closedLoop(ctx, invokeClients, d, func(ctx context.Context) (time.Duration, error) {
		began := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && !bytes.Equal(got, body) {
			err = fmt.Errorf("bench: the ceiling server answered %q", got)
		}
		return time.Since(began), err
	})
	return rate, first
}

// invokeCold times the first call of fresh functions of one module: each
// places a new instance.
func invokeCold(ctx context.Context, o Options) (_ map[string]any, err error) {
	n := 30
	if o.Quick {
		n = 3
	}
	f, err := startFunctionNetwork(ctx, o)
	if err != nil {
		return nil, err
	}
	defer closeInto(f, &err)
	body := []byte("hello")
	if err := f.deploy(ctx, "cold-warmup", gateway.Scaling{}); err != nil { // both providers fetch and compile the module
		return nil, err
	}
	for range 4 {
		if _, err := f.call(ctx, "cold-warmup", body); err != nil {
			return nil, err
		}
	}
	took := make([]time.Duration, 0, n)
	for i := range n {
		name := fmt.Sprintf("cold-%d", i)
		if err := f.deploy(ctx, name, gateway.Scaling{MaxInstances: 1, KeepAlive: jobs.Duration(time.Minute)}); err != nil {
			return nil, err
		}
		d, err := f.call(ctx, name, body)
		if err != nil {
			return nil, err
		}
		took = append(took, d)
	}
	lat := newDist(took)
	o.Log.Info("cold calls", "p50_ms", lat.pct(50))
	return map[string]any{"calls": n, "p50_ms": lat.pct(50), "p90_ms": lat.pct(90), "max_ms": lat.pct(100)}, nil
}

// stepCall is one call of invoke-step: when it was sent (since the step)
// and how it went.
type stepCall struct {
	at   time.Duration
	took time.Duration
	err  error
}

// invokeStep sends calls at stepLow a second, then at stepHigh, open
// loop, and follows the instances and the latency.
func invokeStep(ctx context.Context, o Options) (_ map[string]any, err error) {
	before, after := 3*time.Second, 5*time.Second
	if o.Quick {
		before, after = 500*time.Millisecond, 500*time.Millisecond
	}
	f, err := startFunctionNetwork(ctx, o)
	if err != nil {
		return nil, err
	}
	defer closeInto(f, &err)
	if err := f.deploy(ctx, "step", gateway.Scaling{MaxInstances: 20}); err != nil {
		return nil, err
	}
	body := []byte("hello")
	if _, err := f.call(ctx, "step", body); err != nil { // one instance, as a function called 10 times a second has
		return nil, err
	}
	step := time.Now().Add(before)
	stopSampling := f.sampleInstances(ctx, "step", step)
	calls := stepLoop(ctx, step, before, after, func(ctx context.Context) (time.Duration, error) { return f.call(ctx, "step", body) })
	res := stepResults(calls, stopSampling())
	o.Log.Info("step", "recovered_ms", res["recovered_ms"], "failed", res["failed"], "instances", res["instances_after"])
	return res, nil
}

// stepLoop sends calls at stepLow a second until step, then at stepHigh
// for after, each in its own goroutine (at most maxOutstanding at once),
// and returns them once all ended.
func stepLoop(ctx context.Context, step time.Time, before, after time.Duration, call func(ctx context.Context) (time.Duration, error)) []stepCall {
	var mu sync.Mutex
	var out []stepCall
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxOutstanding)
	send := func() {
		sent := time.Now()
		select {
		case sem <- struct{}{}:
		default:
			mu.Lock()
			out = append(out, stepCall{at: sent.Sub(step), err: errors.New("bench: too many calls outstanding")})
			mu.Unlock()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			took, err := call(ctx)
			mu.Lock()
			out = append(out, stepCall{at: sent.Sub(step), took: took, err: err})
			mu.Unlock()
		})
	}
	each := func(int) { send() }
	paced(ctx, stepLow, int(time.Until(step).Seconds()*stepLow), each)
	paced(ctx, stepHigh, int(after.Seconds()*stepHigh), each)
	wg.Wait()
	slices.SortFunc(out, func(a, b stepCall) int { return cmp.Compare(a.at, b.at) })
	return out
}

// instanceSample is how many warm instances a function had at a moment
// (since the step).
type instanceSample struct {
	AtMillis  int64 `json:"at_ms"`
	Instances int   `json:"instances"`
}

// sampleInstances counts the function's instances every stepSample until
// the returned function is called; it returns the changes.
func (f *fnNet) sampleInstances(ctx context.Context, name string, step time.Time) func() []instanceSample {
	ctx, cancel := context.WithCancel(ctx)
	var series []instanceSample
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(stepSample)
		defer tick.Stop()
		last := -1
		for {
			list, err := f.instances(ctx, name)
			if err == nil && len(list) != last {
				last = len(list)
				series = append(series, instanceSample{AtMillis: time.Since(step).Milliseconds(), Instances: last})
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() []instanceSample {
		cancel()
		<-done
		return series
	}
}

// stepResults sums up invoke-step: failures, the p99 of each window after
// the step, when it was last over stepGoal, and the instances.
func stepResults(calls []stepCall, series []instanceSample) map[string]any {
	var failed int
	var first error
	windows := map[time.Duration][]time.Duration{}
	var after []time.Duration
	for _, c := range calls {
		if c.err != nil {
			failed++
			first = cmp.Or(first, c.err)
			continue
		}
		if c.at >= 0 {
			w := c.at.Truncate(stepWindow)
			windows[w] = append(windows[w], c.took)
			after = append(after, c.took)
		}
	}
	recovered := time.Duration(0)
	var p99s []float64
	for _, w := range slices.Sorted(maps.Keys(windows)) {
		p := newDist(windows[w]).pct(99)
		p99s = append(p99s, p)
		if time.Duration(p*float64(time.Millisecond)) > stepGoal {
			recovered = w + stepWindow
		}
	}
	var atStep, final int
	var ready int64
	for _, s := range series {
		if s.AtMillis < 0 {
			atStep = s.Instances
		}
		final = s.Instances
	}
	for _, s := range series {
		if s.Instances == final {
			ready = max(s.AtMillis, 0)
			break
		}
	}
	res := map[string]any{
		"calls": len(calls), "failed": failed, "recovered_ms": recovered.Milliseconds(),
		"p99_after_ms": newDist(after).pct(99), "p50_after_ms": newDist(after).pct(50), "window_p99_ms": p99s,
		"instances_at_step": atStep, "instances_after": final, "instances_ready_ms": ready, "instances_over_time": series,
	}
	if first != nil {
		res["error"] = first.Error()
	}
	return res
}

package dms

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/dms/internal/tinywasm"
	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// scrape GETs url and returns the body of its 200 answer.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET %s: Content-Type %q, want the text format", url, ct)
	}
	return string(body)
}

// sample returns the value of series (a name with its labels, exactly as
// the text format writes them) in body; -1 when absent.
func sample(t *testing.T, body, series string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: value %q: %v", series, v, err)
			}
			return f
		}
	}
	return -1
}

// promtoolCheck runs `promtool check metrics` on body: it fails the test
// on any problem it reports, and skips where promtool is not installed.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH: install Debian's prometheus package (apt-get install prometheus; .ci/run does) to validate the metrics")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// TestMetricsCountAJob runs a job from a requester on a provider, each
// with its own metrics listener in this one process, and scrapes both:
// the requester counted the auction, the placement and the job's end, the
// provider its bid and its ledger, neither counted the other's, and
// promtool accepts both outputs.
func TestMetricsCountAJob(t *testing.T) {
	reqHome, _ := newHome(t)
	provHome, _ := newHome(t)
	req := startNode(t, reqHome, WithCompute(false), WithMetrics("127.0.0.1:0"))
	provider := startNode(t, provHome, WithMetrics("127.0.0.1:0"), WithBootstrap(req.host.Addrs()...))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return req.host.TopicPeers() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	reqURL, provURL := "http://"+req.MetricsAddr()+"/metrics", "http://"+provider.MetricsAddr()+"/metrics"
	before := scrape(t, reqURL)
	if n := sample(t, before, `dms_auctions_total{outcome="placed"}`); n > 0 {
		t.Fatalf("placed auctions before any job: %v", n)
	}
	if job := runHello(t, ctx, req); job.State != types.JobCompleted {
		t.Fatalf("job %s: %s", job.State, job.Reason)
	}

	got := scrape(t, reqURL)
	for series, least := range map[string]float64{
		`dms_auctions_total{outcome="placed"}`:                        1,
		`dms_job_attempts_total{outcome="completed"}`:                 1,
		`dms_jobs_ended_total{state="completed"}`:                     1,
		`dms_job_placement_seconds_count`:                             1,
		`dms_job_run_seconds_count{outcome="completed"}`:              1,
		`dms_jobs{state="running"}`:                                   0,
		`dms_p2p_connections`:                                         1,
		`dms_libp2p_rcmgr_connections{direction="in",scope="system"}`: 0,
		`dms_store_lsm_bytes`:                                         0,
	} {
		if v := sample(t, got, series); v < least {
			t.Errorf("requester: %s = %v, want at least %v", series, v, least)
		}
	}
	if v := sample(t, got, "dms_node_bids_total"); v > 0 {
		t.Errorf("requester without compute: dms_node_bids_total = %v: it shows another node's bids", v)
	}

	prov := scrape(t, provURL)
	for series, least := range map[string]float64{
		`dms_node_bids_total`:                         1,
		`dms_ledger_cpu_cores{level="registered"}`:    0.001,
		`dms_ledger_memory_bytes{level="registered"}`: 1,
		`dms_ledger_cpu_cores{level="running"}`:       0,
	} {
		if v := sample(t, prov, series); v < least {
			t.Errorf("provider: %s = %v, want at least %v", series, v, least)
		}
	}
	if v := sample(t, prov, `dms_auctions_total{outcome="placed"}`); v > 0 {
		t.Errorf("provider: dms_auctions_total{outcome=\"placed\"} = %v: it shows the requester's auctions", v)
	}
	t.Log("SAMPLEREQ\n" + got + "\nSAMPLEPROV\n" + prov)
	promtoolCheck(t, got)
	promtoolCheck(t, prov)
}

// TestMetricsListenerServesOnlyMetrics: the metrics listener answers GET
// and HEAD /metrics, 405 to any other method on it, 404 to any other path
// (the API, pprof, the root), and a node's handler works without one.
func TestMetricsListenerServesOnlyMetrics(t *testing.T) {
	home, _ := newHome(t)
	d := startNode(t, home, WithMetrics(":0"))
	host, _, err := net.SplitHostPort(d.MetricsAddr())
	if err != nil || !net.ParseIP(host).IsLoopback() {
		t.Fatalf("--metrics :0 listens on %q (%v): want loopback", d.MetricsAddr(), err)
	}
	base := "http://" + d.MetricsAddr()
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/metrics", http.StatusOK},
		{http.MethodHead, "/metrics", http.StatusOK},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodPut, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/metrics/x", http.StatusNotFound},
		{http.MethodGet, "/v1/jobs", http.StatusNotFound},
		{http.MethodGet, "/debug/pprof/", http.StatusNotFound},
	} {
		r, err := http.NewRequest(c.method, base+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}

	plain, _ := newHome(t)
	e := startNode(t, plain)
	if e.MetricsAddr() != "" {
		t.Fatalf("a node without a metrics address listens on %q", e.MetricsAddr())
	}
	rec := httptest.NewRecorder()
	e.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "dms_p2p_peers ") {
		t.Fatalf("MetricsHandler without a listener: no dms_p2p_peers in\n%s", rec.Body.String())
	}
	families, err := e.MetricsGatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(families, func(f *dto.MetricFamily) bool { return f.GetName() == "dms_p2p_peers" }) {
		t.Fatalf("MetricsGatherer: no dms_p2p_peers among %d families", len(families))
	}
}

// TestMetricsAddress: a bare port binds loopback, a named host is kept,
// and what is not HOST:PORT is refused by the option, the config file and
// (a port taken) Start, each saying what is wrong.
func TestMetricsAddress(t *testing.T) {
	for in, want := range map[string]string{
		"":               "",
		":9464":          "127.0.0.1:9464",
		":0":             "127.0.0.1:0",
		"127.0.0.1:9464": "127.0.0.1:9464",
		"0.0.0.0:9464":   "0.0.0.0:9464",
		"[::1]:9464":     "[::1]:9464",
		"localhost:9464": "localhost:9464",
	} {
		if got, err := metricsAddr(in); err != nil || got != want {
			t.Errorf("metricsAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"9464", "localhost", ":", ":http", ":99999", ":-1", "1.2.3.4:", "a:b:c"} {
		if err := WithMetrics(bad)(&config{}); !errors.Is(err, ErrBadMetricsAddr) {
			t.Errorf("WithMetrics(%q): %v, want ErrBadMetricsAddr", bad, err)
		}
	}

	home, _ := newHome(t)
	rewriteConfig(t, home, func(c *Config) { c.Metrics = "nowhere" })
	if _, err := LoadConfig(home); !errors.Is(err, ErrBadMetricsAddr) || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("config metrics: nowhere: %v", err)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	home2, _ := newHome(t)
	d, err := New(WithHome(home2), WithAPI(""), WithMetrics(taken.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err == nil || !strings.Contains(err.Error(), "metrics on "+taken.Addr().String()) {
		t.Fatalf("Start with the metrics port taken: %v", err)
	}
}

// TestMetricsOfGatewayCalls calls a function through the gateway's
// listener: the requests are counted by route pattern and status, the
// call is timed, the function's warm instance shows under its account and
// name, and the provider's refusal of an impossible function counts as a
// decline for memory.
func TestMetricsOfGatewayCalls(t *testing.T) {
	provHome, _ := newHome(t)
	gwHome, _ := newHome(t)
	provider := startNode(t, provHome)
	gw := startNode(t, gwHome, WithCompute(false), WithBootstrap(provider.host.Addrs()...), WithGatewayListen("127.0.0.1:0", "", ""))
	waitFor(t, 60*time.Second, "the provider on the topic", func() bool { return gw.host.TopicPeers() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, key, err := gw.Gateway().CreateAccount(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	c := gateway.NewClient(gw.GatewayURL(), gateway.Auth{Key: key.Secret}, nil)
	module, err := c.PutModule(ctx, bytes.NewReader(tinywasm.Module(0, "Status: 202 Accepted\n\nhello")))
	if err != nil {
		t.Fatal(err)
	}
	res := types.Resources{CPU: 100, Memory: 16 << 20}
	if _, err := c.Deploy(ctx, gateway.Deploy{Name: "hello", Module: module, Resources: res, Scaling: &gateway.Scaling{MinInstances: 1}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Invoke(ctx, "hello", gateway.Call{Method: http.MethodPost, Body: strings.NewReader("hi")}); err != nil || resp.Status != http.StatusAccepted {
		t.Fatalf("call: %+v, %v", resp, err)
	}
	huge := res
	huge.Memory = 900 << 40
	if _, err := c.Deploy(ctx, gateway.Deploy{Name: "huge", Module: module, Resources: huge}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(ctx, "huge", gateway.Call{}); err == nil {
		t.Fatal("a function no node can take was called")
	}

	rec := httptest.NewRecorder()
	gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	got := rec.Body.String()
	for series, least := range map[string]float64{
		`dms_gateway_requests_total{code="202",endpoint="/v1/functions/{name}/invoke"}`:   1,
		`dms_gateway_requests_total{code="201",endpoint="POST /v1/functions"}`:            2,
		`dms_gateway_call_duration_seconds_count{endpoint="/v1/functions/{name}/invoke"}`: 2,
		`dms_gateway_warm_instances{account="acme",function="hello"}`:                     1,
		`dms_gateway_queue_length{account="acme",function="hello"}`:                       0,
		`dms_auctions_total{outcome="no_bid"}`:                                            1,
		`dms_gateway_tasks_ended_total{state="completed"}`:                                1,
		`dms_gateway_tasks_ended_total{state="failed"}`:                                   1,
		`dms_gateway_tasks_live`:                                                          0,
		`dms_gateway_key_hashes_total`:                                                    1,
	} {
		if v := sample(t, got, series); v < least {
			t.Errorf("gateway: %s = %v, want at least %v", series, v, least)
		}
	}
	rec = httptest.NewRecorder()
	provider.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	prov := rec.Body.String()
	if v := sample(t, prov, `dms_node_declines_total{reason="memory"}`); v < 1 {
		t.Errorf(`provider: dms_node_declines_total{reason="memory"} = %v, want at least 1`, v)
	}
	if v := sample(t, prov, "dms_node_warm_instances"); v < 1 {
		t.Errorf("provider: dms_node_warm_instances = %v, want at least 1", v)
	}
	promtoolCheck(t, got)
}

func TestDeclineReason(t *testing.T) {
	for _, c := range []struct {
		reasons []string
		want    string
	}{
		{[]string{"memory: need 900 TiB, available 8 GiB"}, "memory"},
		{[]string{"cpu: need 4, available 2 (busy)", "memory: need 1 GiB, available 0 B"}, "cpu"},
		{[]string{"host busy: other processes use 63% CPU > 25%"}, "host"},
		{[]string{`executor: "docker" not available (have wasm)`}, "executor"},
		{[]string{"admission: requester 12D3KooW is not on this node's allowlist"}, "admission"},
		{[]string{"node: too many holds"}, "other"},
		{[]string{"12D3KooWsomething: made up"}, "other"},
		{nil, "other"},
	} {
		if got := declineReason(c.reasons); got != c.want {
			t.Errorf("declineReason(%q) = %q, want %q", c.reasons, got, c.want)
		}
	}
}

// BenchmarkMetricsEvents: what the hot paths pay per event counted.
func BenchmarkMetricsEvents(b *testing.B) {
	m := newMetrics(&DMS{})
	now := time.Now()
	placed := orchestrator.Attempt{Number: 1, StartedAt: now, PlacedAt: now.Add(3 * time.Millisecond)}
	ended := placed
	ended.Outcome, ended.EndedAt = orchestrator.OutcomeCompleted, now.Add(9*time.Millisecond)
	decline := &types.Decline{Reasons: []string{"memory: need 900 TiB, available 8 GiB"}}
	b.Run("bid", func(b *testing.B) {
		for b.Loop() {
			m.sent(&types.Bid{})
		}
	})
	b.Run("decline", func(b *testing.B) {
		for b.Loop() {
			m.sent(decline)
		}
	})
	b.Run("job", func(b *testing.B) { // placed, attempt ended, job ended: one job's three events
		for b.Loop() {
			m.Placed(placed)
			m.AttemptEnded(ended)
			m.jobEnded(types.JobCompleted)
		}
	})
}

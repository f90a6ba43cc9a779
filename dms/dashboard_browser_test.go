package dms

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/dashboard"
)

// chromium returns the path of a Chromium (or Chrome) binary, and skips
// the test where there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no Chromium binary found (install the Debian package chromium: .ci/run does): the dashboard's browser tests need one")
	return ""
}

// browserContext starts a headless Chromium of width x height for the test.
func browserContext(t *testing.T, ctx context.Context, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.WindowSize(width, height))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium's sandbox refuses root
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	browser, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	return browser
}

// do runs steps in the browser, failing the test on an error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// run runs one step in the browser and returns its value.
func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshot saves what the browser shows as the test's artifact name.
func screenshot(t *testing.T, ctx context.Context, name string) []byte {
	t.Helper()
	png := run(t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	return png
}

// TestDashboardInBrowser drives headless Chromium against a real daemon
// (a requester serving the API and two providers): it logs in with the
// token, follows the skip link from the keyboard, sees the peer graph show both providers, watches a job appear
// and complete without reloading the page, opens a flow's
// DAG, finds the gateway's account on the functions and invoices pages,
// checks that a phone-width screen needs no horizontal scroll, and
// logs in again with a one-time link, which works only once. Screenshots
// are the test's artifacts (go test -artifacts); with
// DMS_DASHBOARD_SCREENSHOT=1 the flow's page is also written to
// docs/dashboard.png.
func TestDashboardInBrowser(t *testing.T) {
	chromium(t)
	start := time.Now()
	phase := func(name string) { t.Logf("%6.2fs %s", time.Since(start).Seconds(), name) }
	reqHome, _ := newHome(t)
	req := startNode(t, reqHome, WithCompute(false), WithAPI("127.0.0.1:0"), WithLease(10*time.Second))
	provs := []*DMS{
		startNode(t, newHomeOnly(t), WithLease(10*time.Second), WithBootstrap(req.host.Addrs()...)),
		startNode(t, newHomeOnly(t), WithLease(10*time.Second), WithBootstrap(req.host.Addrs()...)),
	}
	waitFor(t, 30*time.Second, "both providers on the topic", func() bool { return req.host.TopicPeers() >= 2 })
	e, err := api.ReadEndpoint(reqHome)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + e.Addr
	phase("the network is up")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	b := browserContext(t, ctx, 1100, 800)

	// Log in with the token: the node's page, at a URL without it.
	do(t, b, "log in",
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), e.Token),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.ID("h-ledger")),
	)
	if loc := run(t, b, "location", chromedp.Location()); loc != base+"/ui/" {
		t.Errorf("after logging in the browser is at %s, want %s/ui/", loc, base)
	}
	logWeight(t, b)
	screenshot(t, b, "node.png")
	// The keyboard: the first Tab reaches the skip link, Enter follows it.
	do(t, b, "tab", chromedp.KeyEvent(kb.Tab))
	if c := run(t, b, "focus", chromedp.Evaluate[string](`document.activeElement.className`)); c != "skip" {
		t.Errorf("the first Tab focuses %q, want the skip link", c)
	}
	do(t, b, "skip", chromedp.KeyEvent(kb.Enter))
	if h := run(t, b, "hash", chromedp.Evaluate[string](`location.hash`)); h != "#main" {
		t.Errorf("the skip link led to %q, want #main", h)
	}
	phase("logged in")

	// The peer graph: a dot for each provider, this node at the centre.
	do(t, b, "peer graph", chromedp.Navigate(base+"/ui/peers"), chromedp.WaitVisible(chromedp.ID("peer-graph")))
	for _, p := range provs {
		do(t, b, "the dot of "+p.host.ID(), chromedp.WaitReady(chromedp.CSS(`#peer-graph g.peer[data-peer="`+p.host.ID()+`"]`)))
	}
	screenshot(t, b, "peers.png")
	phase("peer graph")

	// A job appears and completes while the page stays loaded.
	do(t, b, "jobs", chromedp.Navigate(base+"/ui/jobs"), chromedp.WaitVisible(chromedp.ID("jobs")),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	waitLive(t, b)
	h, err := req.Submit(ctx, tinySpec(t, time.Second, "live\n"))
	if err != nil {
		t.Fatal(err)
	}
	row := `#jobs tr[data-job="` + h.ID + `"]`
	do(t, b, "the job's row", chromedp.WaitVisible(chromedp.CSS(row)))
	do(t, b, "the job completed", chromedp.WaitVisible(chromedp.CSS(row+" .st-completed")))
	if !run(t, b, "no reload", chromedp.Evaluate[bool](`window.notReloaded === true`)) {
		t.Error("the jobs page was reloaded to show the job")
	}
	logWeight(t, b)
	screenshot(t, b, "jobs.png")
	do(t, b, "the job's page", chromedp.Click(chromedp.CSS(row+" a")), chromedp.WaitVisible(chromedp.ID("job-state")))
	if s := run(t, b, "job state", chromedp.Text(chromedp.ID("job-state"))); s != "completed" {
		t.Errorf("the job's page says %q, want completed", s)
	}
	phase("job")

	// A flow's DAG, a diamond, its steps turning completed live.
	fl := runFlow(t, ctx, req, writeFlow(t, diamondFlow, map[string]time.Duration{"prepare": 0, "left": 0, "right": 0, "report": 0}))
	do(t, b, "the flow's page", chromedp.Navigate(base+"/ui/flows/"+fl.ID), chromedp.WaitVisible(chromedp.ID("dag")))
	waitLive(t, b)
	do(t, b, "the flow completed", chromedp.WaitVisible(chromedp.CSS(`#flow-state.st-completed`)))
	for _, step := range []string{"prepare", "left", "right", "report"} {
		do(t, b, "step "+step, chromedp.WaitReady(chromedp.CSS(`#dag g.step.st-completed[data-step="`+step+`"]`)))
	}
	if n := run(t, b, "arrows", chromedp.Evaluate[int](`document.querySelectorAll("#dag line.edge").length`)); n != 4 {
		t.Errorf("the DAG has %d arrows, want 4", n)
	}
	logWeight(t, b)
	png := screenshot(t, b, "flow.png")
	phase("flow")
	if os.Getenv("DMS_DASHBOARD_SCREENSHOT") != "" {
		if err := os.WriteFile("../docs/dashboard.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The gateway's accounts, on the functions and invoices pages.
	if _, _, err := req.gw.CreateAccount(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{"/ui/gateway", "/ui/invoices"} {
		do(t, b, page, chromedp.Navigate(base+page), chromedp.WaitVisible(chromedp.CSS(`#live section h2`)))
		if h := run(t, b, page, chromedp.Text(chromedp.CSS(`#live section h2`))); h != "Account acme" {
			t.Errorf("%s shows %q, want Account acme", page, h)
		}
	}
	do(t, b, "batches", chromedp.Navigate(base+"/ui/batches"), chromedp.WaitVisible(chromedp.ID("live")))
	phase("gateway")

	// A phone's width: nothing scrolls sideways.
	do(t, b, "phone width", chromedp.EmulateViewport(375, 740))
	for _, page := range []string{"/ui/", "/ui/jobs", "/ui/flows/" + fl.ID, "/ui/peers"} {
		do(t, b, page+" at phone width", chromedp.Navigate(base+page), chromedp.WaitVisible(chromedp.ID("main")))
		if w := run(t, b, "widths", chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`)); w[0] > w[1] {
			t.Errorf("%s at 375px: the page is %dpx wide, the screen %dpx", page, w[0], w[1])
		}
		screenshot(t, b, "phone-"+strings.ReplaceAll(strings.Trim(strings.TrimPrefix(page, "/ui/"), "/"), "/", "-")+".png")
	}

	phase("phone width")

	// A one-time link, in a browser without the session: it logs in once,
	// and leaves the browser at a URL without the code.
	link, _, err := dashboard.Link(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	fresh, cancelFresh := chromedp.NewContext(b, chromedp.WithNewBrowserContext())
	defer cancelFresh()
	do(t, fresh, "the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("h-ledger")))
	if loc := run(t, fresh, "location", chromedp.Location()); strings.Contains(loc, "code") {
		t.Errorf("after the link the browser is at %s", loc)
	}
	do(t, fresh, "the link again", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(".error")))
	if loc := run(t, fresh, "location", chromedp.Location()); loc != link {
		t.Errorf("a used link led to %s, want it refused where it is", loc)
	}
	phase("one-time link")
}

// diamondFlow is a flow of four steps: prepare, then left and right, then
// report.
const diamondFlow = `
name: diamond
steps:
  prepare: {module: prepare.wasm, resources: {cpu: 0.1, memory: 16MiB}}
  left: {module: left.wasm, needs: [prepare], resources: {cpu: 0.1, memory: 16MiB}}
  right: {module: right.wasm, needs: [prepare], resources: {cpu: 0.1, memory: 16MiB}}
  report: {module: report.wasm, needs: [left, right], resources: {cpu: 0.1, memory: 16MiB}}
`

// newHomeOnly is newHome without the node's description.
func newHomeOnly(t *testing.T) string {
	home, _ := newHome(t)
	return home
}

// waitLive waits for the page's event stream to be open.
func waitLive(t *testing.T, b context.Context) {
	t.Helper()
	do(t, b, "the live stream", chromedp.WaitVisible(chromedp.CSS(`#conn.live`)))
}

// logWeight logs the bytes of the page and of what it loaded (docs/dashboard.md,
// "Page weight"), as the browser decoded them.
func logWeight(t *testing.T, b context.Context) {
	t.Helper()
	sizes := run(t, b, "page weight", chromedp.Evaluate[map[string]int](`Object.fromEntries(
		performance.getEntriesByType("navigation").concat(performance.getEntriesByType("resource"))
			.map(e => [new URL(e.name).pathname, e.decodedBodySize]))`))
	t.Logf("page weight: %v", sizes)
}

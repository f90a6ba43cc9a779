package dms_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/internal/hostile"
	"github.com/opendms/dms/dms/internal/reencode"
	"github.com/opendms/dms/jobs"
	"github.com/opendms/dms/types"
)

// The attack tests are issue 11's acceptance tests. Each attack gets a
// fresh cluster of three `dms run` processes on loopback (two providers
// and a requester that offers no compute), runs baselineJobs hello jobs
// through the requester's API, one after the other, then lets one hostile
// peer (package hostile, in this process) attack for DMS_ATTACK_SECONDS
// (default 15, at most 30) while jobs keep being submitted the same way.
// The criteria, checked per attack:
//   - no real job fails (a job still unfinished jobWait after the attack
//     ends counts as failed);
//   - no daemon's RSS (VmRSS) grows by more than maxRSSGrowth and no home
//     (allocated blocks of every file under it) by more than maxHomeGrowth,
//     from after the baseline to settle after the attack ended;
//   - and, judged by BenchmarkAttacks only (a speed target: on a shared
//     machine a test of it flakes), the p50 of submit-to-completed latency
//     under attack is within p50Factor of the baseline p50, or within
//     p50Floor of it when that is more (a 40 ms baseline would otherwise
//     allow only 120 ms). TestAttacks logs it.

const (
	baselineJobs  = 20
	jobGap        = 200 * time.Millisecond // jobs start at least this far apart: real jobs, not a flood of them
	jobWait       = 30 * time.Second       // how long one job may take before it counts as unfinished
	settle        = 2 * time.Second
	p50Factor     = 3
	p50Floor      = 50 * time.Millisecond
	maxRSSGrowth  = 20 << 20
	maxHomeGrowth = 1 << 20
)

// attack is one of issue 11's findings: start sets the hostile peer on the
// cluster, and returns a function that stops what it started beyond the
// peer itself (nil if nothing).
type attack struct {
	name  string
	start func(t testing.TB, p *hostile.Peer, c *cluster) (stop func())
}

var attacks = []attack{
	{"1-squat-allocation-ids", squat},
	{"1b-squat-own-bids", squatBids},
	{"2-accept-flood", acceptFlood},
	{"3-bid-request-flood", bidRequestFlood},
	{"4-liar", func(t testing.TB, p *hostile.Peer, _ *cluster) func() { play(t, p, hostile.Liar, nil); return nil }},
	{"5a-never-confirms", func(t testing.TB, p *hostile.Peer, _ *cluster) func() {
		play(t, p, hostile.NeverConfirm, nil)
		return nil
	}},
	{"5b-silent-subscriber", func(t testing.TB, p *hostile.Peer, _ *cluster) func() { play(t, p, hostile.Silent, nil); return nil }},
	{"6-replay-bid-requests", replay},
}

func TestAttacks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the attack tests read daemons' memory from /proc: Linux only")
	}
	if testing.Short() {
		t.Skip("builds the binary and runs three daemons per attack; skipped with -short")
	}
	dur := attackDuration(t)
	bin := buildDMS(t)
	var rows []string
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			r := runAttack(t, bin, dur, a, false)
			t.Log(r.line())
			rows = append(rows, r.row())
		})
	}
	t.Logf("issue 11 attacks, %s each, %d baseline jobs:\n%s\n%s", dur, baselineJobs, tableHeader, strings.Join(rows, "\n"))
}

// BenchmarkAttacks runs each attack once (whatever -benchtime asks) and
// judges every criterion, the p50 too; it reports the p50s and their
// ratio as metrics:
//
//	go test ./dms -run '^$' -bench Attacks -v
func BenchmarkAttacks(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the attack tests read daemons' memory from /proc: Linux only")
	}
	dur := attackDuration(b)
	bin := buildDMS(b)
	var rows []string
	for _, a := range attacks {
		b.Run(a.name, func(b *testing.B) {
			r := runAttack(b, bin, dur, a, true)
			b.ReportMetric(float64(r.p50Base.Microseconds())/1e3, "p50-base-ms")
			b.ReportMetric(float64(r.p50Under.Microseconds())/1e3, "p50-attack-ms")
			b.ReportMetric(float64(r.p50Under)/float64(max(r.p50Base, 1)), "p50-ratio")
			b.Log(r.line())
			rows = append(rows, r.row())
		})
	}
	b.Logf("issue 11 attacks, %s each, %d baseline jobs:\n%s\n%s", dur, baselineJobs, tableHeader, strings.Join(rows, "\n"))
}

// attackDuration reads DMS_ATTACK_SECONDS: 15 by default, 15 to 30.
func attackDuration(t testing.TB) time.Duration {
	s := os.Getenv("DMS_ATTACK_SECONDS")
	if s == "" {
		return 15 * time.Second
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 15 || n > 30 {
		t.Fatalf("DMS_ATTACK_SECONDS=%q: want whole seconds from 15 to 30", s)
	}
	return time.Duration(n) * time.Second
}

func buildDMS(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dms")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/opendms/dms/cmd/dms").CombinedOutput()
	if err != nil {
		t.Fatalf("building dms: %v\n%s", err, out)
	}
	return bin
}

// result is what one attack run measured.
type result struct {
	name               string
	dur                time.Duration
	base, under        jobRun
	rssGrowth, rssPeak [3]int64 // bytes, requester and providers (cluster order)
	homeGrowth         [3]int64
	stats              hostile.Stats
	p50Base, p50Under  time.Duration
	p50Limit           time.Duration
	failures           []string
}

// runAttack runs attack a on a fresh cluster and judges it: its latency
// too when latency is set.
func runAttack(t testing.TB, bin string, dur time.Duration, a attack, latency bool) *result {
	c := startCluster(t, bin)
	spec := helloSpec(t, c.req().client)
	r := &result{name: a.name, dur: dur}
	c.warmUp(t, spec)

	r.base = c.runJobs(t, spec, baselineJobs, time.Time{})
	if r.base.failed+r.base.unfinished > 0 {
		t.Fatalf("baseline without an attacker: %d of %d jobs failed: %v", r.base.failed+r.base.unfinished, r.base.total(), r.base.reasons)
	}
	time.Sleep(settle)
	rss0, home0 := c.sample(t)

	p, err := hostile.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, d := range c.daemons {
		if err := p.Connect(ctx, d.addrs[0]); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the hostile peer to see the providers on the topic", func() bool { return len(p.TopicPeers()) >= len(c.providers()) })
	stop := a.start(t, p, c)
	time.Sleep(500 * time.Millisecond) // the hostile peer's subscription reaches the nodes

	peak := c.watchRSS()
	end := time.Now().Add(dur)
	closed := make(chan struct{})
	timer := time.AfterFunc(dur, func() {
		_ = p.Close() // first: no more observations start new work
		if stop != nil {
			stop()
		}
		close(closed)
	})
	defer timer.Stop()
	r.under = c.runJobs(t, spec, 0, end)
	<-closed
	r.stats = p.Stats()
	time.Sleep(settle)
	rss1, home1 := c.sample(t)
	r.rssPeak = peak()
	for i := range c.daemons {
		r.rssGrowth[i], r.homeGrowth[i] = rss1[i]-rss0[i], home1[i]-home0[i]
		r.rssPeak[i] -= rss0[i]
	}
	r.judge(t, latency)
	return r
}

// judge checks the criteria, reporting every one that fails; the
// p50's only when latency is set.
func (r *result) judge(t testing.TB, latency bool) {
	t.Helper()
	r.p50Base, r.p50Under = median(r.base.latencies), median(r.under.latencies)
	r.p50Limit = max(p50Factor*r.p50Base, r.p50Base+p50Floor)
	fail := func(format string, args ...any) {
		r.failures = append(r.failures, fmt.Sprintf(format, args...))
		t.Errorf(format, args...)
	}
	if n := r.under.failed + r.under.unfinished; n > 0 {
		fail("%d of %d jobs under attack did not complete: %v", n, r.under.total(), r.under.reasons)
	}
	if r.under.ok == 0 {
		fail("no job completed under attack")
	} else if latency && r.p50Under > r.p50Limit {
		fail("p50 under attack %s, over the limit %s (baseline %s)", ms(r.p50Under), ms(r.p50Limit), ms(r.p50Base))
	}
	for i, n := range clusterNames {
		if g := r.rssGrowth[i]; g > maxRSSGrowth {
			fail("%s RSS grew by %.1f MiB, over %d MiB", n, mib(g), maxRSSGrowth>>20)
		}
		if g := r.homeGrowth[i]; g > maxHomeGrowth {
			fail("%s home grew by %.1f MiB, over %d MiB", n, mib(g), maxHomeGrowth>>20)
		}
	}
}

const tableHeader = "| attack | jobs completed / submitted under attack | p50 baseline | p50 under attack (limit) | RSS growth req/p1/p2 MiB (peak) | home growth req/p1/p2 KiB | hostile peer | verdict |\n| --- | --- | --- | --- | --- | --- | --- | --- |"

func (r *result) row() string {
	verdict := "PASS"
	if len(r.failures) > 0 {
		verdict = "FAIL: " + strings.Join(r.failures, "; ")
	}
	return fmt.Sprintf("| %s | %d / %d | %s | %s (%s) | %s (%s) | %s | %s | %s |",
		r.name, r.under.ok, r.under.total(), ms(r.p50Base), ms(r.p50Under), ms(r.p50Limit),
		triple(r.rssGrowth, mib, "%+.1f"), triple(r.rssPeak, mib, "%+.1f"), triple(r.homeGrowth, kib, "%+.0f"),
		r.attackerSummary(), verdict)
}

func (r *result) line() string {
	verdict := "PASS"
	if len(r.failures) > 0 {
		verdict = "FAIL"
	}
	return fmt.Sprintf("ATTACK %s %s: %s; jobs %d/%d completed (%d failed, %d unfinished) %v; p50 %s -> %s (x%.1f, limit %s); RSS MiB req/p1/p2 %s (peak %s); home KiB %s; hostile: %s",
		r.name, r.dur, verdict, r.under.ok, r.under.total(), r.under.failed, r.under.unfinished, r.under.reasons,
		ms(r.p50Base), ms(r.p50Under), float64(r.p50Under)/float64(max(r.p50Base, 1)), ms(r.p50Limit),
		triple(r.rssGrowth, mib, "%+.1f"), triple(r.rssPeak, mib, "%+.1f"), triple(r.homeGrowth, kib, "%+.0f"), r.attackerSummary())
}

func (r *result) attackerSummary() string {
	s := r.stats
	var parts []string
	add := func(name string, n uint64) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", name, n))
		}
	}
	add("seen", s.BidRequestsSeen)
	add("published", s.Published)
	add("bids/declines sent", s.BidsSent)
	add("accepts sent", s.AcceptsSent)
	add("confirmed", s.Confirms)
	add("rejected", s.Rejects)
	add("unanswered", s.AcceptErrors)
	add("bids got", s.BidsReceived)
	add("declines got", s.DeclinesReceived)
	add("accepts got", s.AcceptsReceived)
	add("invocations got", s.InvocationsReceived)
	return strings.Join(parts, ", ")
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
func mib(b int64) float64       { return float64(b) / (1 << 20) }
func kib(b int64) float64       { return float64(b) / (1 << 10) }

func triple(v [3]int64, unit func(int64) float64, format string) string {
	return fmt.Sprintf(format+"/"+format+"/"+format, unit(v[0]), unit(v[1]), unit(v[2]))
}

// The attacks.

// play makes the hostile peer subscribe and answer bid requests as role.
func play(t testing.TB, p *hostile.Peer, role hostile.Role, also func(hostile.Observed)) {
	t.Helper()
	if err := p.Play(role, also); err != nil {
		t.Fatal(err)
	}
}

// squat (finding 1) Accepts, on every provider, the allocation IDs the
// requester will offer for each job it sees a bid request for: the old
// predictable "<job>-a<attempt>-c<candidate>", attempts 1 to 4 (the hello
// job's first attempt and its 3 reschedules), candidates 0 to 2, with zero
// resources, before the requester does. It declines politely, so that the
// auctions do not wait for it.
func squat(t testing.TB, p *hostile.Peer, c *cluster) func() {
	var mu sync.Mutex
	seen := map[types.JobID]bool{}
	var wg sync.WaitGroup
	play(t, p, hostile.Decliner, func(o hostile.Observed) {
		mu.Lock()
		first := !seen[o.Req.JobID]
		seen[o.Req.JobID] = true
		mu.Unlock()
		if !first {
			return
		}
		for _, prov := range c.providers() {
			for attempt := 1; attempt <= 4; attempt++ {
				for cand := range 3 {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						defer cancel()
						id := types.AllocationID(fmt.Sprintf("%s-a%d-c%d", o.Req.JobID, attempt, cand))
						_, _ = p.Accept(ctx, prov.peerID, &types.Accept{JobID: o.Req.JobID, AllocationID: id})
					})
				}
			}
		}
	})
	return wg.Wait
}

// squatBids (finding 1, as a squatter would go about it now that the
// providers choose allocation IDs): for every job it sees, it asks for
// bids under the same job ID and resources with its own key, and accepts
// every bid it gets, locking capacity it never invokes. It declines the
// real requests politely.
func squatBids(t testing.TB, p *hostile.Peer, _ *cluster) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	asked := map[types.JobID]types.Resources{}
	var wg sync.WaitGroup
	p.AckBids(func(from string, b *types.Bid) {
		mu.Lock()
		res, ok := asked[b.JobID]
		mu.Unlock()
		if !ok {
			return
		}
		wg.Go(func() {
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			defer acancel()
			_, _ = p.Accept(actx, from, &types.Accept{JobID: b.JobID, AllocationID: b.Allocation, Resources: res})
		})
	})
	play(t, p, hostile.Decliner, func(o hostile.Observed) {
		if o.Req.Requester == p.ID() {
			return // its own
		}
		mu.Lock()
		_, dup := asked[o.Req.JobID]
		asked[o.Req.JobID] = o.Req.Resources
		mu.Unlock()
		if dup {
			return
		}
		req := p.BidRequest(o.Req.Resources, 2*time.Second)
		req.JobID = o.Req.JobID
		_ = p.PublishBidRequest(ctx, req)
	})
	return func() { cancel(); wg.Wait() }
}

// acceptFlood (finding 2) sends Accepts for random allocation IDs with zero
// resources to both providers, acceptRate a second to each over
// acceptStreams concurrent streams: what the issue measured (16,741
// confirmed in 15 s), without the hostile peer, which shares the test
// machine's cores with the daemons, taking more of them than a remote
// attacker would.
func acceptFlood(_ testing.TB, p *hostile.Peer, c *cluster) func() {
	const acceptRate, acceptStreams = 600, 8
	var stops []func()
	for _, prov := range c.providers() {
		for w := range acceptStreams {
			i := 0
			stops = append(stops, every(acceptRate/acceptStreams, func(ctx context.Context) {
				i++
				job := types.JobID(fmt.Sprintf("flood-%s-%d-%d", p.Node().UUID[:8], w, i))
				actx, acancel := context.WithTimeout(ctx, 5*time.Second)
				defer acancel()
				_, _ = p.Accept(actx, prov.peerID, &types.Accept{JobID: job, AllocationID: types.AllocationID(string(job) + "-x")})
			}))
		}
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// bidRequestFlood (finding 3) publishes its own validly signed bid
// requests, 40 a second (under the 50/s limit per publisher), each asking
// for what a hello job asks, and acknowledges every bid without ever
// accepting one.
func bidRequestFlood(_ testing.TB, p *hostile.Peer, _ *cluster) func() {
	p.AckBids(nil)
	return every(40, func(ctx context.Context) {
		_ = p.PublishBidRequest(ctx, p.BidRequest(types.Resources{CPU: 500, Memory: 64 << 20}, 2*time.Second))
	})
}

// replay (finding 6) republishes every bid request the requester
// publishes, re-encoded (same signature, new bytes, so a new gossip
// message), 200 copies at once and then 150 a second while it is valid,
// to every node it is connected to. It declines politely. Once every
// node it floods has banned it, it has no one to send to and stops
// spending CPU on copies: it shares the test's two cores with the
// daemons, and a real attacker's CPU is its own.
func replay(t testing.TB, p *hostile.Peer, _ *cluster) func() {
	var mu sync.Mutex
	var latest *hostile.Observed
	variant := 0
	publish := func(ctx context.Context, o hostile.Observed, n int) {
		for range n {
			if len(p.TopicPeers()) == 0 {
				return
			}
			variant++
			if b, err := reencode.Envelope(o.Raw, variant); err == nil {
				_ = p.Publish(ctx, b)
			}
		}
	}
	play(t, p, hostile.Decliner, func(o hostile.Observed) {
		mu.Lock()
		defer mu.Unlock()
		latest = &o
		publish(context.Background(), o, 200)
	})
	return every(150, func(ctx context.Context) {
		mu.Lock()
		defer mu.Unlock()
		if latest != nil && time.Now().Before(latest.Env.ExpiresAt()) {
			publish(ctx, *latest, 1)
		}
	})
}

// every calls fn perSecond times a second, on a goroutine of its own,
// until the stop it returns, which ends fn's ctx and waits for the
// goroutine.
func every(perSecond int, fn func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				fn(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// The cluster.

var clusterNames = [3]string{"requester", "provider1", "provider2"}

// cluster is three daemons: the requester (no compute) and two providers.
type cluster struct {
	daemons [3]*daemonProc
}

func (c *cluster) req() *daemonProc         { return c.daemons[0] }
func (c *cluster) providers() []*daemonProc { return c.daemons[1:] }

// daemonProc is one `dms run` process.
type daemonProc struct {
	name, home string
	cmd        *exec.Cmd
	client     *api.Client
	peerID     string
	addrs      []string
}

// startCluster starts provider1, then provider2 and the requester
// bootstrapping from it, all on 127.0.0.1 with OS-chosen ports, and waits
// until every daemon is connected to the other two and a job runs.
func startCluster(t testing.TB, bin string) *cluster {
	t.Helper()
	root := t.TempDir()
	c := &cluster{}
	order := []int{1, 2, 0} // provider1 first: the others bootstrap from it
	for _, i := range order {
		var args []string
		if i != 1 {
			args = append(args, "--bootstrap", c.daemons[1].addrs[0])
		}
		if i == 0 {
			args = append(args, "--compute=false")
		}
		c.daemons[i] = startDaemonProc(t, bin, filepath.Join(root, clusterNames[i]), clusterNames[i], args...)
	}
	for _, d := range c.daemons {
		eventually(t, 30*time.Second, d.name+" to see the other daemons", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			peers, err := d.client.Peers(ctx)
			return err == nil && len(peers) >= len(c.daemons)-1
		})
	}
	return c
}

func startDaemonProc(t testing.TB, bin, home, name string, args ...string) *daemonProc {
	t.Helper()
	if out, err := exec.Command(bin, "init", "--home", home).CombinedOutput(); err != nil {
		t.Fatalf("dms init %s: %v\n%s", name, err, out)
	}
	labelNode(t, home, name)
	logPath := home + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{name: name, home: home}
	d.cmd = exec.Command(bin, append([]string{"run", "--home", home}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopProc(d.cmd)
		_ = logf.Close()
	})
	var e api.Endpoint
	eventually(t, 30*time.Second, name+" to write api.json", func() bool {
		e, err = api.ReadEndpoint(home)
		return err == nil
	})
	d.client = api.NewClient(e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := d.client.Node(ctx)
	if err != nil || len(info.Addrs) == 0 {
		t.Fatalf("%s: node info %+v: %v", name, info, err)
	}
	d.peerID, d.addrs = info.PeerID, info.Addrs
	return d
}

// labelNode gives the node of home the label name: <name>, so that a job
// can be sent to it (warmUp).
func labelNode(t testing.TB, home, name string) {
	t.Helper()
	path := filepath.Join(home, "config.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const empty = "\n  labels: {}\n"
	if !strings.Contains(string(b), empty) {
		t.Fatalf("%s has no empty offer.labels to fill in", path)
	}
	b = []byte(strings.Replace(string(b), empty, "\n  labels: {name: "+name+"}\n", 1))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// warmUp runs one job on each provider (by its label), so that both have
// compiled and cached the module before anything is measured: a first
// compilation costs a provider megabytes of memory and of home, which an
// attack that only moves jobs to the other provider must not be charged.
func (c *cluster) warmUp(t testing.TB, spec jobs.Spec) {
	t.Helper()
	for _, p := range c.providers() {
		s := spec
		s.Constraints.Labels = map[string]string{"name": p.name}
		if state, reason := c.runJob(s); state != types.JobCompleted {
			t.Fatalf("warming up %s: job %s %s", p.name, state, reason)
		}
	}
}

// stopProc stops a daemon with SIGTERM, and SIGKILL if it is still there
// 10s later, and reaps it.
func stopProc(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// helloSpec is examples/hello/job.yaml with its module uploaded to the
// requester.
func helloSpec(t testing.TB, cl *api.Client) jobs.Spec {
	t.Helper()
	spec, err := jobs.ParseFile(filepath.Join("..", "examples", "hello", "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := api.Upload(ctx, cl, spec); err != nil {
		t.Fatal(err)
	}
	return *spec
}

// jobRun is what a sequence of jobs came to.
type jobRun struct {
	latencies              []time.Duration // of the completed jobs, submit to completed
	ok, failed, unfinished int
	reasons                map[string]int // why jobs failed or did not finish
}

func (j jobRun) total() int { return j.ok + j.failed + j.unfinished }

// runJobs submits hello jobs to the requester one after the other, each
// at least jobGap after the last started, n of them, or while time is
// before until when n is 0, and waits for each to end (jobWait at most).
func (c *cluster) runJobs(t testing.TB, spec jobs.Spec, n int, until time.Time) jobRun {
	t.Helper()
	run := jobRun{reasons: map[string]int{}}
	for i := 0; n > 0 && i < n || n == 0 && time.Now().Before(until); i++ {
		start := time.Now()
		state, reason := c.runJob(spec)
		switch state {
		case types.JobCompleted:
			run.ok++
			run.latencies = append(run.latencies, time.Since(start))
		case "":
			run.unfinished++
			run.reasons[reason]++
		default:
			run.failed++
			run.reasons[shorten(reason)]++
		}
		time.Sleep(time.Until(start.Add(jobGap)))
	}
	return run
}

// runJob submits one job and waits for its end: its final state, or "" and
// why it has none.
func (c *cluster) runJob(spec jobs.Spec) (types.JobState, string) {
	ctx, cancel := context.WithTimeout(context.Background(), jobWait)
	defer cancel()
	cl := c.req().client
	job, err := cl.SubmitJob(ctx, &spec)
	if err != nil {
		return types.JobFailed, "submit: " + err.Error()
	}
	events, err := cl.WatchJob(ctx, job.ID)
	if err != nil {
		return "", "watch: " + err.Error()
	}
	last := job
	for j := range events {
		last = j
	}
	if last.State.Terminal() {
		if last.State == types.JobCompleted {
			return last.State, ""
		}
		return last.State, last.Reason
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "", fmt.Sprintf("still %s after %s", last.State, jobWait)
	}
	return "", "the event stream ended in state " + string(last.State)
}

// shorten keeps failure reasons short enough to group and to print.
func shorten(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// sample returns every daemon's RSS and home size, in bytes.
func (c *cluster) sample(t testing.TB) (rss, home [3]int64) {
	t.Helper()
	for i, d := range c.daemons {
		var err error
		if rss[i], err = vmRSS(d.cmd.Process.Pid); err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
		if home[i], err = diskUsage(d.home); err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
	}
	return rss, home
}

// watchRSS samples every daemon's RSS every 250ms until the function it
// returns is called, which returns the highest of each.
func (c *cluster) watchRSS() func() [3]int64 {
	var peak [3]int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			for i, d := range c.daemons {
				if v, err := vmRSS(d.cmd.Process.Pid); err == nil {
					peak[i] = max(peak[i], v)
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() [3]int64 { close(stop); <-done; return peak }
}

// vmRSS reads a process's resident set size from /proc.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// diskUsage is the disk space of every file under dir: allocated blocks,
// not sizes, which for badger's preallocated, sparse files say nothing.
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while walking
				return nil
			}
			return err
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	return total, err
}

func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

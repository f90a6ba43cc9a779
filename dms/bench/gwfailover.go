package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
)

func init() {
	register(Scenario{
		Name: "gateway-failover",
		What: "a group of 3 gateway daemons and 2 provider daemons: steady calls to the 2 gateways that do not lead the function's queue, kill -9 of its leader: time until calls are served again, calls failed, the new leader",
		Run:  gatewayFailover,
	})
}

const (
	groupSize       = 3 // gateways of gateway-failover's group
	failoverClients = 8 // calls in flight during gateway-failover
	failoverLimit   = 30 * time.Second
)

// gatewayFailover starts the group and two providers, deploys the tiny
// function through gateway 0, finds the leader of its queue, calls it
// through the two others in a closed loop, kills the leader with SIGKILL
// and measures until every call is served again.
func gatewayFailover(ctx context.Context, o Options) (_ map[string]any, err error) {
	steady, stable := 3*time.Second, 2*time.Second
	if o.Quick {
		steady, stable = 500*time.Millisecond, 500*time.Millisecond
	}
	bin, err := daemonBinary(o.Bin)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.Dir, "dms-bench-gwfailover-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if o.Dir == "" {
		defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	}
	grp, err := startGatewayGroup(ctx, bin, dir)
	defer func() { err = errors.Join(err, grp.stop()) }()
	if err != nil {
		return nil, err
	}
	fn, err := deployTiny(ctx, grp.gateways[0])
	if err != nil {
		return nil, err
	}
	via := make([]*tinyFunction, groupSize)
	for i, gw := range grp.gateways {
		if via[i], err = fn.via(ctx, gw); err != nil {
			return nil, err
		}
		if err := via[i].warm(ctx); err != nil {
			return nil, fmt.Errorf("bench: gateway %d: %w", i, err)
		}
	}
	leader, err := grp.queueLeader(ctx, 0, fn.name)
	if err != nil {
		return nil, err
	}
	victim := slices.Index(grp.ids, leader)
	if victim < 0 {
		return nil, fmt.Errorf("bench: the queue's leader %s is none of the gateways %v", leader, grp.ids)
	}
	var survivors []*tinyFunction
	alive := 0
	for i := range grp.gateways {
		if i != victim {
			survivors, alive = append(survivors, via[i]), i
		}
	}
	o.Log.Info("steady calls", "queue_leader", leader, "through", len(survivors))
	load := startClosedLoad(ctx, failoverClients, func(ctx context.Context, k int) error { return survivors[k%len(survivors)].call(ctx) })
	defer load.stop()
	if err := sleepCtx(ctx, steady); err != nil {
		return nil, err
	}
	before := load.snapshot()
	v, err := grp.view(ctx, victim)
	if err != nil {
		return nil, err
	}
	killed := grp.kill(victim)
	newLeader, elected := grp.waitNewLeader(ctx, alive, fn.name, leader, killed)
	rec, err := waitServed(ctx, load, killed, stable)
	load.stop()
	if err != nil {
		return nil, err
	}
	res := map[string]any{
		"clients": failoverClients, "calls_per_s_before": round3(float64(len(before)) / steady.Seconds()),
		"recovered_ms": rec.took.Milliseconds(), "calls_failed": len(rec.failed), "calls_after_kill": rec.after,
		"killed_leader": leader, "new_leader": newLeader, "new_leader_seen_ms": elected.Milliseconds(),
		"killed_gateway": victim, "new_leader_gateway": slices.Index(grp.ids, newLeader),
		"killed_group_leader": v.Leader == leader, // it led the group's raft too: an election comes first
	}
	if len(rec.failed) > 0 {
		res["first_failure"] = rec.failed[0].err.Error()
	}
	o.Log.Info("failover", "recovered_ms", res["recovered_ms"], "failed", len(rec.failed), "new_leader", newLeader)
	return res, nil
}

// groupNet is gateway-failover's daemons: a group of gateways that offer no
// compute, and two providers.
type groupNet struct {
	gateways  []*daemon
	ids       []string // the gateways' peer IDs
	providers []*daemon
	killed    []bool
}

// startGatewayGroup inits the homes, then starts the gateways, each
// founding the group with the others' addresses, and two providers
// bootstrapping through them; it returns once every gateway sees the four
// others and the group has a leader. grp.stop stops what started, also on
// error.
func startGatewayGroup(ctx context.Context, bin, dir string) (*groupNet, error) {
	grp := &groupNet{killed: make([]bool, groupSize)}
	addrs := make([]string, groupSize)
	homes := make([]string, groupSize)
	for i := range groupSize {
		homes[i] = filepath.Join(dir, fmt.Sprintf("gateway-%d", i))
		id, err := initGroupHome(ctx, bin, homes[i])
		if err != nil {
			return grp, err
		}
		port, err := freePort()
		if err != nil {
			return grp, err
		}
		grp.ids = append(grp.ids, id)
		addrs[i] = fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, id)
	}
	var bootstrap []string
	for _, a := range addrs {
		bootstrap = append(bootstrap, "--bootstrap", a)
	}
	for i := range groupSize {
		peers := slices.Delete(slices.Clone(addrs), i, i+1)
		listen, _, _ := strings.Cut(addrs[i], "/p2p/")
		args := []string{"--listen", listen, "--gateway", "127.0.0.1:0", "--compute=false",
			"--gateway-group", "bench", "--gateway-peers", strings.Join(peers, ",")}
		dm, err := runDaemon(ctx, bin, homes[i], append(args, bootstrap...)...)
		if err != nil {
			return grp, fmt.Errorf("bench: gateway %d: %w", i, err)
		}
		grp.gateways = append(grp.gateways, dm)
	}
	for i := range 2 {
		home := filepath.Join(dir, fmt.Sprintf("provider-%d", i+1))
		if _, err := initGroupHome(ctx, bin, home); err != nil {
			return grp, err
		}
		dm, err := runDaemon(ctx, bin, home, bootstrap...)
		if err != nil {
			return grp, fmt.Errorf("bench: provider %d: %w", i+1, err)
		}
		grp.providers = append(grp.providers, dm)
	}
	for _, gw := range grp.gateways {
		if err := waitDaemonPeers(ctx, gw, groupSize+1); err != nil {
			return grp, err
		}
	}
	return grp, grp.waitLeader(ctx)
}

// initGroupHome inits home, raises its bid-request rate and returns its
// peer ID.
func initGroupHome(ctx context.Context, bin, home string) (string, error) {
	out, err := runCmd(ctx, bin, "init", "--home", home, "--output", "json")
	if err != nil {
		return "", err
	}
	var info api.NodeInfo
	if err := json.Unmarshal(out, &info); err != nil || info.PeerID == "" {
		return "", fmt.Errorf("bench: %s init printed no peer ID: %w\n%s", bin, err, out)
	}
	return info.PeerID, raiseBidRate(home)
}

// freePort is a TCP port free on loopback a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// stop stops every daemon still running; a killed one is only reaped.
func (g *groupNet) stop() error {
	var err error
	for _, dm := range g.providers {
		err = errors.Join(err, dm.stop())
	}
	for i, dm := range g.gateways {
		if g.killed[i] {
			<-dm.exited
			continue
		}
		err = errors.Join(err, dm.stop())
	}
	return err
}

// kill kills gateway i with SIGKILL and returns when.
func (g *groupNet) kill(i int) time.Time {
	_ = g.gateways[i].cmd.Process.Kill()
	g.killed[i] = true
	return time.Now()
}

// view reads gateway i's view of the group through its local API.
func (g *groupNet) view(ctx context.Context, i int) (gateway.GroupStatus, error) {
	e := g.gateways[i].api
	s, err := gateway.NewClient("http://"+e.Addr, gateway.Auth{Token: e.Token}, nil).Group(ctx)
	if err != nil {
		return s, fmt.Errorf("bench: the group of gateway %d: %w", i, err)
	}
	return s, nil
}

// waitLeader waits until every gateway names the same group leader.
func (g *groupNet) waitLeader(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, daemonStart)
	defer cancel()
	for {
		leaders := map[string]bool{}
		var err error
		for i := range g.gateways {
			v, verr := g.view(ctx, i)
			err = cmp.Or(err, verr)
			leaders[v.Leader] = true
		}
		if err == nil && len(leaders) == 1 && !leaders[""] {
			return nil
		}
		if serr := sleepCtx(ctx, readyPoll); serr != nil {
			return fmt.Errorf("bench: the group has no leader (%v): %w", slices.Collect(maps.Keys(leaders)), cmp.Or(err, serr))
		}
	}
}

// queueLeader is the peer leading the bench account's queue of function,
// as gateway i says; it waits for one to be named.
func (g *groupNet) queueLeader(ctx context.Context, i int, function string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	for {
		v, err := g.view(ctx, i)
		for _, q := range v.Queues {
			if q.Account == "bench" && q.Function == function && q.Leader != "" {
				return q.Leader, nil
			}
		}
		if serr := sleepCtx(ctx, readyPoll); serr != nil {
			return "", fmt.Errorf("bench: no leader of %s's queue: %w", function, cmp.Or(err, serr))
		}
	}
}

// waitNewLeader polls gateway i until a leader other than old leads
// function's queue, for at most failoverLimit; it returns the leader and
// when it was first seen, since killed ("" and 0 if none was).
func (g *groupNet) waitNewLeader(ctx context.Context, i int, function, old string, killed time.Time) (string, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, failoverLimit)
	defer cancel()
	for {
		v, _ := g.view(ctx, i)
		for _, q := range v.Queues {
			if q.Account == "bench" && q.Function == function && q.Leader != "" && q.Leader != old {
				return q.Leader, time.Since(killed)
			}
		}
		if sleepCtx(ctx, readyPoll) != nil {
			return "", 0
		}
	}
}

// timedCall is one call of a closed load: when it was sent and ended.
type timedCall struct {
	sent, done time.Time
	err        error
}

// closedLoad is clients calling in a closed loop until stopped, every call
// kept.
type closedLoad struct {
	mu     sync.Mutex
	calls  []timedCall
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startClosedLoad runs clients that each call (client k's calls are
// call(ctx, k)) until stop.
func startClosedLoad(ctx context.Context, clients int, call func(ctx context.Context, k int) error) *closedLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &closedLoad{cancel: cancel}
	for k := range clients {
		l.wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				c := timedCall{sent: time.Now()}
				c.err = call(ctx, k+n)
				c.done = time.Now()
				if c.err != nil && ctx.Err() != nil {
					return // cut by the end of the load
				}
				l.mu.Lock()
				l.calls = append(l.calls, c)
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *closedLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *closedLoad) snapshot() []timedCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// recovered is a load read after a fault.
type recovered struct {
	failed   []timedCall // ended after the fault, failed
	lastFail time.Time   // when the last of them ended (the fault, if none)
	took     time.Duration
	after    int // calls ended after the fault
	ok       bool
}

// readRecovery reads calls since a fault at from: the calls that failed
// since, and how long after from the first call sent after the last
// failure (and after from) was served.
func readRecovery(calls []timedCall, from time.Time) recovered {
	r := recovered{lastFail: from}
	for _, c := range calls {
		if !c.done.After(from) {
			continue
		}
		r.after++
		if c.err != nil {
			r.failed = append(r.failed, c)
			r.lastFail = later(r.lastFail, c.done)
		}
	}
	var first time.Time
	for _, c := range calls {
		if c.err == nil && !c.sent.Before(r.lastFail) && (first.IsZero() || c.done.Before(first)) {
			first = c.done
		}
	}
	r.ok = !first.IsZero()
	if r.ok {
		r.took = first.Sub(from)
	}
	return r
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// waitServed waits until the load's calls have been served again for
// stable since the last failure, at most failoverLimit after the fault.
func waitServed(ctx context.Context, l *closedLoad, fault time.Time, stable time.Duration) (recovered, error) {
	for {
		r := readRecovery(l.snapshot(), fault)
		if r.ok && time.Since(r.lastFail) >= stable {
			return r, nil
		}
		if time.Since(fault) > failoverLimit {
			var last error
			if len(r.failed) > 0 {
				last = r.failed[len(r.failed)-1].err
			}
			return r, fmt.Errorf("bench: calls not served again %s after the fault: %d failed, the last: %v", failoverLimit, len(r.failed), last)
		}
		if err := sleepCtx(ctx, readyPoll); err != nil {
			return r, err
		}
	}
}

// runCmd runs bin with args and returns its stdout.
func runCmd(ctx context.Context, bin string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bench: %s %s: %w\n%s", bin, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}
